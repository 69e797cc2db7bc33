"""Checkpoints from the wild: every known layout loads its online (query) encoder into
``--init`` / ``--features-from``; anything else is a one-line error naming its keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from condpretrain.config import PretrainConfig
from condpretrain.errors import CondPretrainError
from condpretrain.features import infer_arch
from condpretrain.models import build_resnet, load_backbone, read_backbone
from condpretrain.train.methods.moco import MocoV2

ARCH = "resnet10"


def encoder(seed: int, mlp: bool = False) -> nn.Module:
    """A ResNet whose weights and BN statistics all depend on ``seed``."""
    torch.manual_seed(seed)
    model = build_resnet(ARCH, num_classes=128)
    if mlp:  # MoCo-v2's head: fc.0 / fc.2
        model.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), model.fc)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(seed + 1)
    return model


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


def sequential_children(model: nn.Module) -> nn.Sequential:
    """lightly's examples: ``nn.Sequential(*list(resnet.children())[:-1])``."""
    return nn.Sequential(*list(model.children())[:-1])


def moco_release(q: nn.Module, k: nn.Module) -> dict:
    """The layout of facebookresearch/moco's moco_v2_200ep_pretrain.pth.tar."""
    state = {**prefixed("module.encoder_q.", q.state_dict()),
             **prefixed("module.encoder_k.", k.state_dict()),
             "module.queue": torch.randn(128, 64), "module.queue_ptr": torch.zeros(1).long()}
    return {"epoch": 200, "arch": "resnet50", "state_dict": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "params": [0]}]}}


def no_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older torchvision / timm hub files carry no num_batches_tracked."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def layouts() -> dict[str, tuple[object, nn.Module]]:
    """Each layout's checkpoint object and the encoder whose weights it must load."""
    q, k = encoder(1, mlp=True), encoder(2, mlp=True)
    plain = encoder(3)
    solo_q, solo_k = encoder(4), encoder(5)
    solo_q.fc, solo_k.fc = nn.Identity(), nn.Identity()  # solo-learn drops the fc
    light_q, light_k = encoder(6), encoder(7)
    mm_q, mm_k = encoder(8), encoder(9)
    return {
        "moco release": (moco_release(q, k), q),
        "torchvision": (plain.state_dict(), plain),
        "timm hub file (no BN counters)": (no_counters(plain.state_dict()), plain),
        "DDP + torch.compile, {'model': ...}": (
            {"model": prefixed("module._orig_mod.", plain.state_dict()), "epoch": 3}, plain),
        "solo-learn (Lightning)": ({"epoch": 1, "global_step": 10, "state_dict": {
            **prefixed("backbone.", solo_q.state_dict()),
            **prefixed("momentum_backbone.", solo_k.state_dict()),
            "projector.0.weight": torch.randn(8, 512), "projector.0.bias": torch.randn(8),
            "momentum_projector.0.weight": torch.randn(8, 512),
            "classifier.weight": torch.randn(4, 512), "classifier.bias": torch.randn(4),
            "queue": torch.randn(2, 8, 64), "queue_ptr": torch.zeros(1).long()}}, solo_q),
        "lightly (Sequential children)": ({
            **prefixed("backbone.", sequential_children(light_q).state_dict()),
            **prefixed("backbone_momentum.", sequential_children(light_k).state_dict()),
            "projection_head.layers.0.weight": torch.randn(8, 512),
            "projection_head_momentum.layers.0.weight": torch.randn(8, 512)}, light_q),
        "mmselfsup 1.x": ({"meta": {"epoch": 200}, "state_dict": {
            **prefixed("backbone.", mm_q.state_dict()),
            **prefixed("target_net.module.0.", mm_k.state_dict()),
            "neck.mlp.0.weight": torch.randn(8, 512), "head.loss.weight": torch.randn(1),
            "queue": torch.randn(8, 64), "queue_ptr": torch.zeros(1).long()}}, mm_q),
        "mmselfsup 0.x (backbone registered twice)": ({"state_dict": {
            **prefixed("encoder_q.0.", mm_q.state_dict()),
            **prefixed("backbone.", mm_q.state_dict()),
            **prefixed("encoder_k.0.", mm_k.state_dict()),
            "encoder_q.1.mlp.0.weight": torch.randn(8, 512), "queue": torch.randn(8, 64)}},
            mm_q),
    }


def save(tmp_path: Path, obj: object, name: str = "ckpt.pt") -> Path:
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def assert_loaded(model: nn.Module, expected: nn.Module) -> None:
    want = expected.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, want[key]), key


@pytest.mark.parametrize("layout", list(layouts()))
def test_every_known_layout_loads_its_online_encoder(layout, tmp_path):
    checkpoint, expected = layouts()[layout]
    path = save(tmp_path, checkpoint)
    model = load_backbone(build_resnet(ARCH, num_classes=7), path, ARCH)
    assert_loaded(model, expected)
    # --features-from reads the same file and infers the architecture from it
    assert infer_arch(read_backbone(path, "--features-from"), path) == ARCH


def test_the_moco_release_gives_encoder_q_not_encoder_k(tmp_path):
    q, k = encoder(1, mlp=True), encoder(2, mlp=True)
    path = save(tmp_path, moco_release(q, k))
    state = read_backbone(path)
    assert torch.equal(state["conv1.weight"], q.conv1.weight)
    assert not torch.equal(state["conv1.weight"], k.conv1.weight)
    assert torch.equal(state["layer4.0.bn2.running_mean"], q.layer4[0].bn2.running_mean)
    assert not any(key.startswith("fc.") or "queue" in key for key in state)  # MLP head dropped


def test_a_moco_run_initialised_from_the_release_starts_both_encoders_from_encoder_q(tmp_path):
    q, k = encoder(1, mlp=True), encoder(2, mlp=True)
    config = PretrainConfig(mode="moco", arch=ARCH, init=str(save(tmp_path, moco_release(q, k))),
                            moco_queue=64, batch_size=16)
    model = MocoV2(config).build(0, 640, 16)
    assert torch.equal(model.encoder_q.conv1.weight, q.conv1.weight)
    assert torch.equal(model.encoder_k.conv1.weight, q.conv1.weight)


def test_old_torchvision_files_get_their_bn_counters(tmp_path):
    plain = encoder(3)
    state = read_backbone(save(tmp_path, no_counters(plain.state_dict())))
    assert state["bn1.num_batches_tracked"] == 0


@pytest.mark.parametrize("checkpoint, named", [
    ({"foo.weight": torch.ones(2), "bar.bias": torch.ones(2), "baz.weight": torch.ones(1),
      "qux": torch.ones(1)}, "'bar.bias', 'baz.weight', 'foo.weight' and 1 more"),
    ({**build_resnet(ARCH).state_dict(), "rnn.weight_ih_l0": torch.ones(1)}, "'rnn.weight_ih_l0'"),
])
def test_anything_else_is_one_line_naming_unexpected_keys(checkpoint, named, tmp_path):
    path = save(tmp_path, checkpoint)
    with pytest.raises(CondPretrainError) as err:
        load_backbone(build_resnet(ARCH), path, ARCH)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"--init: {path}")
    assert f"unexpected keys {named}" in message and len(message) < 200


def test_two_different_online_backbones_are_refused(tmp_path):
    state = {**prefixed("student_a.", encoder(1).state_dict()),
             **prefixed("student_b.", encoder(2).state_dict())}
    with pytest.raises(CondPretrainError, match="several different backbones") as err:
        read_backbone(save(tmp_path, state), "--features-from")
    assert "\n" not in str(err.value)
