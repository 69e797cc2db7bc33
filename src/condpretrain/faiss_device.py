"""faiss on the GPU when the selection runs on CUDA and faiss was built with GPU support.

``pip install faiss-cpu`` (the default dependency) has no GPU code; ``faiss-gpu`` (conda
or a CUDA wheel) does. The indexes are exact either way and k-means runs the same algorithm
from the same seed, so the results agree up to floating-point rounding (like AMP on and
off); the choice is made here and nowhere else.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

from condpretrain.log import get_logger

log = get_logger(__name__)


def gpu_available(on_cuda: bool) -> bool:
    """Whether faiss can use GPU 0 for a selection that runs on CUDA (``on_cuda``)."""
    return (on_cuda and hasattr(faiss, "StandardGpuResources")
            and faiss.get_num_gpus() > 0)


def on_cuda(device: str) -> bool:
    """Whether a selection's ``--device`` puts it on CUDA here. Read without
    resolve_device: a re-selection of a GPU machine's selection runs on any machine."""
    return not device.startswith("cpu") and torch.cuda.is_available()


def flat_index(vectors: np.ndarray, metric: str, on_cuda: bool) -> faiss.Index:
    """An exact index of ``vectors`` (``metric`` "ip": inner product, "l2": squared L2),
    on GPU 0 when :func:`gpu_available`."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = (faiss.IndexFlatIP if metric == "ip" else faiss.IndexFlatL2)(vectors.shape[1])
    if gpu_available(on_cuda):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(vectors)
    return index


__all__ = ["flat_index", "gpu_available", "on_cuda"]
