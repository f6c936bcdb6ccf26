"""Bad input gets a clear error naming the argument and the shapes."""

import pytest

import atrousnp as anp
import atrousnp.functional as F


def test_mismatched_shapes_name_both(backend):
    a, b = anp.zeros(2, 3), anp.zeros(4)
    for op in (lambda: a + b, lambda: a - b, lambda: a * b, lambda: a / b, lambda: a ** b):
        with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
            op()


def test_matmul_mismatch_names_both_shapes(backend):
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        anp.zeros(2, 3) @ anp.zeros(4, 5)


def test_reshape_to_a_different_size(backend):
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*\(4, 2\)"):
        anp.zeros(2, 3).reshape(4, 2)


def test_cat_mismatch(backend):
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        anp.cat([anp.zeros(2, 3), anp.zeros(2, 4)], dim=0)


def test_axis_out_of_range(backend):
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        anp.zeros(2, 3).sum(axis=2)


def test_bad_pad_and_permute(backend):
    with pytest.raises(ValueError, match="pad"):
        anp.pad(anp.zeros(2), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="permutation"):
        anp.zeros(2, 3).permute(0, 0)


def test_where_needs_a_boolean_condition(backend):
    with pytest.raises(TypeError, match="boolean"):
        F.where(anp.zeros(2), anp.zeros(2), anp.zeros(2))


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"'tpu'.*'numpy', 'numba'"):
        anp.set_backend("tpu")
    assert anp.get_backend().name in anp.backend_names()


def test_use_backend_restores_the_previous_one():
    before = anp.get_backend().name
    with anp.use_backend("numpy"):
        assert anp.get_backend().name == "numpy"
    assert anp.get_backend().name == before
