"""faiss on the GPU: which code asks for it. faiss-cpu has no GPU code, so the GPU calls
are stood in for by recorders that keep the CPU index (the results must not change)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from condpretrain import faiss_device
from condpretrain.features.embeddings import PoolEmbeddings
from condpretrain.groups import assign_clusters
from condpretrain.scoring.clustering import fit_centres


@pytest.fixture
def fake_gpu(monkeypatch) -> dict[str, int]:
    """faiss with one 'GPU': indexes moved to it and k-means trained on it are counted."""
    calls = {"index": 0, "kmeans": 0}

    def to_gpu(resources, device, index):
        calls["index"] += 1
        return index

    real_kmeans = faiss.Kmeans

    def kmeans(d, k, **kwargs):
        calls["kmeans"] += bool(kwargs.pop("gpu"))
        return real_kmeans(d, k, **kwargs)

    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "Kmeans", kmeans)
    return calls


def _unit_rows(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_flat_indexes_go_to_the_gpu_only_for_a_selection_on_cuda(fake_gpu):
    vectors, queries = _unit_rows(20), _unit_rows(5, seed=1)
    on_cpu = faiss_device.flat_index(vectors, "ip", on_cuda=False)
    assert fake_gpu["index"] == 0
    on_gpu = faiss_device.flat_index(vectors, "ip", on_cuda=True)
    assert fake_gpu["index"] == 1
    np.testing.assert_array_equal(on_cpu.search(queries, 3)[1], on_gpu.search(queries, 3)[1])
    l2 = faiss_device.flat_index(vectors, "l2", on_cuda=False)
    distances, nearest = l2.search(vectors[:3], 1)
    np.testing.assert_array_equal(nearest[:, 0], [0, 1, 2])
    np.testing.assert_allclose(distances[:, 0], 0, atol=1e-6)


def test_without_gpu_faiss_nothing_is_moved(monkeypatch):
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    assert not faiss_device.gpu_available(True)
    assert not faiss_device.gpu_available(False)


def test_kmeans_and_cluster_assignment_use_the_gpu_on_cuda(fake_gpu):
    rows = _unit_rows(60)
    fit_centres(rows, 4, 5, seed=0, on_cuda=False)
    assert fake_gpu == {"index": 0, "kmeans": 0}
    fit_centres(rows, 4, 5, seed=0, on_cuda=True)
    assert fake_gpu["kmeans"] == 1
    embeddings = PoolEmbeddings([rows.astype(np.float16)], len(rows), {})
    ids_cpu, k, _ = assign_clusters(embeddings, 4, 5, seed=0, cuda=False)
    ids_gpu, _, _ = assign_clusters(embeddings, 4, 5, seed=0, cuda=True)
    assert k == 4 and fake_gpu == {"index": 1, "kmeans": 2}
    np.testing.assert_array_equal(ids_cpu, ids_gpu)


def test_a_cpu_device_option_never_asks_for_the_gpu():
    assert not faiss_device.on_cuda("cpu")
