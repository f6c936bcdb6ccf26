"""Modules, layers, SGD and the poly schedule."""

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp import nn, optim
from helpers import torch_or_skip


class TinyNet(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=2, dilation=2, rng=rng)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 2, 1, rng=rng))

    def forward(self, x):
        return self.head(self.bn(self.conv(x)))


def test_module_registers_parameters_buffers_and_children(backend):
    net = TinyNet(np.random.default_rng(0))
    assert [n for n, _ in net.named_parameters()] == [
        "conv.weight", "conv.bias", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    assert [n for n, _ in net.named_children()] == ["conv", "bn", "head"]
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_every_parameter_gets_a_gradient(backend):
    net = TinyNet(np.random.default_rng(0))
    net(anp.randn(2, 3, 6, 6, rng=np.random.default_rng(1))).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name


def test_conv2d_default_initialisation_bounds(backend):
    conv = nn.Conv2d(8, 16, 3, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(8 * 9)
    w = conv.weight.numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound


def test_state_dict_round_trip_and_errors(backend):
    a, b = TinyNet(np.random.default_rng(0)), TinyNet(np.random.default_rng(1))
    b.load_state_dict(a.state_dict())
    x = anp.randn(1, 3, 5, 5, rng=np.random.default_rng(2))
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    state = a.state_dict()
    state["conv.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    state["extra.weight"] = np.zeros(1)
    del state["bn.bias"]
    with pytest.raises(ValueError) as error:
        b.load_state_dict(state)
    message = str(error.value)
    assert "conv.weight: checkpoint (4, 3, 5, 5), model (4, 3, 3, 3)" in message
    assert "missing keys: bn.bias" in message and "unexpected keys: extra.weight" in message


def test_batch_norm_freeze_uses_running_statistics_and_stops_gradients(backend):
    bn = nn.BatchNorm2d(3, momentum=0.5)
    x = anp.randn(4, 3, 5, 5, rng=np.random.default_rng(0)) * 2 + 3
    bn(x)
    assert not np.allclose(bn.running_mean.numpy(), 0)
    bn.freeze()
    before = bn.running_mean.numpy()
    y = bn(x)  # still in training mode
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)
    expected = (x.numpy() - before[None, :, None, None]) / np.sqrt(bn.running_var.numpy()[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert not bn.weight.requires_grad and not bn.bias.requires_grad


def test_sgd_skips_frozen_parameters(backend):
    bn = nn.BatchNorm2d(2).freeze()
    conv = nn.Conv2d(2, 2, 1, rng=np.random.default_rng(0))
    opt = optim.SGD(list(conv.parameters()) + list(bn.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)
    w_before, g_before = conv.weight.numpy(), bn.weight.numpy()
    bn(conv(anp.randn(2, 2, 3, 3, rng=np.random.default_rng(1)))).sum().backward()
    opt.step()
    assert not np.array_equal(conv.weight.numpy(), w_before)
    np.testing.assert_array_equal(bn.weight.numpy(), g_before)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_torch_for_ten_steps(backend, nesterov):
    torch = torch_or_skip()
    rng = np.random.default_rng(0)
    w0, x, target = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    w = nn.Parameter(w0)
    wt = torch.tensor(w0, requires_grad=True)
    ours = optim.SGD([w], lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=nesterov)
    theirs = torch.optim.SGD([wt], lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=nesterov)
    for _ in range(10):
        ours.zero_grad(), theirs.zero_grad()
        (((anp.tensor(x) @ w.T) - anp.tensor(target)) ** 2).mean().backward()
        ((torch.tensor(x) @ wt.T - torch.tensor(target)) ** 2).mean().backward()
        ours.step(), theirs.step()
    np.testing.assert_allclose(w.numpy(), wt.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_sgd_state_round_trip(backend):
    w = nn.Parameter(np.ones(3))
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    (w * w).sum().backward()
    opt.step()
    state = opt.state_dict()
    again = optim.SGD([w], lr=1.0, momentum=0.9)
    again.load_state_dict(state)
    assert again.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(again.momentum_buffers[0], opt.momentum_buffers[0])


def test_poly_schedule():
    opt = optim.SGD([nn.Parameter(np.ones(1))], lr=0.01)
    schedule = optim.PolyLR(opt, max_iter=100, power=0.9)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        schedule.step()
    assert lrs[0] == 0.01
    np.testing.assert_allclose(lrs[50], 0.01 * 0.5 ** 0.9)
    assert opt.param_groups[0]["lr"] == 0.0 and all(a > b for a, b in zip(lrs, lrs[1:]))


def test_layers_match_their_functional_ops(backend):
    x = anp.randn(2, 3, 8, 8, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(nn.MaxPool2d(3, 2, 1)(x).numpy(), F.max_pool2d(x, 3, 2, 1).numpy())
    np.testing.assert_array_equal(nn.AvgPool2d(2)(x).numpy(), F.avg_pool2d(x, 2).numpy())
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (2, 3, 1, 1)
    assert nn.Identity()(x) is x
    drop = nn.Dropout(0.5, rng=np.random.default_rng(0))
    drop.eval()
    assert drop(x) is x
