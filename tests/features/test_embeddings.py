"""Pool embeddings: sharded float16 cache, computed once, resumed by shard; npy checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import write_family
from torch import nn

from condpretrain.config import SelectConfig, build_config
from condpretrain.data.sources import ImageIndex
from condpretrain.errors import CondPretrainError
from condpretrain.features.embeddings import embed_images, parse_features, pool_embeddings
from condpretrain.features.npy import read_embeddings, target_embeddings_path
from condpretrain.scoring import ScoringContext

SHARD = 10


class MeanColour(nn.Module):
    """A deterministic 3-d 'network' that counts the images it sees (and can fail)."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.seen, self.fail_after = 0, fail_after
        self.anchor = nn.Parameter(torch.zeros(1))  # so it has a device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise RuntimeError("killed")
        if images.abs().sum() > 0:  # not the all-zero probe that reads the feature width
            self.seen += len(images)
        return images.mean(dim=(2, 3)) + 0.01


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> ImageIndex:
    folder = tmp_path_factory.mktemp("pool")
    paths = write_family(folder, "stripes", 12) + write_family(folder, "noise", 13)
    return ImageIndex([str(p) for p in paths], [""] * 25, ["p"] * 25)


def context(tmp_path: Path) -> ScoringContext:
    config = build_config(SelectConfig, "quick", device="cpu", chunk_size=SHARD, batch_size=SHARD)
    return ScoringContext(config, torch.device("cpu"), tmp_path / "cache")


def test_embeddings_are_sharded_float16_unit_rows_and_computed_once(pool, tmp_path):
    ctx = context(tmp_path)
    first = MeanColour()
    embeddings = pool_embeddings("toy", pool, first, ctx, ctx.cache_dir)
    assert first.seen == 25 and embeddings.computed_here
    shards = sorted(embeddings.folder.glob("shard-*.npy"))
    assert len(shards) == 3 and all(np.load(s).dtype == np.float16 for s in shards)
    rows = embeddings.rows(np.arange(25))
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=2e-3)
    expected, skipped = embed_images(pool, MeanColour(), ctx, 3, "check")
    np.testing.assert_allclose(rows, expected, atol=2e-3)
    assert skipped == {}
    assert isinstance(embeddings.shards[0], np.memmap)

    mtimes = [s.stat().st_mtime_ns for s in shards]
    again = MeanColour()
    reused = pool_embeddings("toy", pool, again, ctx, ctx.cache_dir)
    assert again.seen == 0 and not reused.computed_here
    assert [s.stat().st_mtime_ns for s in shards] == mtimes
    np.testing.assert_array_equal(reused.rows([24, 0, 13]), rows[[24, 0, 13]])


def test_another_feature_source_or_pool_gets_its_own_folder(pool, tmp_path):
    ctx = context(tmp_path)
    a = pool_embeddings("toy", pool, MeanColour(), ctx, ctx.cache_dir).folder
    b = pool_embeddings("other", pool, MeanColour(), ctx, ctx.cache_dir).folder
    c = pool_embeddings("toy", pool.take(np.arange(5)), MeanColour(), ctx, ctx.cache_dir).folder
    assert len({a, b, c}) == 3


def test_killed_run_resumes_at_the_next_shard(pool, tmp_path):
    ctx = context(tmp_path)
    with pytest.raises(RuntimeError, match="killed"):
        pool_embeddings("toy", pool, MeanColour(fail_after=2 * SHARD), ctx, ctx.cache_dir)
    folder = next(ctx.cache_dir.glob("embeddings-*"))
    assert sorted(p.name for p in folder.glob("shard-*.npy")) == [
        "shard-000000.npy", "shard-000001.npy"]
    resumed = MeanColour()
    embeddings = pool_embeddings("toy", pool, resumed, ctx, ctx.cache_dir)
    assert resumed.seen == 5  # only the last shard's images
    fresh = pool_embeddings("toy", pool, MeanColour(), context(tmp_path / "b"), tmp_path / "b")
    np.testing.assert_array_equal(embeddings.rows(np.arange(25)), fresh.rows(np.arange(25)))


@pytest.mark.parametrize("array, message", [
    (np.zeros((24, 4), np.float32), "has 24 rows but the pool has 25"),
    (np.zeros(25, np.float32), "must be a 2-D float array"),
    (np.zeros((25, 4), np.int64), "must be a 2-D float array"),
    (np.array([[None]] * 25, dtype=object), "is not a readable .npy array"),
])
def test_misaligned_or_foreign_npy_is_a_one_line_error(array, message, tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(CondPretrainError, match=f"^--features: {path}.*{message}") as info:
        read_embeddings(path, 25, "pool")
    assert "\n" not in str(info.value)


def test_npy_target_file_sits_beside_the_pool_file_unless_given(tmp_path):
    assert target_embeddings_path(tmp_path / "clip.npy", None) == tmp_path / "clip.target.npy"
    assert target_embeddings_path(tmp_path / "clip.npy", "t.npy") == Path("t.npy")


@pytest.mark.parametrize("text, expected", [
    ("target", ("target", "")), ("npy:/a/b.npy", ("npy", "/a/b.npy")),
    ("checkpoint:c.pt", ("checkpoint", "c.pt")),
])
def test_features_option_names_a_source_and_its_file(text, expected):
    assert parse_features(text) == expected


@pytest.mark.parametrize("text, message", [
    ("clip", "^--features: unknown feature source 'clip'"),
    ("npy", "^--features: npy needs a file"),
    ("target:x", "^--features: target takes no argument"),
])
def test_bad_features_option_is_a_one_line_error(text, message):
    with pytest.raises(CondPretrainError, match=message):
        parse_features(text)
