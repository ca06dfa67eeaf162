"""Distances between sample sets, against answers solvable by hand."""

import functools

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from sgmteach import Floor, gaussian, mc_floor, mmd, ring, sliced_wasserstein, wasserstein1


def _col(*v):
    return np.asarray(v, dtype=np.float64)[:, None]


@pytest.mark.parametrize(
    "x, y, expected",
    [
        # 1-D, equal sizes: W1 = mean |sorted differences| = (2 + 4 + 3) / 3.
        (_col(0, 1, 3), _col(6, 2, 5), 3.0),
        # One point against two: all mass of x moves, half to each: (1 + 3) / 2.
        (_col(0), _col(1, 3), 2.0),
        # Two against four: quantiles at the four midpoints are (0, 0, 2, 2) and (1, 2, 2, 3).
        (_col(0, 2), _col(1, 2, 2, 3), (1 + 2 + 0 + 1) / 4),
        # 2-D: a unit square's bottom edge onto its top edge.
        (np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 1.0], [0.0, 1.0]]), 1.0),
        # 2-D: straight up costs 4 per point, the crossing assignment 5.
        (np.array([[0.0, 0.0], [3.0, 0.0]]), np.array([[0.0, 4.0], [3.0, 4.0]]), 4.0),
    ],
)
def test_wasserstein1_by_hand(x, y, expected):
    assert wasserstein1(x, y) == pytest.approx(expected, rel=1e-12)
    assert wasserstein1(y, x) == pytest.approx(expected, rel=1e-12)


def test_sliced_equals_exact_w1_in_one_dimension():
    # In 1-D the only directions are +1 and -1 and |theta (x - y)| = |x - y|: sliced W1 = W1
    # = mean |sort(x) - sort(y)|. float32 projections: relative error ~1e-6.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 1)), 2 + 0.5 * rng.normal(size=(50, 1))
    by_hand = np.mean(np.abs(np.sort(x[:, 0]) - np.sort(y[:, 0])))
    assert wasserstein1(x, y) == pytest.approx(by_hand, rel=1e-12)
    assert sliced_wasserstein(x, y, key=jr.key(0), n_projections=7) == pytest.approx(by_hand,
                                                                                    rel=1e-5)
    # Sizes 25 and 50: the smaller set's quantile function is constant on pairs of the larger's
    # quantile cells, so the quantile formula is still exact.
    assert sliced_wasserstein(x[:25], y, key=jr.key(0)) == pytest.approx(
        wasserstein1(x[:25], y), rel=1e-5)


def test_sliced_by_hand_in_two_dimensions():
    # y = x + (a, 0): every projection moves by theta_1 a, so sliced W1 = a E|theta_1| with theta
    # uniform on the circle, E|cos| = 2/pi; with 4,000 directions the s.e. of the mean of |cos|
    # is sqrt(1/2 - 4/pi^2)/sqrt(4,000) = 0.005, and we allow 5 s.e.
    x = np.asarray(ring().sample(200, key=jr.key(0)), np.float64)
    a = 0.7
    val = sliced_wasserstein(x, x + np.array([[a, 0.0]]), key=jr.key(1), n_projections=4000)
    assert abs(val / a - 2 / np.pi) <= 5 * np.sqrt(0.5 - 4 / np.pi**2) / np.sqrt(4000)


def _mmd_roundoff(n, dtype, n_bandwidths=5):
    # mmd = sqrt(A + B - 2C) with A, B, C means of n^2 kernel sums (each <= n_bandwidths). Their
    # pairwise-summation round-off is <= log2(n^2) eps n_bandwidths, and the sqrt turns that
    # into sqrt(4 log2(n^2) eps n_bandwidths) for identical inputs (a factor 4 for A, B, 2C).
    return np.sqrt(4 * np.log2(n * n) * np.finfo(dtype).eps * n_bandwidths)


def test_equal_samples_are_at_distance_zero():
    x = np.asarray(ring().sample(300, key=jr.key(0)))
    assert wasserstein1(x, x) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein1(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)  # order does not matter
    assert sliced_wasserstein(x, x, key=jr.key(1)) == 0.0
    assert mmd(x, x) <= _mmd_roundoff(300, np.float32)  # 6.3e-3: float32 round-off only


