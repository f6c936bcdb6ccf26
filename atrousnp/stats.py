"""Is configuration A better than B, or is the difference noise? A paired comparison of mIoU.

Two things make a measured mIoU difference noisy, and an interval must hold both:

* **training**: another seed (initial weights, batch order) trains another model. Each seed s
  trains A and B with the same streams, so the per-seed differences d_s = mIoU_A,s - mIoU_B,s
  are paired, and their spread across seeds, s_d, measures this noise;
* **the test set**: another draw of val images would score every model differently. Resampling
  the images (the same draw for every seed and both arms, since the models are compared on the
  same images) measures this noise, as the bootstrap variance v_img of the mean difference.

With S seeds and d = mean(d_s), the standard error is SE = sqrt(s_d^2 / S + v_img) and the 95%
interval d ± t(0.975, ν) * SE: Student's t, with ν the Welch-Satterthwaite degrees of freedom
of the two parts (``standard_error``), between S - 1 and the images' I - 1. With 3 seeds and a
seed part that dominates, ν is near 2 and the multiplier near 4.3, not 1.96: three runs say
little about the spread of a fourth. The rule, decided before any run:

* **holds**: the interval lies above 0 (A better, as the paper says);
* **contradicted**: it lies below 0;
* **not resolved at this scale**: it contains 0. The minimum detectable effect,
  (t(0.975) + t(0.80)) * SE, says how large a difference this design finds 80% of the time.

A single seed has no s_d: its interval holds the test-set noise alone, and it is reported as
an illustration, never as a verdict. mIoU is computed from confusion matrices summed over the
images (as the paper's metric), not as a mean of per-image IoUs.
"""

import dataclasses

import numpy as np
import scipy.stats

from .metrics import mean_iou

LEVEL = 0.95
POWER = 0.80


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A value in points of mIoU (x100: one arm's mIoU, or a difference A - B), its 95% interval,
    and, for a difference, the verdict of the rule above."""

    value: float
    low: float
    high: float
    seeds: int
    detectable: float     # the minimum detectable effect (80% power), in points

    @property
    def verdict(self):
        if self.seeds < 2:
            return "illustration (one seed)"
        if self.low > 0:
            return "holds"
        if self.high < 0:
            return "contradicted"
        return "not resolved at this scale"

    def __str__(self):
        return f"{self.value:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def compare(cms_a, cms_b, resamples=2000, seed=0):
    """A - B for per-image confusion matrices cms_a, cms_b: (S seeds, I images, C, C), paired by
    seed and by image; see the module's docstring for the interval."""
    cms_a, cms_b = np.asarray(cms_a), np.asarray(cms_b)
    if cms_a.shape != cms_b.shape:
        raise ValueError(f"compare: both arms must have one shape (seeds, images, C, C), got {cms_a.shape} and "
                         f"{cms_b.shape}")
    return _estimate(lambda weights: seed_mious(cms_a, weights) - seed_mious(cms_b, weights), cms_a.shape,
                     resamples, seed)


def estimate(cms, resamples=2000, seed=0):
    """One arm's mIoU over per-image confusion matrices (S seeds, I images, C, C), with its interval."""
    cms = np.asarray(cms)
    return _estimate(lambda weights: seed_mious(cms, weights), cms.shape, resamples, seed)


def seed_mious(cms, weights):
    """Each seed's mIoU over a weighted set of images: (S, R) for weights (R, I), row r counting
    how often each image is drawn (a bootstrap sample), so that its confusion matrix is the
    product weights @ cms."""
    seeds, images, c, _ = cms.shape
    summed = weights @ cms.reshape(seeds, images, c * c)           # (S, R, C*C)
    return mean_iou(summed.reshape(seeds, -1, c, c))


def _estimate(per_seed, shape, resamples, seed):
    """mean over seeds of per_seed(every image once), and its interval: see ``standard_error``."""
    if len(shape) != 4 or shape[0] < 1 or shape[1] < 2 or shape[2] != shape[3]:
        raise ValueError(f"confusion matrices must be (seeds, images >= 2, C, C), got shape {shape}")
    seeds, images = shape[:2]
    values = per_seed(np.ones((1, images)))[:, 0]                                       # (S,)
    draws = np.random.default_rng(seed).multinomial(images, np.full(images, 1 / images), resamples)
    se, freedom = standard_error(values, per_seed(draws), images)
    t = scipy.stats.t.ppf(0.5 + LEVEL / 2, freedom)
    detectable = (t + scipy.stats.t.ppf(POWER, freedom)) * se
    mean = values.mean()
    return Estimate(100 * mean, 100 * (mean - t * se), 100 * (mean + t * se), seeds, 100 * detectable)


def standard_error(values, resampled, images):
    """(standard error of mean(values), its degrees of freedom), for values: (S,) one per seed
    and resampled: (S, R) the same on R bootstrap draws of the images (one draw for all seeds).

    Write seed s's value on a set of I images as  mu + e_s + mean_i (u_i + w_si): e_s the
    seed's own luck, u_i what image i does to every seed, w_si the rest. Then

        var(mean) = var(e)/S + var(u)/I + var(w)/(S*I),

    and three measured variances hold its parts:
        seed_part   = var over seeds of values / S              -> var(e)/S + var(w)/(S*I)
        image_part  = var over draws of the seed mean            -> var(u)/I + var(w)/(S*I)
        each_seed   = mean over seeds of each one's draw variance -> var(u)/I + var(w)/I
    so var(w)/(S*I) = (each_seed - image_part) / (S - 1), counted by both of the first two, is
    taken off the image part. seed_part rests on S - 1 degrees of freedom and the image part on
    about I - 1; Welch and Satterthwaite's formula gives those of the sum."""
    seeds = len(values)
    image_part = resampled.mean(axis=0).var(ddof=1)
    if seeds == 1:
        return np.sqrt(image_part), images - 1
    seed_part = values.var(ddof=1) / seeds
    twice_counted = max(resampled.var(axis=1, ddof=1).mean() - image_part, 0.0) / (seeds - 1)
    image_part = max(image_part - twice_counted, 0.0)
    total = seed_part + image_part
    if total == 0:
        return 0.0, seeds - 1
    freedom = total ** 2 / (seed_part ** 2 / (seeds - 1) + image_part ** 2 / (images - 1))
    return np.sqrt(total), freedom
