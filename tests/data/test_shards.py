from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from condpretrain.config import SelectConfig, build_config
from condpretrain.data.images import load_rgb
from condpretrain.data.shards import expand_braces, write_shards
from condpretrain.data.sources import open_pool
from condpretrain.errors import CondPretrainError, UnreadableImageError
from condpretrain.models import build_resnet, save_backbone
from condpretrain.selection import select


@pytest.fixture(scope="module")
def shards(two_part_pool, tmp_path_factory):
    pool = open_pool([str(two_part_pool)])
    out = tmp_path_factory.mktemp("shards")
    written = write_shards(pool.paths, pool.labels, out, per_shard=40, prefix="pool")
    return out, pool, written


def test_brace_expansion():
    assert expand_braces("p-{000..002}.tar") == ["p-000.tar", "p-001.tar", "p-002.tar"]
    assert expand_braces("{a,b}-{1..2}.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_shards_read_in_place_like_the_folder(shards):
    out, pool, written = shards
    assert [p.name for p in written] == ["pool-000000.tar", "pool-000001.tar", "pool-000002.tar"]
    sharded = open_pool([str(out / "pool-{000000..000002}.tar")])
    assert len(sharded) == 96 and sharded.labels == pool.labels
    assert set(sharded.pools) == {"pool"}
    first = np.asarray(load_rgb(sharded.paths[0]))
    np.testing.assert_array_equal(first, np.asarray(load_rgb(pool.paths[0])))


def test_missing_member_or_shard(shards):
    out, _, _ = shards
    with pytest.raises(UnreadableImageError, match="no member"):
        load_rgb(f"{out / 'pool-000000.tar'}#nothing.png")
    with pytest.raises(CondPretrainError, match="no such shard"):
        open_pool([str(out / "pool-{000000..000009}.tar")])
    (out / "broken.tar").write_bytes(b"x" * 700)
    with pytest.raises(CondPretrainError, match="not a readable tar shard"):
        open_pool([str(out / "broken.tar")])


def test_select_from_shards_and_write_subset_shards(shards, stripes_target, tmp_path):
    out, _, _ = shards
    torch.manual_seed(0)
    save_backbone(build_resnet("resnet10"), tmp_path / "b.pt")
    config = build_config(SelectConfig, "quick", method="clustering-min", count=30,
                          device="cpu", features_from=str(tmp_path / "b.pt"))
    select([str(out / "pool-{000000..000002}.tar")], str(stripes_target), tmp_path / "s", config)
    select([shards[1].paths[0].rsplit("/", 2)[0]],
           str(stripes_target), tmp_path / "f", config)
    from_shards = np.sort(np.load(tmp_path / "s" / "scores.npy"))
    from_folder = np.sort(np.load(tmp_path / "f" / "scores.npy"))
    np.testing.assert_allclose(from_shards, from_folder, rtol=1e-5)

    result = subprocess.run(
        [sys.executable, "-m", "condpretrain", "select", "--scores", str(tmp_path / "s"),
         "--count", "25", "--out", str(tmp_path / "small"), "--write-shards",
         "--images-per-shard", "10"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    subset_shards = sorted((tmp_path / "small" / "shards").glob("subset-*.tar"))
    assert len(subset_shards) == 3
    again = open_pool([str(tmp_path / "small" / "shards" / "subset-{000000..000002}.tar")])
    subset_rows = (tmp_path / "small" / "subset.csv").read_text().splitlines()[1:]
    assert again.labels == [row.split(",")[1] for row in subset_rows]