def test_mmd_by_hand_and_symmetric():
    # Single points, one bandwidth h: MMD^2 = k(0) + k(0) - 2 k(a) = 2 (1 - exp(-a^2 / (2 h^2))).
    a, h = 1.3, 0.8
    expected = np.sqrt(2 * (1 - np.exp(-(a**2) / (2 * h**2))))
    assert mmd(_col(0.0), _col(a), bandwidths=(h,)) == pytest.approx(expected, rel=1e-5)
    # Sum of kernels: the MMD^2 add up.
    hs = (0.5, 2.0)
    both = np.sqrt(sum(2 * (1 - np.exp(-(a**2) / (2 * b**2))) for b in hs))
    assert mmd(_col(0.0), _col(a), bandwidths=hs) == pytest.approx(both, rel=1e-5)
    x = np.asarray(ring().sample(200, key=jr.key(0)))
    y = np.asarray(ring(radius=3.0).sample(150, key=jr.key(1)))
    assert mmd(x, y) > 0.05
    assert mmd(x, y) == pytest.approx(mmd(y, x), rel=1e-5)  # float32 sums in another order


def test_mc_floor_is_positive_and_shrinks_with_n():
    # Sliced W1 between two n-samples of the same law falls like n^{-1/2} (1-D projections):
    # x16 points, ratio 1/4. Each floor is a mean of 32 repeats with ~30% relative spread
    # (s.e. ~5.5%), so the ratio's s.e. is ~0.02 and a 4 s.e. band around 1/4 excludes an
    # n^{-1/3} rate (ratio 0.40).
    metric = functools.partial(sliced_wasserstein, key=jr.key(0), n_projections=32)
    small = mc_floor(metric, ring(), 100, key=jr.key(1), repeats=32)
    large = mc_floor(metric, ring(), 1600, key=jr.key(2), repeats=32)
    assert isinstance(small, Floor)
    assert small.mean > 0 and small.std > 0 and large.mean > 0
    r, se = large.ratio(small)
    assert abs(r - 0.25) <= 4 * se, (r, se)
    assert 0.25 + 4 * se < 16 ** (-1 / 3), se  # the band has the power to reject n^{-1/3}


def test_mc_floor_uses_independent_pairs():
    calls = []

    def metric(x, y):
        calls.append((np.asarray(x), np.asarray(y)))
        return float(np.array_equal(np.asarray(x), np.asarray(y)))

    target = gaussian(jnp.zeros(2), jnp.eye(2))
    floor = mc_floor(metric, target, 5, key=jr.key(0), repeats=3)
    assert floor.mean == 0.0 and len(calls) == 3
    assert all(x.shape == (5, 2) for x, _ in calls)
    assert not np.array_equal(calls[0][0], calls[1][0])  # fresh draws per repeat
    single = mc_floor(lambda x, y: 1.0, target, 5, key=jr.key(0), repeats=1)
    assert (single.mean, single.std) == (1.0, 0.0)


GOOD = np.zeros((4, 2))


@pytest.mark.parametrize("fn", ["wasserstein1", "sliced", "mmd"])
@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.where(np.arange(8).reshape(4, 2) == 3, np.nan, 0.0), GOOD, "x contains NaN"),
        (GOOD, np.where(np.arange(8).reshape(4, 2) == 5, np.inf, 0.0), "y contains NaN or inf"),
        (GOOD, np.zeros((4, 3)), "x and y must share the dimension d"),
        (np.zeros(4), GOOD, r"x and y must have shape \(n, d\)"),
        (GOOD, np.zeros((0, 2)), "x and y must be non-empty"),
    ],
)
def test_bad_metric_input(fn, x, y, match):
    call = {
        "wasserstein1": lambda: wasserstein1(x, y),
        "sliced": lambda: sliced_wasserstein(x, y, key=jr.key(0)),
        "mmd": lambda: mmd(x, y),
    }[fn]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sliced_wasserstein(GOOD, GOOD, key=jr.key(0), n_projections=0),
         "n_projections must be a positive integer"),
        (lambda: mmd(GOOD, GOOD, bandwidths=(1.0, -1.0)), "bandwidths must be positive"),
        (lambda: mc_floor(wasserstein1, ring(), 0, key=jr.key(0)), "n must be a positive"),
        (lambda: mc_floor(wasserstein1, ring(), 5, key=jr.key(0), repeats=0),
         "repeats must be a positive"),
    ],
)
def test_bad_metric_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
