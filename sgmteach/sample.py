r"""Sampling by reversing the forward SDE: reverse SDE (Euler–Maruyama) or probability-flow ODE.

With $\tau = T - t$ running forward, the reverse-time SDE of Anderson (1982) is
$dx = [g^2 s(x, t) - f(x, t)]\,d\tau + g(t)\,d\bar W_\tau$ and the probability-flow ODE is
$dx/d\tau = \tfrac12 g^2 s(x, t) - f(x, t)$; both carry $p_T$ to $p_{t_0}$. Integration stops at
an early-stopping time $t_0 > 0$, where the score of a learned model is least reliable.

**Which solver, and why.** Diffrax, the kept library, for both. The ODE uses `Tsit5` with
adaptive PID steps: an adaptive high-order solver is where a library earns its keep. For the
reverse SDE, Diffrax's `Euler` with an `UnsafeBrownianPath` (one fresh normal draw per step) and
`ForwardMode` costs what a fused Euler–Maruyama `lax.scan` costs, while a `VirtualBrownianTree`
costs about twice as much (it rebuilds each increment from a tree, which only pays when a path
is evaluated again): `benchmarks/sampling.py` measures all three, and `benchmarks/README.md`
records the figures. So Diffrax is the default (`backend="diffrax"`); `backend="scan"` keeps the
fused scan, with the same law, for comparison. `sample` and `trajectories` share one step grid
and one Brownian path per backend, so `sample` returns the last snapshot of `trajectories` for
the same key.

Every path uses `AbstractSDE.reverse_drift`, so any SDE whose prior can be sampled works here,
nonlinear drifts included.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx

from ._checks import check_time, positive_int
from ._types import Key, Scalar
from .sde import AbstractSDE

METHODS = ("sde", "ode")
BACKENDS = ("scan", "diffrax")


def _reverse(score, sde, *, probability_flow=False):
    r"""The reversed-time velocity $-\text{reverse\_drift}$ on a batch `(n, d)` at time `t`."""

    def velocity(x, t):
        one = lambda xi: sde.reverse_drift(score, xi, t, probability_flow=probability_flow)
        return -jax.vmap(one)(x)

    return velocity


def _check_args(score, sde, n, dim, steps, t0, method, backend):
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}.")
    for name, v in (("n", n), ("dim", dim), ("steps", steps)):
        positive_int(name, v)
    model_dim = getattr(score, "dim", dim)
    if isinstance(model_dim, int) and model_dim != dim:
        raise ValueError(f"dim={dim} but the score model acts on d={model_dim}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    t0 = check_time(t0, sde.T, "t0")
    return t0


def _em_scan(score, sde, x, t0, key, steps: int, save_every: int):
    """Euler–Maruyama from T to t0 on a uniform grid; saves every `save_every` steps."""
    T = sde.T
    dt = (T - t0) / steps
    velocity = _reverse(score, sde)

    def step(x, i):
        t = T - i * dt
        z = jr.normal(jr.fold_in(key, i), x.shape)
        x = x + velocity(x, t) * dt + sde.diffusion(t) * jnp.sqrt(dt) * z
        return x, None

    def block(x, j):
        x, _ = jax.lax.scan(step, x, j * save_every + jnp.arange(save_every))
        return x, x

    x_end, xs = jax.lax.scan(block, x, jnp.arange(steps // save_every))
    return x_end, xs


def _saveat(ts, T, span):
    # Save times in reversed time tau = T - t, clipped so float32 round-off never puts the last
    # one past the span T - t0 (Diffrax rejects saves outside [0, span]).
    if ts is None:
        return dfx.SaveAt(t1=True)
    return dfx.SaveAt(ts=jnp.clip(T - ts, 0.0, span))


def _diffrax_sde(score, sde, x, t0, key, steps: int, brownian: str = "unsafe", ts=None):
    """Euler–Maruyama via `diffrax.diffeqsolve` in reversed time tau = T - t."""
    T = sde.T
    velocity = _reverse(score, sde)

    def drift(tau, y, args):
        return velocity(y, T - tau)

    def diffusion(tau, y, args):
        return lx.DiagonalLinearOperator(sde.diffusion(T - tau) * jnp.ones_like(y))

    span = T - t0
    if brownian == "unsafe":
        bm = dfx.UnsafeBrownianPath(shape=x.shape, key=key)
    else:
        bm = dfx.VirtualBrownianTree(0.0, span, tol=span / steps / 2, shape=x.shape, key=key)
    terms = dfx.MultiTerm(dfx.ODETerm(drift), dfx.ControlTerm(diffusion, bm))
    saveat = _saveat(ts, T, span)
    sol = dfx.diffeqsolve(
        terms, dfx.Euler(), 0.0, span, span / steps, x, saveat=saveat,
        stepsize_controller=dfx.ConstantStepSize(), max_steps=steps + 1,
        adjoint=dfx.ForwardMode() if brownian == "unsafe" else dfx.RecursiveCheckpointAdjoint(),
    )
    return sol.ys


def _pf_ode(score, sde, x, t0, ts=None, rtol=1e-4, atol=1e-4, dt0=None):
    """Probability-flow ODE with Tsit5 and PID step-size control, in reversed time."""
    T = sde.T
    velocity = _reverse(score, sde, probability_flow=True)

    def vf(tau, y, args):
        return velocity(y, T - tau)

    span = T - t0
    saveat = _saveat(ts, T, span)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vf), dfx.Tsit5(), 0.0, span, span / 50 if dt0 is None else dt0, x,
        saveat=saveat, stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        max_steps=16_384, adjoint=dfx.ForwardMode(),
    )
    return sol.ys, sol.stats["num_steps"]


@eqx.filter_jit
def _sample(score, sde, key, t0, n, dim, method, steps, backend):
    pk, nk = jr.split(key)
    x = sde.prior_sample(n, dim, key=pk)
    if method == "ode":
        return _pf_ode(score, sde, x, t0)[0][-1]
    if backend == "diffrax":
        return _diffrax_sde(score, sde, x, t0, nk, steps)[-1]
    return _em_scan(score, sde, x, t0, nk, steps, steps)[0]


def sample(score, sde, n: int, dim: int, *, key: Key, method: str = "sde", steps: int = 500,
           t0: float | Scalar = 1e-3, backend: str = "diffrax"):
    r"""Draw `n` samples by integrating from $t = T$ (the prior) down to $t_0$.

    **Arguments:**

    - `score`: callable `(x, t) -> s` on one point (`ScoreMLP`, `ExactScore`, ...).
    - `sde`: the forward `AbstractSDE`; the reverse process starts from `sde.prior_sample`.
    - `n`, `dim`: number of samples and data dimension.
    - `key`: PRNG key. (Keyword only, as all below.)
    - `method`: `"sde"` (reverse SDE, Euler–Maruyama with `steps` steps) or `"ode"`
      (probability-flow ODE, adaptive Tsit5; `steps` is ignored).
    - `t0`: early-stopping time in $[0, T]$ (may be an array: changing it never recompiles).
      A score that divides by the noise level (a noise-predicting `ScoreMLP`) needs $t_0 > 0$
      and raises at $t_0 = 0$.
    - `backend`: for the reverse SDE, `"diffrax"` (default: `diffeqsolve`, `Euler`,
      `UnsafeBrownianPath`) or `"scan"` (a fused `lax.scan`); same law, same cost.

    **Returns:** samples at $t_0$, shape `(n, dim)`.

    **Raises:** `ValueError` for a non-positive size, an unknown `method`/`backend`, a `t0`
    outside $[0, T]$ or a `dim` the score model does not act on; `TypeError` for an `sde` that
    is not an `AbstractSDE`.
    """
    t0 = _check_args(score, sde, n, dim, steps, t0, method, backend)
    return _sample(score, sde, key, jnp.asarray(t0, dtype=float), n, dim, method, steps, backend)


@eqx.filter_jit
def _trajectories(score, sde, key, t0, n, dim, method, steps, n_saves, backend):
    pk, nk = jr.split(key)
    x = sde.prior_sample(n, dim, key=pk)
    ts = sde.T - (sde.T - t0) * jnp.arange(n_saves + 1) / n_saves
    if method == "ode":
        xs = _pf_ode(score, sde, x, t0, ts=ts)[0]
        return ts, xs
    if backend == "diffrax":
        return ts, _diffrax_sde(score, sde, x, t0, nk, steps, ts=ts)
    _, xs = _em_scan(score, sde, x, t0, nk, steps, steps // n_saves)
    return ts, jnp.concatenate([x[None], xs])


def trajectories(score, sde, n: int, dim: int, *, key: Key, method: str = "sde",
                 steps: int = 500, n_saves: int = 50, t0: float | Scalar = 1e-3,
                 backend: str = "diffrax"):
    r"""Like `sample`, but keeps `n_saves + 1` snapshots from $T$ down to $t_0$ for plotting.

    For the SDE, `steps` must be a multiple of `n_saves` (snapshots fall on solver steps), and
    `backend` is as in `sample`.

    **Returns:** `(ts, xs)`: times, shape `(n_saves + 1,)`, decreasing from $T$ to $t_0$, and
    particles, shape `(n_saves + 1, n, dim)`.
    """
    t0 = _check_args(score, sde, n, dim, steps, t0, method, backend)
    positive_int("n_saves", n_saves)
    if method == "sde" and steps % n_saves:
        raise ValueError(f"steps ({steps}) must be a multiple of n_saves ({n_saves}).")
    return _trajectories(score, sde, key, jnp.asarray(t0, dtype=float), n, dim, method, steps,
                         n_saves, backend)
