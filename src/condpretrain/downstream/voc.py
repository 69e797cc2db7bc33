"""Reading the standard Pascal VOC layout: JPEGImages, Annotations, ImageSets, masks.

    VOCdevkit/VOC2007/JPEGImages/<id>.jpg
                     /Annotations/<id>.xml          boxes (1-based, inclusive pixels)
                     /ImageSets/Main/<split>.txt     ids for detection
                     /ImageSets/Segmentation/<split>.txt
                     /SegmentationClass/<id>.png    palette PNG, 0..20, 255 = ignore

Annotations, image headers (their sizes against the annotations) and masks are read and
checked up front: a bad file fails the run before any training, naming the file. An image
whose pixels are broken past its header fails when it is first decoded, on one line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from condpretrain.downstream.seg_augment import SegmentationAugment
from condpretrain.errors import CondPretrainError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
IGNORE_INDEX = 255
SEG_CLASSES = len(VOC_CLASSES) + 1  # background is class 0 in the masks
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class VocImage:
    """One annotated image. Boxes are 0-based continuous (x1, y1, x2, y2): VOC's
    inclusive pixel box [xmin, xmax] becomes [xmin - 1, xmax], so widths agree with the
    VOC devkit's ``xmax - xmin + 1`` and no +1 is needed anywhere else."""

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray  # (k, 4) float32
    labels: np.ndarray  # (k,) int64, 1..20 (0 is background in torchvision detectors)
    difficult: np.ndarray  # (k,) bool


def check_root(root: str | Path, option: str = "--voc") -> Path:
    root = Path(root)
    if not (root / "JPEGImages").is_dir():
        raise CondPretrainError(
            f"{option}: {root} is not a VOC folder (no JPEGImages/ inside; "
            "expected e.g. VOCdevkit/VOC2007)")
    return root


def read_split(root: Path, split: str, task: str = "Main") -> list[str]:
    """Image ids of ``ImageSets/<task>/<split>.txt``."""
    path = root / "ImageSets" / task / f"{split}.txt"
    if not path.is_file():
        raise CondPretrainError(f"{path}: split file not found")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise CondPretrainError(f"{path}: split file lists no images")
    return ids


def image_path(root: Path, image_id: str) -> Path:
    for ext in IMAGE_EXTENSIONS:
        path = root / "JPEGImages" / f"{image_id}{ext}"
        if path.is_file():
            return path
    raise CondPretrainError(f"{root / 'JPEGImages' / image_id}.jpg: image not found")


def parse_annotation(xml_path: Path, root: Path,
                     classes: Sequence[str] = VOC_CLASSES) -> VocImage:
    """One Annotations/<id>.xml, checked: known classes, boxes inside the image."""
    if not xml_path.is_file():
        raise CondPretrainError(f"{xml_path}: annotation not found")
    try:
        tree = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise CondPretrainError(f"{xml_path}: not valid XML ({exc})") from None
    image_id = xml_path.stem
    path = image_path(root, image_id)
    width, height = _image_size(tree, path, xml_path)
    boxes, labels, difficult = [], [], []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in classes:
            raise CondPretrainError(f"{xml_path}: unknown class {name!r} "
                                    f"(known: {', '.join(classes)})")
        xmin, ymin, xmax, ymax = _box(obj, xml_path)
        # VOC pixels are 1-based and inclusive: xmin >= 1 and xmax <= width.
        if not (1 <= xmin <= xmax <= width and 1 <= ymin <= ymax <= height):
            raise CondPretrainError(
                f"{xml_path}: box of {name!r} ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) is "
                f"outside the {width}x{height} image or empty")
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        labels.append(classes.index(name) + 1)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return VocImage(image_id, path, width, height,
                    np.asarray(boxes, np.float32).reshape(-1, 4),
                    np.asarray(labels, np.int64), np.asarray(difficult, bool))


def load_detection_split(root: str | Path, split: str) -> list[VocImage]:
    root = check_root(root)
    return [parse_annotation(root / "Annotations" / f"{i}.xml", root)
            for i in read_split(root, split, "Main")]


