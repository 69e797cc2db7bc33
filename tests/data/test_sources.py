from __future__ import annotations

import pytest

from condpretrain.data.sources import open_pool, open_target, read_index_csv, write_index_csv
from condpretrain.errors import CondPretrainError


def test_image_folder_pool(two_part_pool):
    pool = open_pool([str(two_part_pool)])
    assert len(pool) == 96 and pool.labelled
    assert pool.classes == ["noise_a", "noise_b", "stripes_a", "stripes_b"]
    assert set(pool.pools) == {"pool"}
    assert pool.paths == sorted(pool.paths)  # deterministic order


def test_several_pools_keep_their_names(two_part_pool, stripes_target):
    pool = open_pool([f"big={two_part_pool}", f"small={stripes_target / 'train'}"])
    assert len(pool) == 96 + 32
    assert pool.pools.count("big") == 96 and pool.pools.count("small") == 32
    with pytest.raises(CondPretrainError, match="two pools are named 'x'"):
        open_pool([f"x={two_part_pool}", f"x={stripes_target / 'train'}"])


def test_target_with_splits(stripes_target):
    target = open_target(str(stripes_target))
    assert len(target.train) == 32 and len(target.test) == 16
    assert target.labelled and target.train.classes == ["ring", "warm"]


def test_val_folder_counts_as_test(stripes_target, tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "train").symlink_to(stripes_target / "train")
    (root / "val").symlink_to(stripes_target / "test")
    assert len(open_target(str(root)).test) == 16


def test_manifest_with_split_column_and_relative_paths(stripes_target, tmp_path):
    rows = ["path,label,split"]
    for split in ("train", "test"):
        for path in sorted((stripes_target / split).rglob("*.png")):
            rows.append(f"{path.relative_to(stripes_target)},{path.parent.name},{split}")
    manifest = stripes_target / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    target = open_target(str(manifest))
    assert len(target.train) == 32 and len(target.test) == 16
    assert all(p.startswith(str(stripes_target)) for p in target.train.paths)
    pool = open_pool([str(manifest)])  # as a pool, every row counts
    assert len(pool) == 48 and set(pool.pools) == {"manifest"}
    manifest.unlink()


def test_flat_folder_is_unlabelled(tmp_path, stripes_target):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in list((stripes_target / "train" / "warm").iterdir())[:5]:
        (flat / path.name).write_bytes(path.read_bytes())
    target = open_target(str(flat))
    assert len(target.train) == 5 and not target.labelled and target.test is None


def test_index_csv_round_trip(two_part_pool, tmp_path):
    pool = open_pool([str(two_part_pool)])
    write_index_csv(tmp_path / "pool.csv", pool)
    again = read_index_csv(tmp_path / "pool.csv")
    assert again == pool


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("empty", "no images found"),
    ("not_csv", "neither a folder nor a .csv"),
    ("bad_header", "must name the columns path,label"),
    ("empty_manifest", "lists no images"),
])
def test_bad_sources_are_one_line_errors(tmp_path, case, message):
    path = tmp_path / case
    if case == "empty":
        path.mkdir()
    elif case == "not_csv":
        path = tmp_path / "pool.txt"
        path.write_text("x")
    elif case == "bad_header":
        path = tmp_path / "m.csv"
        path.write_text("file,class\na.png,x\n")
    elif case == "empty_manifest":
        path = tmp_path / "m.csv"
        path.write_text("path,label\n")
    with pytest.raises(CondPretrainError, match=message) as info:
        open_pool([str(path)])
    assert "\n" not in str(info.value) and str(path.name) in str(info.value)


def test_pool_index_is_cached_and_invalidated(tmp_path, monkeypatch):
    from imagegen import write_family

    from condpretrain.data import sources

    monkeypatch.setenv("CONDPRETRAIN_INDEX_CACHE", str(tmp_path / "cache"))
    write_family(tmp_path / "pool" / "a" / "deeper", "stripes", 3)
    write_family(tmp_path / "pool" / "b", "noise", 2)
    calls = []
    real = sources._list_folder
    monkeypatch.setattr(sources, "_list_folder", lambda root: calls.append(root) or real(root))

    first = open_pool([str(tmp_path / "pool")])
    again = open_pool([str(tmp_path / "pool")])
    assert len(calls) == 1 and again == first and len(first) == 5
    assert first.labels == ["a"] * 3 + ["b"] * 2

    write_family(tmp_path / "pool" / "a" / "deeper", "rings", 1)  # a new file, deep down
    grown = open_pool([str(tmp_path / "pool")])
    assert len(calls) == 2 and len(grown) == 6

    monkeypatch.setenv("CONDPRETRAIN_INDEX_CACHE", "off")
    open_pool([str(tmp_path / "pool")])
    assert len(calls) == 3 and not list((tmp_path / "cache").glob("*.json.gz"))[1:]


def make_voc_lists(root, lists: dict[str, list[int]], images: int = 10):
    """ROOT/JPEGImages/00000k.jpg (k < images) and ROOT/ImageSets/<list>.txt of those ids."""
    from PIL import Image

    (root / "JPEGImages").mkdir(parents=True)
    for k in range(images):
        Image.new("RGB", (8, 8), (k, 0, 0)).save(root / "JPEGImages" / f"{k:06d}.jpg")
    for name, ids in lists.items():
        (root / "ImageSets" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / f"{name}.txt").write_text("".join(f"{k:06d}\n" for k in ids))
    return root


def ids_of(index) -> list[int]:
    return sorted(int(p.rsplit("/", 1)[-1][:6]) for p in index.paths)


def test_voc_target_reads_its_split_lists_not_the_whole_folder(tmp_path):
    # VOC2012-like: Segmentation/val lies inside Main/trainval, Main/test apart
    root = make_voc_lists(tmp_path / "VOC2012", {
        "Main/trainval": [0, 1, 2, 3, 4, 5], "Main/test": [6, 7, 8],
        "Segmentation/train": [0, 1], "Segmentation/val": [4, 5]})
    for spec in (root, root / "JPEGImages"):  # the VOC folder or its JPEGImages
        target = open_target(str(spec))
        assert ids_of(target.train) == [0, 1, 2, 3]  # image 9 is in no list
        assert ids_of(target.test) == [4, 5, 6, 7, 8]
        assert target.name == "VOC2012" and not target.labelled


def test_voc_target_with_segmentation_lists_only(tmp_path):
    root = make_voc_lists(tmp_path / "voc", {"Segmentation/train": [0, 1, 2],
                                             "Segmentation/val": [3, 4]})
    target = open_target(f"seg={root}")
    assert ids_of(target.train) == [0, 1, 2] and ids_of(target.test) == [3, 4]
    assert target.name == "seg"


def test_voc_target_errors_name_the_folder(tmp_path):
    root = make_voc_lists(tmp_path / "a", {"Main/test": [0]})
    with pytest.raises(CondPretrainError, match="ImageSets has none of the split lists"):
        open_target(str(root))
    root = make_voc_lists(tmp_path / "b", {"Main/trainval": [0, 42]})
    with pytest.raises(CondPretrainError, match="names 1 images not in JPEGImages.*000042"):
        open_target(str(root))


def test_held_out_holds_test_and_val_folders(stripes_target, tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    for split in ("train", "test", "val"):
        (root / split).symlink_to(stripes_target / ("test" if split == "val" else split))
    target = open_target(str(root))
    assert len(target.test) == 16 and len(target.evaluation) == 32
    single = open_target(str(stripes_target))  # no val folder: the test split is all
    assert single.held_out is None and single.evaluation is single.test
