"""MoCo-v2 as the reference: lr from the global batch, the single-process stand-in for
shuffle-BN (split batch norm + shuffled keys), and the contrast in float32."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from conftest import tiny_pretrain
from torch import nn

import condpretrain.train.pretrain as pretrain_module
from condpretrain.config import PretrainConfig
from condpretrain.dist import DistContext
from condpretrain.train.methods.moco import MocoV2
from condpretrain.train.moco import MoCo, MocoTask, SplitBatchNorm2d, bn_splits_for


def test_lr_is_0_03_per_256_images_of_the_global_batch():
    assert MocoV2.default_lr(64, world_size=4) == pytest.approx(0.03)
    assert MocoV2.default_lr(256) == pytest.approx(0.03)
    assert MocoV2(PretrainConfig(mode="moco", batch_size=64), world_size=4).lr == pytest.approx(
        0.03)
    assert MocoV2(PretrainConfig(mode="moco", batch_size=64, lr=0.5), world_size=4).lr == 0.5


def test_pretrain_gives_the_method_the_world_size(monkeypatch, tmp_path):
    seen = {}

    class FourProcesses:
        def __init__(self, *args):
            pass

        def __enter__(self):
            return DistContext(world_size=4), torch.device("cpu")

        def __exit__(self, *exc):
            return False

    def capture(sources, out, method, *args):
        seen["lr"] = method.lr

    monkeypatch.setattr(pretrain_module, "distributed", FourProcesses)
    monkeypatch.setattr(pretrain_module, "_pretrain", capture)
    pretrain_module.pretrain("pool", tmp_path, PretrainConfig(mode="moco", batch_size=64))
    assert seen["lr"] == pytest.approx(0.03)


def test_bn_splits_divide_the_batch_into_sub_batches_of_two_or_more():
    assert bn_splits_for(8, 256) == 8
    assert bn_splits_for(8, 20) == 5
    assert bn_splits_for(8, 12) == 6
    assert bn_splits_for(8, 3) == 1
    assert bn_splits_for(1, 256) == 1


def tiny_moco(splits: int) -> MoCo:
    torch.manual_seed(0)
    return MoCo("resnet10", dim=8, queue=32, bn_splits=splits).train()


def test_a_key_depends_only_on_its_own_sub_batch():
    model = tiny_moco(4)
    images = torch.randn(16, 3, 32, 32)
    other = images.clone()
    other[4:] = torch.randn(12, 3, 32, 32)  # every sub-batch but the first (samples 0-3)
    with torch.no_grad():
        for net in (model.encoder_k, model.encoder_q):  # both encoders, as the notebook
            before, after = net(images), net(other)
            assert torch.equal(before[:4], after[:4])
            assert not torch.allclose(before[4:], after[4:])


def test_on_one_process_keys_are_computed_among_other_images_than_their_query():
    model = tiny_moco(4)
    images = torch.randn(16, 3, 32, 32)
    other = images.clone()
    other[0] = torch.randn(3, 32, 32)  # one image changed
    first, second = copy.deepcopy(model), copy.deepcopy(model)  # the same shuffle
    keys, changed_keys = first._shuffled_keys(images), second._shuffled_keys(other)
    changed = {i for i in range(16) if not torch.allclose(keys[i], changed_keys[i])}
    # image 0 and the 3 others of the sub-batch it was shuffled into; not its query's 1-3
    assert 0 in changed and len(changed) == 4 and changed != {0, 1, 2, 3}
    # the next step draws another shuffle, reproducibly (the step count is a buffer,
    # saved in checkpoints, so a resumed run draws what an uninterrupted one would)
    assert int(first.key_steps) == 1 and "key_steps" in model.state_dict()
    again = copy.deepcopy(first)
    step2 = first._key_order(16, images.device)
    assert torch.equal(step2, again._key_order(16, images.device))
    assert not torch.equal(step2, copy.deepcopy(model)._key_order(16, images.device))


def test_the_counters_live_on_the_host_and_follow_a_loaded_state():
    """The key-shuffle step and the queue pointer are read from their buffers once, then
    counted on the host (no step reads the device); loading a state (a resume) makes the
    next step read the loaded buffers, so its shuffle and queue slot are the saved run's."""
    trained, fresh = tiny_moco(4), tiny_moco(4)
    images = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        for _ in range(3):
            trained(images, images)
    assert int(trained.key_steps) == 3 and int(trained.queue_ptr) == 16  # 3 x 16 mod 32
    assert trained._counts() == [3, 16]
    fresh(images, images)  # fresh's host counters now say [1, 16]
    fresh.load_state_dict(trained.state_dict())
    assert fresh._counts() == [3, 16]
    assert torch.equal(fresh._key_order(16, images.device),
                       copy.deepcopy(trained)._key_order(16, images.device))
    fresh.queue.zero_()
    keys = torch.ones(16, 8)
    fresh._enqueue(keys)
    assert torch.equal(fresh.queue[:, 16:], keys.T) and not fresh.queue[:, :16].any()
    assert int(fresh.queue_ptr) == 0 and fresh._counts() == [4, 0]


def test_split_batch_norm_running_stats_and_eval():
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    split = SplitBatchNorm2d(3, 2)
    split.load_state_dict(plain.state_dict())
    x = torch.randn(8, 3, 5, 5) * 2 + 1
    split.train()(x)
    halves = [h.mean((0, 2, 3)) for h in x.chunk(2)]
    expected = 0.9 * torch.zeros(3) + 0.1 * torch.stack(halves).mean(0)
    torch.testing.assert_close(split.running_mean, expected)
    plain.load_state_dict(split.state_dict())  # the same state_dict keys as BatchNorm2d
    torch.testing.assert_close(split.eval()(x), plain.eval()(x))


def test_the_contrast_is_float32_under_bf16_autocast():
    model = tiny_moco(2)
    images = torch.randn(8, 3, 32, 32)
    batch = (torch.stack([images, images], 1), None, None, [None] * 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.encoder_q(images)
        logits, labels = model(images, images)
        out = MocoTask(model).training_step(batch, torch.device("cpu"))
    assert features.dtype == torch.bfloat16  # the encoders do run in bf16
    assert logits.dtype == torch.float32 and out.loss.dtype == torch.float32
    assert model.queue.dtype == torch.float32 and labels.tolist() == [0] * 8


def test_moco_run_records_its_lr_and_bn_splits(pool4, tmp_path):
    pretrain_module.pretrain(str(pool4), tmp_path / "moco",
                             tiny_pretrain(mode="moco", epochs=1, batch_size=24, lr=None))
    cost = json.loads((tmp_path / "moco" / "run.json").read_text())
    assert cost["moco_bn_splits"] == 8
    saved = yaml.safe_load((tmp_path / "moco" / "config.yaml").read_text())
    assert saved["config"]["lr"] == pytest.approx(0.03 * 24 / 256) and saved["world_size"] == 1


def test_under_ddp_the_batch_norm_is_not_split():
    config = PretrainConfig(mode="moco", arch="resnet10", moco_queue=64, batch_size=16)
    model = MocoV2(config, world_size=2).build(0, 640, 32)
    assert not any(isinstance(m, SplitBatchNorm2d) for m in model.modules())
    model = MocoV2(config).build(0, 640, 16)
    assert all(m.splits == 8 for m in model.modules() if isinstance(m, SplitBatchNorm2d))