def load_segmentation_split(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs; every mask must exist (checked now, not mid-training)."""
    root = check_root(root)
    pairs = []
    for image_id in read_split(root, split, "Segmentation"):
        mask = root / "SegmentationClass" / f"{image_id}.png"
        if not mask.is_file():
            raise CondPretrainError(f"{mask}: mask not found (listed in the {split} split)")
        image = image_path(root, image_id)
        read_mask(mask, image_size(image))  # checked now, not when an epoch reaches it
        pairs.append((image, mask))
    return pairs


def read_rgb(path: Path) -> Image.Image:
    # No EXIF rotation: VOC boxes and masks refer to the stored pixel grid.
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CondPretrainError(f"{path}: unreadable image ({exc})") from None


def read_mask(path: Path, size: tuple[int, int], num_classes: int = SEG_CLASSES) -> np.ndarray:
    """Class indices of a VOC mask (palette PNG); 255 marks ignored pixels."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise CondPretrainError(f"{path}: mask must be a palette or greyscale PNG, "
                                        f"got mode {image.mode}")
            mask = np.array(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CondPretrainError(f"{path}: unreadable mask ({exc})") from None
    if mask.shape != (size[1], size[0]):
        raise CondPretrainError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                                f"image is {size[0]}x{size[1]}")
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise CondPretrainError(f"{path}: unknown class index {int(mask[bad][0])} in mask "
                                f"(valid: 0..{num_classes - 1} and {IGNORE_INDEX})")
    return mask


class DetectionDataset(Dataset):
    """(uint8 image tensor, target dict) pairs: the detector's step makes the image float
    on the device (:func:`~condpretrain.downstream.detection.to_model_input`: a quarter of
    the bytes to pin and copy) and torchvision's transform resizes it."""

    def __init__(self, items: list[VocImage], train: bool) -> None:
        self.items = items
        self.train = train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item = self.items[index]
        image = _to_uint8(read_rgb(item.image_path))
        boxes = torch.from_numpy(item.boxes.copy())
        if self.train and torch.rand(()) < 0.5:  # horizontal flip, the only augmentation
            image = image.flip(-1)
            boxes[:, [0, 2]] = image.shape[-1] - boxes[:, [2, 0]]
        target = {"boxes": boxes, "labels": torch.from_numpy(item.labels.copy())}
        return image, target


def detection_collate(batch: list) -> tuple[list, list]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def _to_uint8(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return _to_uint8(image).float().div_(255)


def _image_size(tree: ET.Element, path: Path, xml_path: Path) -> tuple[int, int]:
    """The image's size from its header (read now, so a missing or broken file fails
    the run before training), checked against the annotation's <size>: boxes are in the
    annotated pixel grid, and a resized image would silently misplace every box."""
    try:
        width = int(float(tree.findtext("size/width") or 0))
        height = int(float(tree.findtext("size/height") or 0))
    except ValueError:
        raise CondPretrainError(f"{xml_path}: <size> is not a number") from None
    actual = image_size(path)
    # some tools write 0 sizes: the header is then the only size there is
    if width > 0 and height > 0 and (width, height) != actual:
        raise CondPretrainError(f"{xml_path}: <size> says {width}x{height}, but {path.name} is "
                                f"{actual[0]}x{actual[1]} (resized after annotating?)")
    return actual


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header alone (no pixels decoded)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CondPretrainError(f"{path}: unreadable image ({exc})") from None


def _box(obj: ET.Element, xml_path: Path) -> tuple[float, float, float, float]:
    values = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = obj.findtext(f"bndbox/{key}")
        try:
            values.append(float(text))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise CondPretrainError(f"{xml_path}: object without a numeric bndbox/{key}") from None
    return values[0], values[1], values[2], values[3]


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class SegmentationDataset(Dataset):
    """Normalised image and int64 mask. Training: semseg's PSANet augmentation (random
    scale, rotation, blur, flip, then a square crop padded with the mean colour and the
    ignore label where the image is smaller; see :mod:`.seg_augment`); evaluation: the
    whole image (the model slides crops over it)."""

    def __init__(self, pairs: list[tuple[Path, Path]], train: bool, crop_size: int,
                 scale_range: tuple[float, float] = (0.5, 2.0), rotate: float = 10.0,
                 blur: bool = True) -> None:
        self.pairs = pairs
        self.train = train
        self.augment = SegmentationAugment(crop_size, scale_range, rotate, blur, IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_file, mask_file = self.pairs[index]
        pil = read_rgb(image_file)
        mask = torch.from_numpy(read_mask(mask_file, pil.size).astype(np.int64))
        image = (_to_tensor(pil) - IMAGENET_MEAN) / IMAGENET_STD
        if self.train:
            image, mask = self.augment(image, mask)
        return image, mask
