from __future__ import annotations

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
