"""Choosing a backend: an unknown name is refused with the valid ones listed, and use_backend restores the previous."""

import pytest

import atrousnp as anp


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"'tpu'.*'numpy', 'numba'"):
        anp.set_backend("tpu")
    assert anp.get_backend().name in anp.backend_names()


def test_use_backend_restores_the_previous_one():
    before = anp.get_backend().name
    with anp.use_backend("numpy"):
        assert anp.get_backend().name == "numpy"
    assert anp.get_backend().name == before
