"""The graph: diamonds, reuse, long chains, no_grad, accumulation and freeing."""

import numpy as np
import pytest

import atrousnp as anp


def test_a_tensor_used_twice_gets_both_gradients(backend):
    x = anp.tensor(np.array([1.0, 2.0, -3.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


def test_diamond_graph_sums_both_paths(backend):
    # y = a*b + a*c with b = 2a, c = a^2: dy/da = 4a + 3a^2
    a = anp.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    b, c = a * 2, a ** 2
    (a * b + a * c).sum().backward()
    x = a.numpy()
    np.testing.assert_allclose(a.grad.numpy(), 4 * x + 3 * x ** 2)


def test_deep_chain_has_no_recursion_limit(backend):
    x = anp.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-9)


def test_no_grad_records_nothing(backend):
    x = anp.tensor(np.ones(3), requires_grad=True)
    with anp.no_grad():
        y = (x * 2).exp().sum()
    assert not y.requires_grad and y.is_leaf
    assert anp.is_grad_enabled()


def test_no_grad_as_decorator(backend):
    @anp.no_grad()
    def double(t):
        return t * 2
    assert not double(anp.tensor(np.ones(2), requires_grad=True)).requires_grad


def test_gradients_accumulate_across_backward_calls(backend):
    x = anp.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_leaf_gradient_has_the_leaf_shape_after_broadcasting(backend):
    bias = anp.tensor(np.zeros((1, 3)), requires_grad=True)
    (anp.tensor(np.ones((4, 3))) + bias).sum().backward()
    assert bias.grad.shape == (1, 3)
    np.testing.assert_array_equal(bias.grad.numpy(), [[4.0, 4.0, 4.0]])


def test_constants_get_no_gradient(backend):
    x = anp.tensor(np.ones(2), requires_grad=True)
    c = anp.tensor(np.ones(2))
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


def test_backward_on_non_scalar_needs_a_gradient(backend):
    y = anp.tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*gradient="):
        y.backward()
    y.backward(gradient=np.ones((2, 3)))


def test_backward_gradient_of_the_wrong_shape(backend):
    y = anp.tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        y.backward(gradient=np.ones(3))


def test_graph_is_freed_unless_retained(backend):
    x = anp.tensor(np.ones(2), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0])
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_detach_cuts_the_graph(backend):
    x = anp.tensor(np.ones(2), requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf


def test_requires_grad_only_on_floats(backend):
    with pytest.raises(TypeError, match="floating"):
        anp.tensor(np.array([1, 2]), requires_grad=True)


def test_gradcheck_names_the_worst_element(backend):
    class WrongSquare(anp.Function):
        # A Function computes on raw backend arrays through ctx.backend's primitives: a GPU
        # device array has no arithmetic operators of its own (the simulator's NumPy-backed ones do).
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return ctx.backend.zip("mul", a, a)

        @staticmethod
        def backward(ctx, grad):
            return ctx.backend.zip("mul", grad, ctx.saved[0])  # missing the factor 2

    x = anp.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    with pytest.raises(AssertionError, match=r"input 0 of shape \(3,\) at element"):
        anp.gradcheck(WrongSquare.apply, [x])


def test_constructors(backend):
    assert anp.zeros(2, 3).shape == (2, 3) and anp.zeros(2, 3).dtype == np.float32
    np.testing.assert_array_equal(anp.ones((2,)).numpy(), [1, 1])
    a = anp.randn(3, 4, rng=np.random.default_rng(7))
    b = anp.randn(3, 4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert anp.tensor([1.5, 2.0]).dtype == np.float32
    assert anp.tensor(np.array([1.5])).dtype == np.float64
    t = anp.tensor(np.zeros((2, 5)))
    assert (t.ndim, t.numel(), t.size(), len(t), t.backend) == (2, 10, (2, 5), 2, backend)


def test_tensor_copies_its_input(backend):
    a = np.zeros(3)
    t = anp.tensor(a)
    a[0] = 1
    assert t.numpy()[0] == 0
