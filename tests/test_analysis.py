"""The paper's Figure 4 and the effective receptive field, computed by atrousnp (atrousnp.analysis)."""

import numpy as np
import pytest

import atrousnp as anp
from atrousnp.analysis import effective_receptive_field, valid_tap_shares, valid_taps


def closed_form_shares(size, rate):
    """Per axis: max(n - 2r, 0) positions see 3 taps, min(max(2r - n, 0), n) only the centre, the rest 2."""
    three = max(size - 2 * rate, 0)
    one = min(max(2 * rate - size, 0), size)
    two = size - three - one
    return {9: (three / size) ** 2, 4: (two / size) ** 2, 1: (one / size) ** 2}


@pytest.mark.parametrize("size", [65, 33])
def test_figure_4_shares_equal_the_closed_form_at_every_rate(size):
    rates = range(1, 81)
    shares = valid_tap_shares(size, rates)
    for i, rate in enumerate(rates):
        expected = closed_form_shares(size, rate)
        for count in (1, 4, 9):
            assert shares[count][i] == pytest.approx(expected[count], abs=1e-12), (size, rate, count)
    # the paper's reading: all nine taps valid almost everywhere at small rates, none at large ones
    assert shares[9][0] == pytest.approx(((size - 2) / size) ** 2)
    assert shares[9][rates.index(size // 2 + 1)] == 0 and shares[1][-1] == 1.0


def test_valid_taps_counts_the_taps_on_the_map():
    counts = valid_taps(5, 2)
    assert counts[2, 2] == 9 and counts[0, 0] == 4 and counts[0, 2] == 6
    assert valid_taps(3, 5).tolist() == [[1] * 3] * 3  # rate beyond the map: only the centre tap


@pytest.mark.parametrize("rate", [1, 2, 3, 5])
def test_the_field_of_one_atrous_conv_is_exactly_its_nine_taps(backend, rate):
    conv = anp.nn.Conv2d(2, 3, 3, padding=rate, dilation=rate, rng=np.random.default_rng(rate))
    field = effective_receptive_field(conv, (1, 2, 21, 21))
    taps = np.zeros((21, 21), bool)
    for di in (-rate, 0, rate):
        for dj in (-rate, 0, rate):
            taps[10 + di, 10 + dj] = True
    assert (field > 0).tolist() == taps.tolist()


@pytest.mark.parametrize("script", ["plot_figure4.py", "plot_receptive_fields.py"])
def test_the_figure_scripts_draw(tmp_path, script):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parents[1] / "examples" / script
    spec = importlib.util.spec_from_file_location(script[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path / "figure.png")])
    assert (tmp_path / "figure.png").stat().st_size > 10_000


def test_the_papers_rates_scale_to_the_feature_map():
    """The paper's 513-pixel crops give a 33x33 map at output stride 16."""
    from atrousnp.analysis import feature_map_size, scaled_rates
    assert [feature_map_size(size, 16) for size in (513, 96, 48)] == [33, 6, 3]
    assert scaled_rates((6, 12, 18), 33) == (6, 12, 18)
    assert scaled_rates((6, 12, 18, 24), 6) == (1, 2, 3, 4)
    assert scaled_rates((6, 12, 18), 3) == (1, 1, 2)


def test_the_tap_audit_finds_filters_that_are_1x1_in_effect():
    """ASPP's rates 6, 12, 18 on the 6x6 map of a 96-pixel crop: only the centre tap reads the image."""
    from atrousnp.analysis import tap_audit
    plan = anp.models.atrous_plan(16, None, "aspp", (6, 12, 18), (1, 1, 1, 1))
    audit = {path: (size, rate, on_image, centre) for path, size, rate, on_image, centre in tap_audit(plan, 96)}
    assert audit["classifier.0.convs.3"] == (6, 18, 1 / 9, 1.0)
    scaled = {path: row[3] for path, *row in tap_audit(anp.models.atrous_plan(16, None, "aspp", (1, 2, 3),
                                                                              (1, 1, 1, 1)), 96)}
    paper = {path: row[3] for path, *row in tap_audit(anp.models.atrous_plan(16, None, "aspp", (6, 12, 18)), 513)}
    for branch in ("classifier.0.convs.1", "classifier.0.convs.2", "classifier.0.convs.3"):
        assert abs(scaled[branch] - paper[branch]) < 0.05  # the paper's share of taps on the image
