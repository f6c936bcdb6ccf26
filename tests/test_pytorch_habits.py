"""What a PyTorch user writes works here: a global seed, Linear/Flatten/CrossEntropyLoss, nn.init,
Adam and AdamW (held to reference/optim.py and to PyTorch), the Tensor methods, from_numpy,
inference_mode, and dim= beside NumPy's axis=."""

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp import nn, optim
from atrousnp.reference.optim import adam_step, sgd_step
from helpers import torch_or_skip


def test_manual_seed_makes_randn_and_initialisation_reproducible():
    anp.manual_seed(3)
    first = anp.randn(4).numpy(), nn.Conv2d(2, 3, 3).weight.numpy(), nn.Linear(4, 2).weight.numpy()
    anp.manual_seed(3)
    again = anp.randn(4).numpy(), nn.Conv2d(2, 3, 3).weight.numpy(), nn.Linear(4, 2).weight.numpy()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(anp.randn(4).numpy(), first[0])


def test_save_takes_pytorchs_argument_order_too(tmp_path):
    state = {"w": np.arange(3.0)}
    anp.save(state, tmp_path / "torch_order.npz")
    anp.save(tmp_path / "our_order.npz", state)
    for name in ("torch_order.npz", "our_order.npz"):
        np.testing.assert_array_equal(anp.load(tmp_path / name)["w"], state["w"])
    with pytest.raises(TypeError, match=r"save\(path, obj\) or save\(obj, path\)"):
        anp.save("a.npz", "b.npz")


def test_a_pytorch_style_classifier_trains(backend):
    anp.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    for p in model.parameters():
        if p.ndim > 1:
            nn.init.kaiming_normal_(p, nonlinearity="relu")
    x = anp.randn(8, 1, 4, 4)
    y = np.array([0, 1] * 4)
    criterion, opt = nn.CrossEntropyLoss(), optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with anp.inference_mode():
        assert not model(x).requires_grad


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_equals_the_loop_definition(backend, decoupled):
    rng = np.random.default_rng(0)
    value = rng.standard_normal((3, 4))
    p = nn.Parameter(value.copy())
    opt = (optim.AdamW if decoupled else optim.Adam)([p], lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
    m = v = np.zeros_like(value)
    for step in range(1, 6):
        grad = rng.standard_normal(value.shape)
        p.grad = anp.tensor(grad)
        opt.step()
        value, m, v = adam_step(value, grad, m, v, step, 0.01, (0.8, 0.9), 1e-6, 0.1, decoupled)
        np.testing.assert_allclose(p.numpy(), value, rtol=1e-12, atol=1e-14)


def test_sgd_equals_the_loop_definition(backend):
    rng = np.random.default_rng(1)
    value = rng.standard_normal(5)
    p = nn.Parameter(value.copy())
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)
    buf = None
    for _ in range(4):
        grad = rng.standard_normal(5)
        p.grad = anp.tensor(grad)
        opt.step()
        value, buf = sgd_step(value, grad, buf, 0.1, 0.9, 1e-2, 0.0, True)
        np.testing.assert_allclose(p.numpy(), value, rtol=1e-12)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_matches_pytorch_and_its_state_round_trips(name):
    torch = torch_or_skip()
    rng = np.random.default_rng(2)
    value = rng.standard_normal((4, 3))
    ours, theirs = nn.Parameter(value.copy()), torch.tensor(value.copy(), requires_grad=True)
    settings = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05)
    opt, reference = getattr(optim, name)([ours], **settings), getattr(torch.optim, name)([theirs], **settings)
    for step in range(8):
        grad = rng.standard_normal(value.shape)
        ours.grad, theirs.grad = anp.tensor(grad), torch.tensor(grad)
        opt.step()
        reference.step()
        if step == 3:  # a checkpoint mid-way: a new optimiser from the saved state goes on identically
            state = opt.state_dict()
            opt = getattr(optim, name)([ours], **dict(settings, lr=1.0))
            opt.load_state_dict(state)
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_adam_refuses_bad_settings_and_state():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match=r"Adam: betas must be two numbers in \[0, 1\)"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"AdamW: lr must be a finite number >= 0, got -1"):
        optim.AdamW([p], lr=-1)
    opt = optim.Adam([p])
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: m.0 has shape \(3,\), expected \(2,\)"):
        opt.load_state_dict({"lr": [0.1], "step.0": 1, "m.0": np.zeros(3), "v.0": np.zeros(2)})


