"""Shared asserts and small exact computations for the sgmteach tests.

Statistical asserts take the standard error and a multiple `c` of it. Unless a test says
otherwise `c = 5`: for a (near-)normal estimate the two-sided false-alarm rate is 5.7e-7 per
comparison, so a suite of a few hundred such comparisons fails by chance less than once in
ten thousand runs (and never, with the fixed keys used here, unless the code changes).
"""

import contextlib
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

C_SE = 5.0  # standard errors allowed in Monte-Carlo comparisons (false alarm 5.7e-7, two-sided)


def mean_se(values, axis=0):
    """Sample mean and its standard error `std / sqrt(n)` along `axis`, in float64."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[axis]
    return v.mean(axis), v.std(axis, ddof=1) / np.sqrt(n)


def assert_mc_close(estimate, exact, se, *, c=C_SE, bias=0.0, what=""):
    """Assert `|estimate - exact| <= c * se + bias`, elementwise.

    `se` is the Monte-Carlo standard error of `estimate - exact`; `bias` a bound on any
    deterministic error (time discretisation), added outside the `c * se` band.
    """
    estimate, exact = np.asarray(estimate, np.float64), np.asarray(exact, np.float64)
    tol = c * np.asarray(se, np.float64) + np.asarray(bias, np.float64)
    err = np.abs(estimate - exact)
    assert np.all(err <= tol), (
        f"{what}: |{estimate} - {exact}| = {err} exceeds {c} s.e. + bias = {tol} "
        f"(s.e. {se}, bias {bias})"
    )


def moments_se(x):
    """Mean, covariance and their standard errors for samples `x` `(n, d)`.

    The covariance entry `(i, j)` is a mean of `(x_i - mu_i)(x_j - mu_j)`; its standard error is
    the sample standard deviation of those products over `sqrt(n)` (plug-in fourth moments,
    so no Gaussian assumption).
    """
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    mu = x.mean(0)
    dx = x - mu[None]
    prods = dx[:, :, None] * dx[:, None, :]  # (n, d, d)
    return mu, x.std(0, ddof=1) / np.sqrt(n), prods.mean(0), prods.std(0, ddof=1) / np.sqrt(n)


@eqx.filter_jit
def _coefficients(sde, ts):
    a = jax.vmap(lambda t: sde.drift(jnp.ones((), ts.dtype), t))(ts)
    return a, jax.vmap(sde.diffusion)(ts) ** 2


def linear_coefficients(sde, ts):
    """`(a(t), g(t)^2)` for a linear SDE `dx = a(t) x dt + g(t) dW`, on the times `ts`."""
    a, g2 = _coefficients(sde, jnp.asarray(ts))
    return np.asarray(a, np.float64), np.asarray(g2, np.float64)


def em_moments(a, g2, h, mu0, var0, save_every):
    """Exact mean and variance of the Euler–Maruyama chain of a scalar linear SDE.

    `x_{i+1} = (1 + a_i h) x_i + g_i sqrt(h) z_i` from `x_0 ~ (mu0, var0)`, given the
    coefficients `a_i`, `g_i^2` on the grid `t_i = i h`; so `mean_{i+1} = (1 + a_i h) mean_i`
    and `var_{i+1} = (1 + a_i h)^2 var_i + g_i^2 h`, in float64. Built from `drift` and
    `diffusion` only (see `linear_coefficients`), never from `marginal_mean_std`.
    Returns the moments after every `save_every` steps, shapes `(len(a) // save_every,)`.
    """
    mean, var, means, vars_ = float(mu0), float(var0), [], []
    for i, (ai, gi2) in enumerate(zip(np.asarray(a, np.float64), np.asarray(g2, np.float64),
                                      strict=True)):
        mean, var = (1 + ai * h) * mean, (1 + ai * h) ** 2 * var + gi2 * h
        if (i + 1) % save_every == 0:
            means.append(mean)
            vars_.append(var)
    return np.asarray(means), np.asarray(vars_)


@contextlib.contextmanager
def count_compiles(name):
    """Collect the XLA compilations of `jit(name)` that happen inside the block.

    Yields a list that fills with one log message per compilation (read its `len` after the
    block). Relies on `jax.log_compiles`, as Optax's `log_compilations` does.
    """
    found = []

    class _Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith(f"Compiling jit({name})"):
                found.append(msg)

    handler = _Handler(level=logging.DEBUG)
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield found
    finally:
        logger.removeHandler(handler)
