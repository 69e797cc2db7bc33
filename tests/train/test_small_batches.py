"""No training loop ever trains on a batch of one image (BatchNorm raises on it): a data
set of k x batch + 1 images trains, every image still seen once per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_finetune, tiny_pretrain
from imagegen import make_image_folder, make_target

from condpretrain.config import SelectConfig, build_config
from condpretrain.models import resnet10
from condpretrain.selection import select
from condpretrain.train.classifier import ClassifierTask
from condpretrain.train.data import EpochBatches, EpochSampler
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain
from condpretrain.train.supervised import SupervisedTask

CLASSES = {"a": "stripes", "b": "noise", "c": "checker"}


@pytest.fixture(scope="module")
def data33(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A pool of 33 images and a target with 33 training images: one more than a batch
    of 32."""
    root = tmp_path_factory.mktemp("data33")
    pool = make_image_folder(root / "pool", CLASSES, per_class=11, size=16)
    target = make_target(root / "target", CLASSES, train=11, test=2, size=16)
    return pool, target


def test_a_lone_last_sample_joins_the_batch_before_it():
    order = EpochSampler(33, seed=0)
    batches = EpochBatches(order, 32, drop_last=False).batches()
    assert [len(b) for b in batches] == [33] and sorted(batches[0]) == list(range(33))
    assert len(EpochBatches(order, 32, drop_last=False)) == 1
    # a partial batch of two or more stays as it is; drop_last drops it
    assert [len(b) for b in EpochBatches(EpochSampler(34, seed=0), 32, drop_last=False)] == [32, 2]
    assert [len(b) for b in EpochBatches(order, 32, drop_last=True)] == [32]
    # skipping batches (a resumed epoch) gives the rest of the same batches
    whole = EpochBatches(EpochSampler(21, seed=3), 4, drop_last=False)
    assert [len(b) for b in whole] == [4, 4, 4, 4, 5]
    assert EpochBatches(EpochSampler(21, seed=3), 4, drop_last=False, skip=3).batches() == \
        whole.batches()[3:]
    assert len(EpochBatches(EpochSampler(21, seed=3), 4, drop_last=False, skip=5)) == 0


def test_each_rank_merges_its_own_share_and_all_make_as_many_batches():
    # 67 images on 2 ranks: padded to 68, a share of 34 = 3 x 11 + 1 on each rank
    ranks = [EpochBatches(EpochSampler(67, seed=1, rank=r, world=2), 11, drop_last=False)
             for r in (0, 1)]
    assert [[len(b) for b in rank] for rank in ranks] == [[11, 11, 12]] * 2
    assert all(len(rank) == 3 for rank in ranks)
    seen = {i for rank in ranks for batch in rank for i in batch}
    assert seen == set(range(67))


def test_a_one_sample_share_is_a_pair():
    order = EpochSampler(1, seed=0, min_share=2)
    assert [len(b) for b in EpochBatches(order, 32, drop_last=False)] == [2]


def test_pretrain_on_one_more_image_than_a_batch(data33, tmp_path):
    pool, _ = data33
    result = pretrain(str(pool), tmp_path / "pre", tiny_pretrain(batch_size=32, epochs=2))
    assert result.cost["images"] == 2 * 33  # every image, every epoch
    lines = (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["images"] for line in lines] == [33, 33]


def test_finetune_on_one_more_image_than_a_batch(data33, tmp_path):
    _, target = data33
    result = finetune(str(target), tmp_path / "ft", tiny_finetune(batch_size=32, epochs=1))
    assert result.cost["images"] == 33 and result.result["top1"] is not None


def test_target_model_on_one_more_image_than_a_batch(data33, tmp_path):
    pool, target = data33
    config = build_config(SelectConfig, "quick", device="cpu", method="clustering-min",
                          fraction=0.5, batch_size=32)
    select([str(pool)], str(target), tmp_path / "sel", config)
    assert (tmp_path / "sel" / "subset.csv").is_file()


@pytest.mark.parametrize("task_class", [SupervisedTask, ClassifierTask])
def test_a_batch_with_one_decodable_image_trains_nothing(task_class):
    model = resnet10(num_classes=2).train()  # at 16 px its last BatchNorm sees 1 x 1 maps
    images = torch.zeros(2, 3, 16, 16, dtype=torch.uint8 if task_class is SupervisedTask
                         else torch.float32)
    out = task_class(model).training_step(
        (images, torch.tensor([0, 1]), torch.tensor([0, 1]), ["", "broken.png: bad"]),
        torch.device("cpu"))
    assert float(out.loss.detach()) == 0.0
