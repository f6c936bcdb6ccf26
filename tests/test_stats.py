"""The paired comparison of mIoU that the paper's miniature decides its verdicts with
(atrousnp.stats): on simulated experiments whose truth is known, a null effect is declared
only at about the nominal 5% rate, and a large one is found."""

import numpy as np
import pytest

from atrousnp.metrics import mean_iou
from atrousnp.stats import compare, estimate


def simulated_arm(rng, quality, image_effects, seeds=3, pixels=300, classes=4, seed_sd=0.15, noise_sd=0.3):
    """Per-image confusion matrices (seeds, images, classes, classes) of a simulated model: each
    seed's model has a quality (on the logit scale) of ``quality`` + N(0, seed_sd); a pixel of
    image i is right with probability sigmoid(quality_s + image_effects[i] + N(0, noise_sd)),
    and wrong pixels go to the other classes evenly."""
    images = len(image_effects)
    cms = np.zeros((seeds, images, classes, classes), np.int64)
    for s in range(seeds):
        q = quality + rng.normal(0, seed_sd)
        right_rate = 1 / (1 + np.exp(-(q + image_effects + rng.normal(0, noise_sd, images))))
        truth = rng.multinomial(pixels, np.full(classes, 1 / classes), images)
        right = rng.binomial(truth, right_rate[:, None])
        for i in range(images):
            for c in range(classes):
                wrong = rng.multinomial(truth[i, c] - right[i, c], np.full(classes - 1, 1 / (classes - 1)))
                cms[s, i, c] = np.insert(wrong, c, right[i, c])
    return cms


def verdicts(rng, effect, experiments, **noise):
    found = []
    for experiment in range(experiments):
        image_effects = rng.normal(0, 0.5, 60)
        a = simulated_arm(rng, 1.0 + effect, image_effects, **noise)
        b = simulated_arm(rng, 1.0, image_effects, **noise)
        found.append(compare(a, b, resamples=300, seed=experiment).verdict)
    return found


@pytest.mark.parametrize("noise", [dict(seed_sd=0.5, noise_sd=0.1), dict(seed_sd=0.0, noise_sd=0.3),
                                   dict(seed_sd=0.15, noise_sd=1.0)], ids=["seed noise", "image noise", "both"])
def test_a_null_effect_is_declared_at_about_the_nominal_rate(noise):
    found = verdicts(np.random.default_rng(0), 0.0, 200, **noise)
    declared = 1 - found.count("not resolved at this scale") / len(found)
    assert declared <= 0.11, declared  # 5% nominal; 200 experiments give a standard error of 1.5 points
    assert declared > 0  # and the rule is not blind


def test_a_large_effect_holds_and_its_reverse_is_contradicted():
    rng = np.random.default_rng(1)
    assert verdicts(rng, 1.5, 20).count("holds") >= 19
    assert verdicts(rng, -1.5, 20).count("contradicted") >= 19


def test_one_seed_is_an_illustration_whose_interval_holds_the_image_noise_alone():
    rng = np.random.default_rng(2)
    image_effects = rng.normal(0, 0.5, 60)
    a, b = (simulated_arm(rng, q, image_effects, seeds=1) for q in (2.0, 1.0))
    result = compare(a, b)
    assert result.verdict == "illustration (one seed)" and result.low > 0


def test_the_estimate_is_the_miou_of_the_summed_matrices_and_its_interval_contains_it():
    rng = np.random.default_rng(3)
    cms = rng.integers(0, 30, (3, 40, 5, 5))
    result = estimate(cms)
    expected = np.mean([mean_iou(seed.sum(axis=0)) for seed in cms])
    assert result.value == pytest.approx(100 * expected)
    assert result.low < result.value < result.high
    paired = compare(cms, cms)
    assert paired.value == 0 and paired.low == paired.high == 0


def test_mean_iou_of_a_stack_is_each_matrix_own():
    cms = np.random.default_rng(4).integers(0, 9, (2, 3, 4, 4))
    cms[0, 1, :, 2] = cms[0, 1, 2, :] = 0  # a class absent from truth and prediction: left out of the mean
    stacked = mean_iou(cms)
    for index in np.ndindex(2, 3):
        assert stacked[index] == pytest.approx(mean_iou(cms[index]))


def test_arms_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match=r"compare: both arms must have one shape"):
        compare(np.zeros((3, 5, 2, 2)), np.zeros((2, 5, 2, 2)))
    with pytest.raises(ValueError, match=r"must be \(seeds, images >= 2, C, C\)"):
        estimate(np.zeros((3, 1, 2, 2)))
