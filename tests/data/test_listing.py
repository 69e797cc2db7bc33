"""Listing pool folders that a hostile user prepared: symbolic link loops and links to
folders listed already (each image once), names that are not UTF-8 (skipped, counted)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from imagegen import write_family

from condpretrain.data import sources
from condpretrain.data.images import PathTable
from condpretrain.data.listing import NOT_UTF8, REPEATED
from condpretrain.data.shards import index_shards
from condpretrain.data.sources import open_pool, open_target, read_index_csv, write_index_csv
from condpretrain.errors import CondPretrainError


def relative(index, root: Path) -> list[str]:
    return [os.path.relpath(p, root) for p in index.paths]


def bad_name(folder: Path, raw: bytes, data: bytes = b"") -> Path:
    """A file named with bytes that are not UTF-8, or a skip where the file system refuses."""
    path = os.path.join(os.fsencode(folder), raw)
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    except OSError as exc:  # e.g. a file system that only takes UTF-8 names
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    os.write(fd, data)
    os.close(fd)
    return Path(os.fsdecode(path))


def test_a_symlink_loop_lists_each_image_once(tmp_path):
    pool = tmp_path / "pool"
    write_family(pool / "a", "stripes", 3)
    write_family(pool / "b", "noise", 2)
    (pool / "a" / "loop").symlink_to(".")  # inside a class: a, a/loop, a/loop/loop, ...
    (pool / "loop").symlink_to(".")  # beside the classes: a class that is the whole pool
    index = open_pool(str(pool))
    assert relative(index, pool) == [f"a/stripes_{i:04d}.png" for i in range(3)] + \
        [f"b/noise_{i:04d}.png" for i in range(2)]
    assert index.labels == ["a"] * 3 + ["b"] * 2
    assert index.unlisted == {REPEATED: 2}


def test_a_loop_in_a_flat_folder_keeps_it_flat(tmp_path):
    flat = tmp_path / "flat"
    write_family(flat, "rings", 2)
    (flat / "again").symlink_to(".")
    target = open_target(str(flat))
    assert len(target.train) == 2 and not target.labelled  # not a class named "again"


def test_links_are_followed_once_and_never_move_images_to_another_class(tmp_path):
    pool, outside = tmp_path / "pool", tmp_path / "outside"
    write_family(pool / "a", "stripes", 3)
    write_family(pool / "b", "noise", 2)
    write_family(outside / "x", "rings", 2)
    write_family(outside / "y", "checker", 1)
    (pool / "b" / "sibling").symlink_to("../a")  # a's images stay a's
    (pool / "b" / "extra").symlink_to(outside / "y")  # a folder nobody else lists: b's
    (pool / "c").symlink_to(outside / "x")  # a class assembled from a link
    (pool / "d").symlink_to(outside / "x")  # a second link to it: listed once
    index = open_pool(str(pool))
    assert relative(index, pool) == (
        [f"a/stripes_{i:04d}.png" for i in range(3)] + [f"b/noise_{i:04d}.png" for i in range(2)]
        + ["b/extra/checker_0000.png"] + [f"c/rings_{i:04d}.png" for i in range(2)])
    assert index.labels == ["a"] * 3 + ["b"] * 3 + ["c"] * 2
    assert len({os.path.realpath(p) for p in index.paths}) == len(index) == 8
    assert index.unlisted == {REPEATED: 2}  # b/sibling, d


def test_the_index_cache_keeps_the_listing_and_its_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDPRETRAIN_INDEX_CACHE", str(tmp_path / "cache"))
    pool = tmp_path / "pool"
    write_family(pool / "a", "stripes", 2)
    write_family(pool / "b", "noise", 2)
    (pool / "a" / "loop").symlink_to(".")
    calls = []
    real = sources._list_folder
    monkeypatch.setattr(sources, "_list_folder", lambda root: calls.append(root) or real(root))
    first = open_pool(str(pool))
    again = open_pool(str(pool))
    assert len(calls) == 1 and again == first and again.unlisted == first.unlisted == {REPEATED: 1}
    (pool / "b" / "up").symlink_to("..")  # a new link changes b's modification time
    grown = open_pool(str(pool))
    assert len(calls) == 2 and grown == first and grown.unlisted == {REPEATED: 2}


def test_names_that_are_not_utf8_are_left_out_and_counted(tmp_path):
    pool = tmp_path / "pool"
    good = write_family(pool / "a", "stripes", 2)
    bad_name(pool / "a", b"caf\xe9.png", good[0].read_bytes())  # Latin-1, not UTF-8
    (pool / "b").mkdir()
    write_family(pool / "b", "noise", 1)
    bad_class = Path(os.fsdecode(os.path.join(os.fsencode(pool), b"\xff\xfe")))
    bad_class.mkdir()
    write_family(bad_class, "rings", 2)
    index = open_pool(str(pool))
    assert relative(index, pool) == ["a/stripes_0000.png", "a/stripes_0001.png",
                                     "b/noise_0000.png"]
    assert index.unlisted == {NOT_UTF8: 2}  # the file, the class folder
    write_index_csv(tmp_path / "pool.csv", index)  # UnicodeEncodeError before
    assert read_index_csv(tmp_path / "pool.csv") == index

    flat = tmp_path / "flat"
    write_family(flat, "rings", 1)
    bad_name(flat, b"\xff.png", b"x")
    target = open_target(str(flat))
    assert len(target.train) == 1 and target.train.unlisted == {NOT_UTF8: 1}


def test_a_pool_path_that_is_not_utf8_is_a_one_line_error(tmp_path):
    folder = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"p\xffol")))
    try:
        write_family(folder / "a", "stripes", 1)
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    for call, option in ((open_pool, "--source"), (open_target, "--target")):
        with pytest.raises(CondPretrainError, match=rf"{option}: .*p\\xffol is not valid UTF-8") \
                as info:
            call(str(folder))
        assert "\n" not in str(info.value)


def test_shard_samples_whose_name_or_label_is_not_utf8_are_left_out(tmp_path):
    shard = tmp_path / "pool-000000.tar"
    good = write_family(tmp_path / "src", "stripes", 3)
    with tarfile.open(shard, "w", encoding="utf-8", errors="surrogateescape") as tar:
        for name, data in (("a.png", good[0].read_bytes()), ("a.cls", b"cat"),
                           ("caf\udce9.png", good[1].read_bytes()),  # the byte 0xe9 in the tar
                           ("b.png", good[2].read_bytes()), ("b.cls", b"\xff\xfe")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    paths, labels = index_shards(str(shard))
    assert [p.rsplit("#", 1)[1] for p in paths] == ["a.png"] and labels == ["cat"]


def test_path_table_round_trips_names_that_are_not_utf8():
    paths = ["/a/caf\udce9.png", "/ü/b.png"]
    table = PathTable(paths)
    assert [table[i] for i in range(len(table))] == paths


def test_a_damaged_index_cache_file_is_listed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDPRETRAIN_INDEX_CACHE", str(tmp_path / "cache"))
    pool = tmp_path / "pool"
    write_family(pool / "a", "stripes", 2)
    first = open_pool(str(pool))
    (saved,) = (tmp_path / "cache").glob("*.json.gz")
    saved.write_bytes(saved.read_bytes()[:20])  # a truncated gzip stream: EOFError
    assert open_pool(str(pool)) == first
