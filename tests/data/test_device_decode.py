"""--decode gpu: the batched device path (nvJPEG on CUDA; here torchvision's same batched
decode_jpeg on the CPU device) scores the same files as Pillow, with the same pixels up to
the resizers' last bits, and falls back to Pillow for whatever it cannot decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import family_image
from PIL import Image

from condpretrain.data import device_decode
from condpretrain.data.device_decode import decode_device, pool_batches
from condpretrain.errors import CondPretrainError

CPU = torch.device("cpu")
SIZE = 32


def _photo(seed: int, width: int, height: int) -> Image.Image:
    family = ("stripes", "noise", "checker", "rings")[seed % 4]
    return family_image(family, np.random.default_rng(seed), size=max(width, height)).crop(
        (0, 0, width, height))


def _mixed_pool(folder: Path) -> list[str]:
    """JPEGs of several sizes (RGB, greyscale, EXIF-rotated), a PNG, a CMYK JPEG (both
    Pillow's), a truncated JPEG and a text file (unreadable either way)."""
    folder.mkdir()
    paths = []
    for i, (w, h) in enumerate([(80, 60), (45, 90), (64, 64), (33, 120)]):
        path = folder / f"rgb{i}.jpg"
        _photo(i, w, h).save(path, quality=90)
        paths.append(path)
    _photo(4, 70, 50).convert("L").save(folder / "grey.jpg")
    rotated = _photo(5, 90, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 clockwise to display
    rotated.save(folder / "exif.jpg", exif=exif.tobytes())
    _photo(6, 50, 70).save(folder / "plain.png")
    _photo(7, 60, 60).convert("CMYK").save(folder / "cmyk.jpg")
    good = (folder / "rgb0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.jpg").write_text("not an image")
    paths += [folder / n for n in ("grey.jpg", "exif.jpg", "plain.png", "cmyk.jpg",
                                   "truncated.jpg", "notes.jpg")]
    return [str(p) for p in paths]


def _collect(paths: list[str], decode_on: torch.device | None, batch_size: int = 4,
             max_pixels: int = 10**8) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    images, errors = {}, {}
    for batch in pool_batches(paths, resolution=SIZE, batch_size=batch_size, workers=0,
                              max_pixels=max_pixels, device=CPU, decode_on=decode_on):
        good_rows = batch.rows[batch.good]
        assert len(batch.images) == len(good_rows)
        images.update(zip(good_rows.tolist(), batch.images, strict=True))
        errors.update((int(r), e) for r, e in zip(batch.rows, batch.errors, strict=True) if e)
    return images, errors


def test_device_path_scores_the_same_files_with_the_same_pixels(tmp_path):
    paths = _mixed_pool(tmp_path / "pool")
    pillow, pillow_errors = _collect(paths, None)
    device, device_errors = _collect(paths, CPU)
    assert sorted(device) == sorted(pillow) == list(range(8))  # all but the two broken
    assert device_errors == pillow_errors and sorted(device_errors) == [8, 9]
    for row in pillow:
        assert device[row].shape == (3, SIZE, SIZE)
        # at most one grey level apart (1/255 over the smallest std, 0.224: 0.0175 in
        # normalised units): the float resize rounds where the uint8 one truncates
        difference = (device[row] - pillow[row]).abs()
        assert difference.max() < 0.0176, paths[row]


def test_exif_orientation_is_applied_on_the_device(tmp_path):
    paths = _mixed_pool(tmp_path / "pool")
    exif_row = paths.index(str(tmp_path / "pool" / "exif.jpg"))
    pillow, _ = _collect(paths, None)
    device, _ = _collect(paths, CPU)
    unrotated = (device[exif_row].flip(-1).transpose(-1, -2) - pillow[exif_row]).abs().mean()
    assert (device[exif_row] - pillow[exif_row]).abs().mean() < unrotated


def test_only_plain_jpegs_go_to_the_device_decoder(tmp_path, monkeypatch):
    paths = _mixed_pool(tmp_path / "pool")
    name_of = {Path(p).read_bytes(): Path(p).name for p in paths}
    calls = []
    real = device_decode._decode_call

    def spy(data, device):
        calls.append(sorted(name_of[bytes(d.numpy())] for d in data))
        return real(data, device)

    monkeypatch.setattr(device_decode, "_decode_call", spy)
    _collect(paths, CPU, batch_size=len(paths))
    jpegs = ["exif.jpg", "grey.jpg", "rgb0.jpg", "rgb1.jpg", "rgb2.jpg", "rgb3.jpg",
             "truncated.jpg"]  # not the PNG, CMYK or text file; the truncation is in the data
    assert calls[0] == jpegs
    # the batch failed on the truncated file: then one file at a time, so only it is lost
    assert calls[1:] == [[name] for name in paths_order(paths, jpegs)]


def paths_order(paths: list[str], names: list[str]) -> list[str]:
    return [Path(p).name for p in paths if Path(p).name in names]


def test_a_file_the_device_decoder_refuses_is_decoded_by_pillow(tmp_path, monkeypatch):
    paths = _mixed_pool(tmp_path / "pool")
    refused = (tmp_path / "pool" / "rgb1.jpg").read_bytes()
    real = device_decode._decode_call

    def picky(data, device):
        if any(bytes(d.numpy()) == refused for d in data):
            raise RuntimeError("nvjpeg: unsupported")
        return real(data, device)

    monkeypatch.setattr(device_decode, "_decode_call", picky)
    pillow, _ = _collect(paths, None)
    device, errors = _collect(paths, CPU)
    assert sorted(device) == sorted(pillow) and sorted(errors) == [8, 9]
    assert torch.allclose(device[1], pillow[1], atol=1e-5)  # Pillow's own pixels for it


def test_the_size_limits_hold_before_any_decoder(tmp_path):
    paths = _mixed_pool(tmp_path / "pool")
    _, errors = _collect(paths, CPU, max_pixels=64 * 64)
    assert "over the limit" in errors[0]  # 80 x 60 JPEG, refused from its header
    assert 2 not in errors  # 64 x 64 passes


def test_decode_choice():
    assert decode_device("auto", CPU) is None
    assert decode_device("cpu", torch.device("cuda")) is None
    assert decode_device("auto", torch.device("cuda")) == torch.device("cuda")
    with pytest.raises(CondPretrainError, match="--decode gpu"):
        decode_device("gpu", CPU)
