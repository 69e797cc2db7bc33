from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image

from condpretrain.data import cache
from condpretrain.data.cache import (
    CachedImages,
    DecodedImages,
    build_cache,
    remove_stale_temps,
    stored_size,
)
from condpretrain.errors import CondPretrainError

RED, GREY, BLUE = (255, 0, 0), (128, 128, 128), (0, 0, 255)


def bands(path, width: int, height: int, colours) -> str:
    """``width x height`` image of vertical bands of equal width, one per colour."""
    pixels = np.zeros((height, width, 3), np.uint8)
    edges = np.linspace(0, width, len(colours) + 1).round().astype(int)
    for colour, left, right in zip(colours, edges[:-1], edges[1:], strict=True):
        pixels[:, left:right] = colour
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture()
def images(tmp_path):
    """A wide, a tall, a grey-level JPEG, a square and a broken image."""
    paths = [bands(tmp_path / "wide.png", 300, 100, [RED, GREY, BLUE]),
             bands(tmp_path / "tall.png", 90, 200, [GREY, BLUE])]
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70), np.uint8)).save(
        tmp_path / "grey.jpg")
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "square.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    return paths + [str(tmp_path / n) for n in ("grey.jpg", "square.png", "broken.jpg")]


def test_the_whole_image_is_stored_short_side_resized_true_size_recorded(images, tmp_path):
    size = stored_size(32)  # 37
    cached = build_cache(images, size, tmp_path / "cache")
    shapes = [tuple(cached.get(i)[0].shape) for i in range(len(images))]
    # 300x100 -> 111x37 (today: the 37x37 centre square); 90x200 -> 37x82; 70x50 -> 52x37
    assert shapes == [(3, 37, 111), (3, 82, 37), (3, 37, 52), (3, 37, 37), (3, 37, 37)]
    assert [cached.original_size(i) for i in range(len(images))] == \
        [(100, 300), (200, 90), (50, 70), (40, 40), (0, 0)]
    wide = cached.get(0)[0].float()
    # Both ends survive: red on the left, blue on the right.
    assert wide[0, :, :30].mean() > 240 and wide[2, :, :30].mean() < 15
    assert wide[2, :, -30:].mean() > 240 and wide[0, :, -30:].mean() < 15


def test_cached_and_decoded_give_the_same_pixels(images, tmp_path):
    size = stored_size(16)
    cached = build_cache(images, size, tmp_path / "cache")
    decoded = DecodedImages(images, size, max_pixels=10**8)
    for i in range(len(images)):
        (a, error_a), (b, error_b) = cached.get(i), decoded.get(i)
        assert torch.equal(a, b) and a.dtype == torch.uint8
        assert bool(error_a) == bool(error_b) == images[i].endswith("broken.jpg")


def test_records_are_jpeg_in_one_flat_memory_mapped_blob(images, tmp_path):
    cached = build_cache(images, 37, tmp_path / "cache")
    blob = np.load(cached.images_file, mmap_mode="r")
    assert blob.ndim == 1 and blob.dtype == np.uint8
    assert cached.table.shape == (len(images), 6)
    lengths = cached.table[:, cache.LENGTH]
    assert blob.size == lengths.sum() and lengths[-1] == 0  # the broken image: no record
    start = int(cached.table[0, cache.OFFSET])
    record = bytes(blob[start:start + int(lengths[0])])
    assert Image.open(io.BytesIO(record)).format == "JPEG"


def test_an_image_past_the_aspect_bound_keeps_its_centre(tmp_path):
    path = bands(tmp_path / "strip.png", 1000, 100, [RED, GREY, GREY, GREY, BLUE])  # 10:1
    image, _ = DecodedImages([path], 37, max_pixels=10**8).get(0)
    assert tuple(image.shape) == (3, 37, 148)  # cut to 4:1 around the centre
    assert (image.float() - 128).abs().max() < 8


def test_a_reused_cache_costs_nothing(images, tmp_path):
    first = build_cache(images, 20, tmp_path / "cache")
    again = build_cache(images, 20, tmp_path / "cache")
    assert first.build_seconds > 0 and again.build_seconds == 0
    assert DecodedImages(images, 20, 10**8).build_seconds == 0


def test_the_blob_header_has_one_length_whatever_the_size():
    headers = [cache._blob_header(n) for n in (0, 7, 10**15)]
    assert {len(h) for h in headers} == {128}
    for n, header in zip((0, 7), headers, strict=False):
        loaded = np.load(io.BytesIO(header + bytes(n)))
        assert loaded.shape == (n,) and loaded.dtype == np.uint8


