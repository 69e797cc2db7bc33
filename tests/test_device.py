"""``--deterministic``: cuDNN's deterministic kernels, no autotuning, torch's deterministic
algorithms; otherwise cuDNN autotunes on CUDA (where shapes are fixed). Batches reach the
device whole; broken samples are dropped there. Results come back to the host one step
late, so the next step is queued before the host waits for one; on CUDA, training batches
cross to the device one batch ahead."""

from __future__ import annotations

import contextlib
import os
from collections import namedtuple

import pytest
import torch

from condpretrain.device import (
    ahead_on_device,
    configure_determinism,
    kept_on_device,
    on_host_one_late,
    tree_to,
)
from condpretrain.train.data import good_samples


@pytest.fixture
def restore_flags():
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def test_deterministic_sets_every_flag(restore_flags, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    configure_determinism(True, torch.device("cuda"))
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_otherwise_cudnn_autotunes_on_cuda_only(restore_flags):
    configure_determinism(False, torch.device("cuda"))
    assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    configure_determinism(False, torch.device("cuda"), benchmark=False)  # detection's shapes vary
    assert not torch.backends.cudnn.benchmark
    configure_determinism(False, torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark


def test_the_commands_apply_deterministic(restore_flags, two_part_pool, stripes_target, tmp_path):
    from condpretrain.config import SelectConfig, build_config
    from condpretrain.selection import select

    config = build_config(SelectConfig, "quick", method="random", count=4, device="cpu",
                          deterministic=True)
    select([str(two_part_pool)], str(stripes_target), tmp_path / "s", config)
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic


CPU = torch.device("cpu")


def test_broken_samples_are_dropped_in_order():
    batch = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).view(5, 3, 2, 2)
    keep = good_samples(["", "truncated", "", "", "not an image"])
    assert torch.equal(kept_on_device(batch, keep, CPU), batch[[0, 2, 3]])
    assert kept_on_device(torch.arange(5), keep, CPU).tolist() == [0, 2, 3]


def test_a_batch_with_nothing_broken_is_not_indexed():
    batch = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    assert kept_on_device(batch, good_samples([""] * 4), CPU) is batch  # no copy made


def test_results_reach_the_host_in_order_one_step_late():
    produced = []

    def steps():
        for k in range(4):
            produced.append(k)
            yield f"batch {k}", (None if k == 2 else torch.full((2,), float(k)))

    seen = []
    for tag, values in on_host_one_late(steps()):
        # step k is read only once step k+1 has been produced (the last one at the end)
        assert produced[-1] == min(len(seen) + 1, 3)
        seen.append((tag, None if values is None else values.tolist()))
    assert seen == [("batch 0", [0.0, 0.0]), ("batch 1", [1.0, 1.0]), ("batch 2", None),
                    ("batch 3", [3.0, 3.0])]
    assert list(on_host_one_late(iter([]))) == []


def test_batches_pass_through_unchanged_off_cuda():
    batches = [(torch.zeros(2, 3), ["", "truncated"]), (torch.ones(1, 3), [""])]
    assert [b for b in ahead_on_device(iter(batches), CPU)] == batches  # the same objects


def test_every_tensor_of_a_batch_moves_and_the_rest_stays():
    Pair = namedtuple("Pair", "image target")
    batch = ([torch.zeros(3, 4, 4), torch.zeros(3, 5, 5)],
             [{"boxes": torch.zeros(2, 4), "name": "img1"}],
             Pair(torch.zeros(1), 7), ("", "bad file"))
    moved = tree_to(batch, torch.device("meta"))  # a device with no data: only the moves
    assert moved[0][0].is_meta and moved[0][1].shape == (3, 5, 5)
    assert moved[1][0]["boxes"].is_meta and moved[1][0]["name"] == "img1"
    assert isinstance(moved[2], Pair) and moved[2].image.is_meta and moved[2].target == 7
    assert moved[3] == ("", "bad file") and isinstance(moved, tuple)


def test_on_cuda_each_copy_is_issued_one_batch_ahead(monkeypatch):
    """The stream choreography, with CUDA's streams stood in for (no GPU here): batch
    k+1's copy is issued on the side stream before batch k is handed out, and the compute
    stream waits for it only after step k."""
    import condpretrain.device as device_module

    events = []

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_stream(self, other):
            events.append(f"{self.name} waits for {other.name}")

    side, compute = Stream("side"), Stream("compute")
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: side)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: compute)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(device_module, "tree_to",
                        lambda batch, where: events.append(f"copy {batch}") or f"{batch} on GPU")
    monkeypatch.setattr(device_module, "_tensors_in", lambda batch: iter(()))
    for batch in ahead_on_device(iter(["b0", "b1", "b2"]), torch.device("cuda")):
        events.append(f"step {batch}")
    assert events == ["copy b0", "compute waits for side",
                      "copy b1", "step b0 on GPU", "compute waits for side",
                      "copy b2", "step b1 on GPU", "compute waits for side",
                      "step b2 on GPU"]
