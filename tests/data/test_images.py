from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import Image

from condpretrain.data.images import ImageDataset, PathTable, eval_transform, load_rgb
from condpretrain.errors import UnreadableImageError


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return str(path)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "1"])
def test_every_common_mode_becomes_rgb(tmp_path, mode):
    image = Image.new("RGB", (20, 12), (200, 40, 10)).convert(mode)
    ext = "tiff" if mode in ("CMYK", "I;16", "I") else "png"
    loaded = load_rgb(_save(image, tmp_path / f"im.{ext}"))
    assert loaded.mode == "RGB" and loaded.size == (20, 12)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    array = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    path = _save(Image.fromarray(array), tmp_path / "grey16.png")
    assert 120 <= np.asarray(load_rgb(path))[0, 0, 0] <= 135


def test_transparent_pixels_composite_on_white(tmp_path):
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_rgb(_save(image, tmp_path / "clear.png")))[0, 0].tolist() == [255] * 3


def test_exif_orientation_is_honoured(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 128, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = _save(image, tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_rgb(path).size == (10, 30)


def test_truncated_and_broken_files_raise(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    for path in (truncated, broken):
        with pytest.raises(UnreadableImageError, match=path.name):
            load_rgb(str(path))


def test_pixel_limit_guards_against_decompression_bombs(tmp_path):
    path = _save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    with pytest.raises(UnreadableImageError, match="over the limit"):
        load_rgb(path, max_pixels=5_000)


def test_dataset_flags_bad_files_with_a_placeholder(tmp_path):
    good = _save(Image.new("RGB", (16, 16), (255, 0, 0)), tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    dataset = ImageDataset([good, str(bad)], eval_transform(8), labels=[3, 4])
    image, label, index, error = dataset[0]
    assert image.shape == (3, 8, 8) and label == 3 and index == 0 and error == ""
    image, label, index, error = dataset[1]
    assert image.shape == (3, 8, 8) and not image.any() and label == 4 and "bad.png" in error


def test_path_table_round_trips_unicode():
    paths = ["/a/b.jpg", "/ü/ñ/图.png", ""]
    table = PathTable(paths)
    assert [table[i] for i in range(len(table))] == paths


def test_an_extreme_aspect_ratio_is_skipped_before_any_resize(tmp_path):
    # 1,000,000 x 1: a few hundred bytes under the pixel limit; a short-side resize to
    # 224 would make it a 224 x 224,000,000 tensor (150 GB).
    wide = _save(Image.new("L", (1_000_000, 1)), tmp_path / "wide.png")
    tall = _save(Image.new("RGB", (1, 200_000)), tmp_path / "tall.png")
    assert os.path.getsize(wide) < 2_000
    for path in (wide, tall):
        with pytest.raises(UnreadableImageError, match="longer than 32:1") as info:
            load_rgb(path)
        assert os.path.basename(path) in str(info.value)
    assert load_rgb(_save(Image.new("RGB", (320, 10)), tmp_path / "banner.png")).size == (320, 10)
    # What scoring makes of it: a placeholder of the output size, and the reason.
    image, _, _, error = ImageDataset([wide], eval_transform(224))[0]
    assert image.shape == (3, 224, 224) and not image.any() and "32:1" in error


@pytest.mark.parametrize("fmt", ["TGA", "PCX", "ICO", "SGI"])
def test_formats_the_tool_does_not_read_are_refused_whatever_the_name(tmp_path, fmt):
    path = tmp_path / "disguised.jpg"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path, fmt)
    with pytest.raises(UnreadableImageError, match="disguised.jpg"):
        load_rgb(str(path))


def test_a_misnamed_image_of_a_format_the_tool_reads_still_decodes(tmp_path):
    path = tmp_path / "really-a-png.jpg"
    Image.new("RGB", (16, 8), (1, 2, 3)).save(path, "PNG")
    assert load_rgb(str(path)).size == (16, 8)


def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def decode() -> None:
        try:
            load_rgb(str(fifo))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    reader = threading.Thread(target=decode, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # blocked in open(): let it go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
        pytest.fail("decoding a FIFO blocked")
    assert isinstance(outcome[0], UnreadableImageError) and "not a regular file" in str(outcome[0])


def test_an_empty_declared_size_is_unreadable(tmp_path):
    path = tmp_path / "empty.ppm"
    path.write_bytes(b"P6\n0 7\n255\n")
    with pytest.raises(UnreadableImageError, match="empty.ppm"):
        load_rgb(str(path))
