"""Softmax and cross-entropy equal their loop definitions and torch in PyTorch's forms; bad labels are named."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.reference import layers as ref
from helpers import assert_matches_torch, seeds, t, torch_or_skip

RNG = np.random.default_rng(0)


@given(c=st.integers(2, 5), hw=st.integers(1, 4), seed=seeds, weighted=st.booleans())
def test_cross_entropy_equals_the_loop_definition(backend, c, hw, seed, weighted):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((2, c, hw, hw)) * 3
    target = rng.integers(0, c, (2, hw, hw))
    target[rng.random(target.shape) < 0.3] = 255
    weight = rng.uniform(0.5, 2.0, c) if weighted else None
    loss = F.cross_entropy(anp.tensor(logits), anp.tensor(target), ignore_index=255, weight=weight)
    np.testing.assert_allclose(loss.item(), ref.cross_entropy(logits, target, 255, weight), rtol=1e-10, atol=1e-12)
    logits_t = t(logits, grad=True)
    F.cross_entropy(logits_t, anp.tensor(target), ignore_index=255, weight=weight).backward()
    np.testing.assert_allclose(logits_t.grad.numpy(), ref.cross_entropy_backward(logits, target, 255, weight),
                               rtol=1e-10, atol=1e-12)
    assert anp.gradcheck(lambda t: F.cross_entropy(t, target, weight=weight), [t(logits, grad=True)])


def test_cross_entropy_with_every_pixel_ignored_is_zero_with_zero_gradient(backend):
    logits = t(np.random.default_rng(0).standard_normal((1, 3, 2, 2)), grad=True)
    loss = F.cross_entropy(logits, np.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0
    np.testing.assert_array_equal(logits.grad.numpy(), 0.0)


def test_cross_entropy_with_an_ignore_index_that_is_also_a_class(backend):
    rng = np.random.default_rng(5)
    logits, target = rng.standard_normal((2, 3, 2, 3)), rng.integers(0, 3, (2, 2, 3))
    loss = F.cross_entropy(anp.tensor(logits), target, ignore_index=1)
    np.testing.assert_allclose(loss.item(), ref.cross_entropy(logits, target, 1, None), rtol=1e-10)


def test_softmax_is_stable_and_sums_to_one(backend):
    x = anp.tensor(np.array([[1000.0, 1001.0, 999.0]]))
    p = F.softmax(x, dim=1).numpy()
    np.testing.assert_allclose(p.sum(), 1.0)
    assert np.isfinite(F.log_softmax(x, dim=1).numpy()).all()
    assert anp.gradcheck(lambda t: F.log_softmax(t, dim=1),
                         [t(np.random.default_rng(1).standard_normal((2, 4)), grad=True)])


def test_against_torch(backend):
    torch = torch_or_skip()
    tf = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 7))
    target = rng.integers(0, 3, (2, 9, 7))
    target[0, :2] = 255
    assert_matches_torch(x, {
        "log_softmax": (lambda t: F.log_softmax(t, 1), lambda t: tf.log_softmax(t, 1)),
        "cross_entropy": (lambda t: F.cross_entropy(t, target), lambda t: tf.cross_entropy(t, torch.tensor(target), ignore_index=255)),
    })


# -- PyTorch's forms ------------------------------------------------------------------------------

CROSS_ENTROPY = [  # logits shape, reduction, label_smoothing, weighted, probability targets
    ((3, 4), "none", 0.0, False, False), ((2, 4, 5), "sum", 0.1, True, False),
    ((2, 4, 3, 2, 2), "mean", 0.2, True, False), ((2, 4, 3, 3), "none", 0.1, True, False),
    ((2, 4, 3), "mean", 0.0, False, True), ((2, 4, 3, 2), "sum", 0.3, True, True),
]


def cross_entropy_case(shape, probabilities):
    logits = RNG.standard_normal(shape)
    if probabilities:
        target = RNG.dirichlet(np.ones(shape[1]), (shape[0],) + shape[2:])
        return logits, np.moveaxis(target, -1, 1)
    labels = RNG.integers(0, shape[1], (shape[0],) + shape[2:])
    labels.flat[::4] = 255
    return logits, labels


@pytest.mark.parametrize("shape,reduction,smoothing,weighted,probabilities", CROSS_ENTROPY)
def test_cross_entropy_forms_match_pytorchs_definition(backend, shape, reduction, smoothing, weighted, probabilities):
    logits, target = cross_entropy_case(shape, probabilities)
    weight = RNG.uniform(0.5, 2, shape[1]) if weighted else None
    loss = lambda a: F.cross_entropy(a, target, weight=weight, reduction=reduction,  # noqa: E731
                                     label_smoothing=smoothing)
    expected = ref.cross_entropy(logits, target, 255, weight, reduction, smoothing)
    np.testing.assert_allclose(loss(t(logits)).numpy(), expected, rtol=1e-10)
    assert anp.gradcheck(loss, [t(logits, grad=True)])


def test_cross_entropy_forms_match_torch():
    torch = torch_or_skip()
    for shape, reduction, smoothing, weighted, probabilities in CROSS_ENTROPY:
        logits, target = cross_entropy_case(shape, probabilities)
        weight = RNG.uniform(0.5, 2, shape[1]) if weighted else None
        ours = lambda a: F.cross_entropy(a, target, weight=weight, reduction=reduction,  # noqa: E731
                                         label_smoothing=smoothing)
        theirs = lambda a: torch.nn.functional.cross_entropy(  # noqa: E731
            a, torch.tensor(target), None if weight is None else torch.tensor(weight),
            ignore_index=-100 if probabilities else 255, reduction=reduction, label_smoothing=smoothing)
        assert_matches_torch(logits, {f"{shape} {reduction}": (ours, theirs)}, rtol=1e-10, atol=0)


# -- bad input ------------------------------------------------------------------------------------

def test_cross_entropy_bad_labels(backend):
    with pytest.raises(ValueError, match=r"label 7 is outside \[0, 3\)"):
        F.cross_entropy(anp.zeros(1, 3, 2, 2), np.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match=r"target must have shape \(1, 2, 2\).*got \(1, 2\)"):
        F.cross_entropy(anp.zeros(1, 3, 2, 2), np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(2,\)"):
        F.cross_entropy(anp.zeros(1, 3, 2, 2), np.zeros((1, 2, 2), np.int64), weight=anp.ones(2))
