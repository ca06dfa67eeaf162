r"""Distances between sample sets, each meant to be read beside its Monte-Carlo floor.

Even two independent samples of the *same* law are at a positive distance from each other; that
distance, at the same sample size, is the floor a generative model cannot beat. `mc_floor`
measures it, so every distance printed in the tutorials comes with the number it should be
compared to.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import ot

from ._checks import positive_int, sample_pair
from ._types import Key, Target


def wasserstein1(x, y) -> float:
    r"""Exact $W_1$ between the empirical laws of `x` `(n, d)` and `y` `(m, d)` (POT's EMD).

    Cost: Euclidean distance. $O(n^3)$ in time and $O(nm)$ in memory: fine to a few thousand
    points; use `sliced_wasserstein` beyond.
    """
    x, y = sample_pair(x, y)
    cost = ot.dist(x, y, metric="euclidean")
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    return float(ot.emd2(a, b, cost, numItermax=10_000_000))


def _quantiles(p, m):
    # Empirical quantile function of each column of p (n, L) at the midpoints (i+1/2)/m.
    n = p.shape[0]
    sp = jnp.sort(p, axis=0)
    if n == m:
        return sp
    idx = jnp.clip(jnp.floor((jnp.arange(m) + 0.5) / m * n).astype(int), 0, n - 1)
    return sp[idx]


def sliced_wasserstein(x, y, *, key: Key, n_projections: int = 256, p: int = 1) -> float:
    r"""Sliced $W_p$: $\big(\mathbb{E}_\theta W_p^p(\theta^\top x, \theta^\top y)\big)^{1/p}$.

    Directions $\theta$ are uniform on the sphere (`n_projections` of them, from `key`); each
    one-dimensional distance compares the two empirical quantile functions at the midpoints
    $(i + 1/2)/m$, $m = \max(n_x, n_y)$: exact when one sample size divides the other (equal
    sizes included), a midpoint approximation otherwise.
    """
    x, y = sample_pair(x, y)
    n_projections = positive_int("n_projections", n_projections)
    return float(_sliced(jnp.asarray(x), jnp.asarray(y), key, n_projections, p))


@jax.jit
def _sliced_core(px, py, p):
    m = max(px.shape[0], py.shape[0])
    d = jnp.abs(_quantiles(px, m) - _quantiles(py, m))
    return jnp.mean(jnp.mean(d**p, axis=0)) ** (1 / p)


def _sliced(x, y, key, n_projections, p):
    theta = jr.normal(key, (x.shape[1], n_projections), dtype=x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    return _sliced_core(x @ theta, y @ theta, p)


def mmd(x, y, *, bandwidths=(0.25, 0.5, 1.0, 2.0, 4.0)) -> float:
    r"""Maximum mean discrepancy with a sum of Gaussian kernels $\sum_h e^{-\|x-y\|^2/(2h^2)}$.

    The biased (V-statistic) estimate $\sqrt{\widehat{\mathrm{MMD}}^2}$, which is never negative
    and has a positive Monte-Carlo floor.
    """
    x, y = sample_pair(x, y)
    h = jnp.asarray(bandwidths, dtype=float)
    if h.ndim != 1 or (h <= 0).any():
        raise ValueError(f"bandwidths must be positive numbers, got {bandwidths}.")
    return float(_mmd(jnp.asarray(x), jnp.asarray(y), h))


@jax.jit
def _mmd(x, y, h):
    def k(a, b):
        d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None] - 2 * a @ b.T
        d2 = jnp.maximum(d2, 0.0)
        return jnp.sum(jnp.exp(-d2[..., None] / (2 * h**2)[None, None]), -1)

    m2 = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    return jnp.sqrt(jnp.maximum(m2, 0.0))


class Floor(NamedTuple):
    """A Monte-Carlo estimate: mean and standard deviation over `count` independent repeats.

    Formats as `mean ± s.e.` (one standard error of the mean). `ratio(floor)` divides by
    another estimate and propagates both standard errors *as if the two were independent*:
    for two estimates computed on the same samples (positively correlated) the propagated
    error is conservative. With `count == 1` the spread is unknown and `std` is 0: such an
    estimate carries no error bar, not a zero one.
    """

    mean: float
    std: float
    count: int = 1

    @property
    def sem(self) -> float:
        """Standard error of the mean, `std / sqrt(count)`."""
        return self.std / np.sqrt(self.count)

    def ratio(self, other: "Floor") -> tuple[float, float]:
        """`(self.mean / other.mean, standard error)` by first-order error propagation."""
        r = self.mean / other.mean
        return r, abs(r) * float(np.hypot(self.sem / self.mean, other.sem / other.mean))

    def __format__(self, spec):
        spec = spec or ".4f"
        return f"{format(self.mean, spec)} ± {format(self.sem, spec)}"


def _check_target(target):
    if not isinstance(target, Target):
        raise TypeError(f"target must have a sample(n, *, key) method (a GaussianMixture, a "
                        f"generator ...), got {type(target).__name__}.")


def mc_floor(metric, target, n: int, *, key: Key, repeats: int = 5) -> Floor:
    r"""The value of `metric` between two independent `n`-samples of `target`.

    **Arguments:**

    - `metric`: callable `(x, y) -> float`, e.g. `wasserstein1` or
      `functools.partial(sliced_wasserstein, key=k)`.
    - `target`: anything with `sample(n, *, key)`: a `GaussianMixture`, a trained generator.
    - `n`: sample size, the same as that of the samples being judged.
    - `key`: PRNG key; `repeats`: independent pairs averaged.

    **Returns:** a `Floor(mean, std, count)`.
    """
    n, repeats = positive_int("n", n), positive_int("repeats", repeats)
    _check_target(target)
    vals = []
    for k in jr.split(key, repeats):
        ka, kb = jr.split(k)
        vals.append(metric(target.sample(n, key=ka), target.sample(n, key=kb)))
    vals = np.asarray(vals)
    return Floor(float(vals.mean()), float(vals.std(ddof=1)) if repeats > 1 else 0.0, repeats)


def distance_to_target(metric, samples, target, *, key: Key, groups: int = 1) -> Floor:
    r"""`metric` between `samples` and fresh draws of `target`, averaged over `groups` slices.

    `samples` `(groups * n, d)` is cut into `groups` slices of `n`; each is compared with its own
    independent `n`-sample of `target`. Compare the result with `mc_floor(metric, target, n, ...)`:
    one value at $n$ is as noisy as the floor itself (for sliced $W_1$ on a mixture, about 25%),
    so averages over groups are what a claim like "within 1.3x the floor" should rest on.

    **Returns:** a `Floor(mean, std, count)` over the groups.
    """
    samples = np.asarray(samples)
    groups = positive_int("groups", groups)
    _check_target(target)
    if samples.ndim != 2 or len(samples) % groups:
        raise ValueError(
            f"samples must have shape (groups * n, d), got {samples.shape} for groups={groups}."
        )
    n = len(samples) // groups
    vals = [
        metric(samples[i * n : (i + 1) * n], target.sample(n, key=k))
        for i, k in enumerate(jr.split(key, groups))
    ]
    vals = np.asarray(vals)
    return Floor(float(vals.mean()), float(vals.std(ddof=1)) if groups > 1 else 0.0, groups)
