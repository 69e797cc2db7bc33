"""Precise BN: the statistics become the plain average of the per-batch ones."""

from __future__ import annotations

import torch
from torch import nn

from condpretrain.train.batchnorm import precise_batchnorm


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1),
                         nn.BatchNorm2d(2))


def test_statistics_are_the_average_of_the_batches_ones():
    model = _model().eval()
    batches = [torch.randn(3, 3, 6, 6) * (i + 1) + i for i in range(4)]
    # by hand: the first BN sees the first conv's output of each batch
    outs = [model[0](b) for b in batches]
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.transpose(0, 1).reshape(4, -1).var(dim=1, unbiased=True)
                       for o in outs]).mean(0)
    weight_before = model[0].weight.clone()

    count = precise_batchnorm(model, batches, model)

    assert count == 4
    torch.testing.assert_close(model[1].running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-5, atol=1e-6)
    assert not model.training  # the mode it came in
    assert model[1].momentum == 0.1 and model[4].momentum == 0.1
    assert torch.equal(model[0].weight, weight_before)  # no training happened


def test_the_old_statistics_do_not_leak_in():
    batches = [torch.randn(2, 3, 6, 6) for _ in range(3)]
    fresh, used = _model(), _model()
    for _ in range(5):  # move ``used``'s running statistics far away
        used(torch.randn(2, 3, 6, 6) * 10 + 5)
    precise_batchnorm(fresh, batches, fresh)
    precise_batchnorm(used, batches, used)
    torch.testing.assert_close(used[1].running_var, fresh[1].running_var)
    torch.testing.assert_close(used[4].running_mean, fresh[4].running_mean)


def test_a_model_without_batchnorm_reads_nothing():
    read = []

    def batches():
        read.append(1)
        yield torch.randn(2, 3, 6, 6)

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    assert precise_batchnorm(model, batches(), model) == 0
    assert read == []