def test_temp_files_of_killed_builds_are_removed_at_the_next_build(images, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    host, dead = socket.gethostname(), 2**22 + 12345  # above any pid_max: never running
    old_style = folder / f".images-37px-aaaa.npy.{dead}.tmp"
    killed = folder / f".images-37px-bbbb.npy.{dead}@{host}.tmp"
    live = folder / f".images-37px-cccc.npy.{os.getpid()}@{host}.tmp"
    elsewhere = folder / f".images-37px-dddd.npy.{dead}@another-host.tmp"
    forgotten = folder / f".images-37px-eeee.npy.{dead}@another-host.example.org.tmp"
    for tmp in (old_style, killed, live, elsewhere, forgotten):
        tmp.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(forgotten, (two_days_ago, two_days_ago))
    build_cache(images, 37, folder)
    left = {p.name for p in folder.glob(".*.tmp")}
    assert left == {live.name, elsewhere.name}  # a live build and a recent one elsewhere
    assert remove_stale_temps(folder) == []


def test_a_failed_build_leaves_no_temp_file(images, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("condpretrain.atomic.save_npy", boom)
    with pytest.raises(RuntimeError):
        build_cache(images, 37, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


def test_workers_do_not_change_the_cache(images, tmp_path):
    one = build_cache(images, 20, tmp_path / "a", workers=0)
    two = build_cache(images, 20, tmp_path / "b", workers=2)
    assert np.array_equal(one.table, two.table)
    assert np.array_equal(np.load(one.images_file), np.load(two.images_file))
    assert isinstance(two, CachedImages)


def test_too_little_free_space_is_one_line_error_before_writing(images, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=2_000))  # a nearly full disk
    folder = tmp_path / "cache"
    with pytest.raises(CondPretrainError) as info:
        build_cache(images, 37, folder)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    assert re.search(r"needs about [\d.]+ [MG]B and the disk has 0.00 MB free", message)
    assert not list(folder.iterdir())  # no temp file, no index


def test_a_disk_that_fills_up_mid_write_is_one_line_error_and_leaves_no_temp(
        images, tmp_path, monkeypatch):
    class FullDisk(io.FileIO):
        def write(self, data) -> int:
            if self.tell() + len(data) > 300:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    monkeypatch.setattr(cache, "open", lambda path, mode: FullDisk(path, "w"), raising=False)
    folder = tmp_path / "cache"
    with pytest.raises(CondPretrainError, match="disk filled up") as info:
        build_cache(images, 37, folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)
    assert not list(folder.iterdir())


def test_the_estimate_is_generous_and_measured():
    records = [b"x" * 1000, b"", b"x" * 3000]
    assert cache.estimate_bytes(records, 100, 256) >= 2000 * 100 * 1.2
    assert cache.estimate_bytes([b""], 10, 256) > 10 * 256 * 256 * 0.4  # nothing measured


def test_unreadable_images_are_named_in_the_log_and_skipped(tmp_path, caplog):
    wide = tmp_path / "wide.png"
    Image.new("L", (1_000_000, 1)).save(wide)  # the aspect limit: never resized
    good = bands(tmp_path / "good.png", 30, 20, [RED])
    with caplog.at_level(logging.WARNING, logger="condpretrain"):
        cached = build_cache([str(wide), good], 16, tmp_path / "cache")
    assert cached.table[:, cache.LENGTH].tolist()[0] == 0 and cached.valid.tolist() == [False, True]
    assert any("wide.png" in r.getMessage() and "32:1" in r.getMessage() for r in caplog.records)


def test_a_damaged_record_gives_a_placeholder_and_the_reason(images, tmp_path):
    cached = build_cache(images, 20, tmp_path / "cache")
    start = int(cached.table[0, cache.OFFSET]) + 128  # after the .npy header
    with open(cached.images_file, "r+b") as blob:  # a disk error over the first record
        blob.seek(start)
        blob.write(b"\0" * int(cached.table[0, cache.LENGTH]))
    again = CachedImages(cached.images_file, cached.index_file, 20)
    image, error = again.get(0)
    assert not image.any() and "damaged cache record" in error
    assert again.get(1)[1] == ""


def test_cache_names_hash_paths_that_are_not_utf8(tmp_path):
    one = cache.cache_files(tmp_path, ["/pool/caf\udce9.png"], 32)
    two = cache.cache_files(tmp_path, ["/pool/cafe.png"], 32)
    assert one != two
    # a UTF-8 name keeps the key it always had: no valid cache is orphaned
    assert cache.cache_files(tmp_path, ["/pool/é.png"], 32)[0].name == \
        "images-32px-" + hashlib.sha1(f"{cache.FORMAT}\n32\n/pool/é.png\n".encode()).hexdigest()[:16] + ".npy"
