"""The search for copies of evaluation images: planted copies of each kind are found,
images that are not copies are not, and batching or blocking changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from dupgen import KINDS, make_leaky_data, photo
from PIL import Image

from condpretrain.data import duplicates
from condpretrain.data.duplicates import (
    HAMMING_MAX,
    Duplicate,
    _share,
    find_duplicates,
    popcount,
)
from condpretrain.dist import DistContext


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    data = make_leaky_data(tmp_path_factory.mktemp("leaky"))
    pool = sorted(str(p) for p in data["pool"].rglob("*") if p.is_file())
    held = sorted(str(p) for split in ("test", "val")
                  for p in (data["target"] / split).rglob("*.png"))
    return data, pool, held


def by_path(found: list[Duplicate], pool: list[str], held: list[str]) -> dict[str, Duplicate]:
    return {pool[d.pool_index]: d for d in found}


def test_each_kind_of_copy_is_found_and_nothing_else(leaky):
    data, pool, held = leaky
    found = by_path(find_duplicates(pool, held, batch_size=8), pool, held)
    planted = {str(p): kind for kind, p in data["planted"].items()}
    assert set(found) == set(planted)  # the train-image copy and the other photo are absent
    for path, kind in planted.items():
        match = found[path]
        assert held[match.eval_index] == str(data["sources"][kind])
        assert match.hamming <= HAMMING_MAX and match.cosine >= duplicates.COSINE_MIN
        assert match.flipped == (kind == "flipped")
    assert found[str(data["planted"]["exact"])].hamming == 0
    assert found[str(data["planted"]["exact"])].cosine == pytest.approx(1.0, abs=1e-3)


def test_batches_and_table_blocks_do_not_change_the_result(leaky, monkeypatch):
    _, pool, held = leaky
    whole = find_duplicates(pool, held, batch_size=64)
    monkeypatch.setattr(duplicates, "BLOCK_PAIRS", 3)  # a few table rows at a time
    assert find_duplicates(pool, held, batch_size=1) == whole
    assert [d.pool_index for d in whole] == sorted(d.pool_index for d in whole)


def test_flat_and_unreadable_images_match_nothing(tmp_path):
    grey = [tmp_path / "grey_a.png", tmp_path / "grey_b.png"]
    Image.new("RGB", (40, 30), (120, 120, 120)).save(grey[0])
    Image.new("RGB", (80, 60), (121, 121, 121)).save(grey[1])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert find_duplicates([str(grey[1]), str(broken)], [str(grey[0]), str(broken)]) == []


def test_copies_inside_webdataset_shards_are_found(tmp_path):
    from condpretrain.data.shards import index_shards, write_shards

    path = tmp_path / "eval.png"
    photo(np.random.default_rng(7)).save(path)
    write_shards([str(path)], ["a"], tmp_path / "shards", 10)
    members, _ = index_shards(str(next((tmp_path / "shards").glob("*.tar"))), "--source")
    assert [d.pool_index for d in find_duplicates(members, [str(path)])] == [0]


def test_popcount_without_numpy_2(monkeypatch):
    values = np.array([0, 1, 2**63 + 5, 2**64 - 1], dtype=np.uint64)
    expected = [0, 1, 3, 64]
    assert popcount(values).tolist() == expected
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert popcount(values).tolist() == expected


@pytest.mark.parametrize("total", [0, 1, 7, 10])
def test_rank_shares_cover_the_pool_once(total):
    shares = [_share(total, DistContext(rank=r, world_size=3)) for r in range(3)]
    covered = [i for start, stop in shares for i in range(start, stop)]
    assert covered == list(range(total))


def test_kinds_cover_the_brief():
    assert set(KINDS) == {"exact", "resized", "jpeg", "flipped"}
