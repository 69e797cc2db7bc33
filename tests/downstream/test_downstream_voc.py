"""VOC layout reading and one-line errors naming the bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from vocgen import annotation_xml

from condpretrain.downstream.voc import (
    DetectionDataset,
    SegmentationDataset,
    load_detection_split,
    load_segmentation_split,
)
from condpretrain.errors import CondPretrainError


def test_boxes_are_zero_based_and_dataset_yields_targets(tiny_voc: Path):
    items = load_detection_split(tiny_voc, "trainval")
    assert len(items) == 6 and items[0].labels.min() >= 1
    (tiny_voc / "Annotations" / "000000.xml").write_text(
        annotation_xml("000000", 48, [("car", 1, 2, 10, 20)]))
    item = load_detection_split(tiny_voc, "trainval")[0]
    assert item.boxes.tolist() == [[0, 1, 10, 20]] and item.labels.tolist() == [7]
    image, target = DetectionDataset([item], train=False)[0]
    assert image.shape == (3, 48, 48) and target["boxes"].shape == (1, 4)
    assert image.dtype == torch.uint8  # made float on the device (a quarter to copy)


@pytest.mark.parametrize("objects, message", [
    ([("car", 1, 1, 60, 10)], "outside"),
    ([("unicorn", 1, 1, 10, 10)], "unknown class 'unicorn'"),
])
def test_bad_annotation_names_the_file(tiny_voc: Path, objects, message):
    xml = tiny_voc / "Annotations" / "000003.xml"
    xml.write_text(annotation_xml("000003", 48, objects))
    with pytest.raises(CondPretrainError, match=message) as info:
        load_detection_split(tiny_voc, "trainval")
    assert str(xml) in str(info.value) and "\n" not in str(info.value)


def test_missing_mask_and_split_name_the_file(tiny_voc: Path):
    mask = tiny_voc / "SegmentationClass" / "000002.png"
    mask.unlink()
    with pytest.raises(CondPretrainError, match="mask not found") as info:
        load_segmentation_split(tiny_voc, "train")
    assert str(mask) in str(info.value)
    with pytest.raises(CondPretrainError, match="nosuch.txt"):
        load_segmentation_split(tiny_voc, "nosuch")
    with pytest.raises(CondPretrainError, match="not a VOC folder"):
        load_detection_split(tiny_voc / "Annotations", "trainval")


def test_mask_with_unknown_class_names_the_file(tiny_voc: Path):
    pairs = load_segmentation_split(tiny_voc, "train")
    bad = np.zeros((48, 48), np.uint8)
    bad[0, 0] = 40
    Image.fromarray(bad, "L").save(pairs[0][1])
    with pytest.raises(CondPretrainError, match="unknown class index 40") as info:
        SegmentationDataset(pairs, train=False, crop_size=33)[0]
    assert str(pairs[0][1]) in str(info.value)


def test_segmentation_crops_keep_255(tiny_voc: Path):
    pairs = load_segmentation_split(tiny_voc, "train")
    image, mask = SegmentationDataset(pairs, train=True, crop_size=57)[0]  # larger than 48
    assert image.shape == (3, 57, 57) and mask.shape == (57, 57)
    assert (mask == 255).any() and set(mask.unique().tolist()) <= {0, 7, 12, 255}


def test_images_are_checked_against_their_annotations_up_front(tiny_voc: Path):
    image = tiny_voc / "JPEGImages" / "000004.jpg"
    Image.new("RGB", (96, 96)).save(image)  # resized after annotating (48 x 48)
    with pytest.raises(CondPretrainError, match="says 48x48, but 000004.jpg is 96x96") as info:
        load_detection_split(tiny_voc, "trainval")
    assert str(tiny_voc / "Annotations" / "000004.xml") in str(info.value)
    image.write_bytes(b"not a picture")
    with pytest.raises(CondPretrainError, match="unreadable image") as info:
        load_detection_split(tiny_voc, "trainval")
    assert str(image) in str(info.value)


def test_masks_are_checked_when_the_split_is_read(tiny_voc: Path):
    mask = tiny_voc / "SegmentationClass" / "000005.png"
    bad = np.zeros((48, 48), np.uint8)
    bad[3, 3] = 40
    Image.fromarray(bad, "L").save(mask)
    with pytest.raises(CondPretrainError, match="unknown class index 40") as info:
        load_segmentation_split(tiny_voc, "train")
    assert str(mask) in str(info.value)
    Image.fromarray(np.zeros((40, 48), np.uint8), "L").save(mask)
    with pytest.raises(CondPretrainError, match="mask is 48x40, image is 48x48"):
        load_segmentation_split(tiny_voc, "train")


def test_a_broken_image_met_in_a_loader_worker_is_one_line(tiny_voc: Path, tmp_path: Path,
                                                           capsys):
    from condpretrain.cli import main

    image = tiny_voc / "JPEGImages" / "000005.jpg"  # the header stays, the pixels are cut
    image.write_bytes(image.read_bytes()[:200])
    code = main(["detect", "--voc", str(tiny_voc), "--out", str(tmp_path / "det"),
                 "--preset", "quick", "--iterations", "6", "--workers", "1",
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    # Pillow's own words for the cut vary by version; the worker's traceback must not show
    assert err[-1].startswith(f"condpretrain detect: error: {image}: unreadable image (")
    assert "Traceback" not in err[-1] and "DataLoader" not in err[-1]
