"""``--compile``: torch.compile changes how fast a step runs, never what is trained or saved.

The tests compile with dynamo's ``eager`` backend: the same graph capture and wrapper as
inductor (the ``_orig_mod.`` keys, the wrapper around DDP's model), without minutes of C++
compilation on a 2-core CPU; one tiny MoCo runs under inductor itself, which reorders and
elides copies in ways the eager backend does not."""

from __future__ import annotations

import pytest
import torch
from conftest import kill_after, tiny_finetune, tiny_pretrain
from torch import nn

from condpretrain import device as device_module
from condpretrain.dist import unwrap
from condpretrain.models import resnet10
from condpretrain.train import photometric
from condpretrain.train.finetune import finetune
from condpretrain.train.moco import MoCo
from condpretrain.train.pretrain import pretrain


@pytest.fixture
def eager_compile(monkeypatch) -> list[torch.nn.Module]:
    """torch.compile with the eager backend; the models it was asked to compile."""
    compiled: list[torch.nn.Module] = []
    real = torch.compile

    def compile_eagerly(model, **kwargs):
        compiled.append(model)
        return real(model, backend="eager", **kwargs)

    monkeypatch.setattr(device_module.torch, "compile", compile_eagerly)
    torch._dynamo.reset()
    yield compiled
    torch._dynamo.reset()


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def test_unwrap_reaches_the_model_inside_the_compile_wrapper(eager_compile):
    model = resnet10()
    wrapped = device_module.compile_model(model, True)
    assert wrapped is not model and unwrap(wrapped) is model
    assert any(key.startswith("_orig_mod.") for key in wrapped.state_dict())
    assert device_module.compile_model(model, False) is model


@pytest.mark.parametrize("mode", ["supervised", "moco", "moco, colour on the device"])
def test_compiled_pretraining_trains_and_saves_what_plain_pretraining_does(
        pool4, tmp_path, eager_compile, mode):
    options = {"mode": mode.split(",")[0], "epochs": 2, "batch_size": 24,
               "checkpoint_minutes": 0,
               "moco_augment_on": "device" if mode.endswith("device") else "workers"}
    pretrain(str(pool4), tmp_path / "plain", tiny_pretrain(**options))
    assert not eager_compile
    pretrain(str(pool4), tmp_path / "compiled", tiny_pretrain(**options, compile=True))
    # the model; with the colour steps on the device, their function too
    assert eager_compile[1:] == ([photometric.apply] if mode.endswith("device") else [])
    plain, compiled = _weights(tmp_path / "plain" / "backbone.pt"), \
        _weights(tmp_path / "compiled" / "backbone.pt")
    assert sorted(plain) == sorted(compiled)
    for key in plain:
        torch.testing.assert_close(compiled[key], plain[key])
    # the training checkpoint holds the model's own keys, not the wrapper's
    state = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=False)
    assert not any("_orig_mod" in key for key in state["model"])


def test_a_compiled_run_resumes_without_compile_and_ends_where_an_uninterrupted_run_does(
        pool4, tmp_path, monkeypatch, eager_compile):
    config = tiny_pretrain(epochs=2, batch_size=24, checkpoint_minutes=0)
    pretrain(str(pool4), tmp_path / "whole", config)
    kill_after(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="injected kill"):
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(
            epochs=2, batch_size=24, checkpoint_minutes=0, compile=True))
    monkeypatch.undo()
    pretrain(str(pool4), tmp_path / "run", config, resume=True)  # --compile is neutral
    whole, resumed = _weights(tmp_path / "whole" / "backbone.pt"), \
        _weights(tmp_path / "run" / "backbone.pt")
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key])


def test_compiled_finetuning_reports_what_plain_finetuning_does(target6, tmp_path, eager_compile):
    plain = finetune(str(target6), tmp_path / "plain", tiny_finetune())
    compiled = finetune(str(target6), tmp_path / "compiled", tiny_finetune(compile=True))
    assert len(eager_compile) == 1
    assert compiled.result["top1"] == pytest.approx(plain.result["top1"])
    trained, reference = _weights(tmp_path / "compiled" / "model_last.pt"), \
        _weights(tmp_path / "plain" / "model_last.pt")
    assert sorted(trained) == sorted(reference)  # torchvision's keys, no _orig_mod.
    for key in reference:
        torch.testing.assert_close(trained[key], reference[key])


def _moco_losses(compiled: bool) -> list[float]:
    torch.manual_seed(0)
    model = MoCo("resnet10", dim=8, queue=32, bn_splits=2).train()
    step = torch.compile(model) if compiled else model  # inductor: the real --compile
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        images = torch.randn(8, 3, 32, 32)
        logits, labels = step(images, images.flip(-1))
        loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_the_colour_steps_compile_under_inductor_to_the_same_pixels():
    torch.manual_seed(0)
    compiled = torch.compile(photometric.apply)  # inductor, as --compile
    for _ in range(2):  # a second batch reuses the graph
        images = torch.rand(4, 3, 16, 16)
        params = torch.stack([photometric.draw_params((0.1, 2.0)) for _ in range(4)])
        torch.testing.assert_close(compiled(images, params, 3),
                                   photometric.apply(images, params, 3), rtol=0, atol=1e-5)


def test_moco_trains_under_inductor_as_it_does_eagerly():
    """The queue is written in place after the forward; the backward must not find the
    negatives it saved changed (inductor elided a copy made inside the graph)."""
    assert _moco_losses(True) == pytest.approx(_moco_losses(False), rel=1e-4)