def test_linear_matches_its_definition_and_gradchecks():
    layer = nn.Linear(3, 2, rng=np.random.default_rng(0), dtype=np.float64)
    x = anp.randn(5, 3, dtype=np.float64)
    expected = x.numpy() @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12)
    bound = 1 / np.sqrt(3)
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound
    anp.gradcheck(lambda a, w, b: F.linear(a, w, b), [anp.randn(2, 3, dtype=np.float64, requires_grad=True),
                                                       anp.randn(4, 3, dtype=np.float64, requires_grad=True),
                                                       anp.randn(4, dtype=np.float64, requires_grad=True)])


def test_init_draws_with_the_documented_spread():
    w = nn.Parameter(np.zeros((256, 128, 3, 3), np.float32))
    nn.init.kaiming_normal_(w, nonlinearity="relu", generator=np.random.default_rng(0))
    assert w.dtype == np.float32 and w.numpy().std() == pytest.approx(np.sqrt(2 / (128 * 9)), rel=0.01)
    nn.init.xavier_uniform_(w, generator=np.random.default_rng(0))
    assert np.abs(w.numpy()).max() <= np.sqrt(6 / (128 * 9 + 256 * 9))
    nn.init.constant_(w, 0.5)
    assert (w.numpy() == 0.5).all()
    with pytest.raises(ValueError, match=r"at least 2 dimensions"):
        nn.init.kaiming_uniform_(nn.Parameter(np.zeros(3)))


def test_tensor_methods_pytorch_users_reach_for():
    t = anp.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.numel() == 24
    assert t.view(6, 4).shape == (6, 4) and t.flatten(1).shape == (2, 12) and t.flatten().shape == (24,)
    assert t.float().dtype == np.float32 and t.double().dtype == np.float64
    assert t.to(np.float32).dtype == np.float32 and t.to("numpy").backend == "numpy"
    copy = t.clone()
    copy.sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), np.ones((2, 3, 4)))
    assert t.detach().requires_grad is False and anp.tensor(np.ones(1)).item() == 1.0


def test_from_numpy_shares_memory_on_the_cpu_backends():
    array = np.zeros(3)
    with anp.use_backend("numpy"):
        shared = anp.from_numpy(array)
    array[0] = 7
    assert shared.numpy()[0] == 7
    with pytest.raises(TypeError, match="from_numpy: expected a NumPy array, got list"):
        anp.from_numpy([1, 2])


def test_dim_and_axis_are_both_accepted():
    x = anp.tensor(np.arange(6.0).reshape(2, 3))
    for value in (x.sum(dim=1), x.sum(axis=1), F.sum(x, dim=1), F.sum(x, axis=1), x.sum(1)):
        np.testing.assert_array_equal(value.numpy(), [3.0, 12.0])
    assert x.mean(dim=0, keepdim=True).shape == (1, 3) and x.mean(axis=0, keepdims=True).shape == (1, 3)
    np.testing.assert_allclose(F.softmax(x, axis=1).numpy(), F.softmax(x, dim=1).numpy())
    assert F.cat([x, x], axis=1).shape == (2, 6) and F.cat([x, x], dim=1).shape == (2, 6)
    assert F.stack([x, x], axis=2).shape == (2, 3, 2) and x.argmax(axis=1).numpy().tolist() == [2, 2]
    with pytest.raises(TypeError, match="sum: give dim or axis, not both"):
        x.sum(dim=0, axis=1)
