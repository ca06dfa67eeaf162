r"""W1+W2-proximal generative flows: a potential flow trained against a Lipschitz critic.

Gu, Katsoulakis, Rey-Bellet, Zhang, "Combining Wasserstein-1 and Wasserstein-2 proximals:
robust manifold learning via well-posed generative flows" (2024). The flow $\dot x = v(x, t)$
carries a source $\rho_0$ to $\rho_T$ and minimises (the notes' convention)

$$D^{\Gamma_L}(\rho_T\|\pi) + \lambda\int_0^T\!\!\int\tfrac12|v|^2\,d\rho_t\,dt,$$

with $D^{\Gamma_L}$ the Lipschitz-regularised divergence (the **W1 proximal**: the critic's
Lipschitz bound $L$) and the kinetic energy (the **W2 proximal**, weight $\lambda$). The
optimality system (addendum A §3.1) has $v = -\nabla U/\lambda$ with $U$ solving
$-\partial_t U + \tfrac1{2\lambda}|\nabla U|^2 = 0$, $U(\cdot, T) = \phi^*$, the optimal critic:
trajectories are straight, at speed $|\nabla\phi^*|/\lambda \le L/\lambda$.

What is implemented (the authors' loop, `POT_Flow_GAN.py`, as addendum A §3.3 reads it):

- the velocity is the gradient of a scalar potential, $v = -\nabla_x U_\theta(x, t)$, with the
  factor $1/\lambda$ absorbed in $U_\theta$ (as the authors' CNN script does), so $\lambda = 0$
  (no W2 proximal) is the same model with the kinetic term off;
- the flow is integrated by Diffrax with fixed Euler steps in training (the paper's runs use
  explicit Euler, $T = 1$, $\Delta t = 0.2$), the kinetic energy carried as an extra state and
  the loss differentiated through the whole rollout (the authors' TF script detaches the
  positions in the kinetic term; differentiating through is the math, and B. Zhang's later code);
- the critic ascends `sg.variational_objective` (KL in Donsker-Varadhan form by default; W1 or
  an $\alpha$-divergence) minus the core's one-sided `gradient_penalty` at level $L$ (the
  authors' choice over spectral normalisation); `lipschitz=None` removes the penalty;
- per step, `critic_steps` critic steps then one flow step on
  $\mathbb{E}\phi(x_T) + \lambda\,\mathrm{KE}$, Adam with $\beta = (0.5, 0.9)$.
"""

import functools
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, float_array, positive_int
from .._loop import run_chunked
from .._types import Key, Number
from ..divergences import _objective, check_divergence, gradient_penalty


def _check_weights(kinetic_weight, lipschitz):
    lam = float(kinetic_weight)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"kinetic_weight (the W2 proximal weight lambda) must be a finite "
                         f"number >= 0, got {kinetic_weight!r}.")
    if lipschitz is not None:
        L = float(lipschitz)
        if not np.isfinite(L) or L <= 0:
            raise ValueError(f"lipschitz (the W1 proximal bound L) must be > 0, or None for no "
                             f"W1 proximal, got {lipschitz!r}.")
        lipschitz = L
    return lam, lipschitz


def translated_gaussian_flow(
    m: ArrayLike,
    sigma: Number,
    kinetic_weight: Number,
    lipschitz: Number | None,
    T: Number = 1.0,
) -> Float[Array, " d"]:
    r"""The exact W1+W2 flow from $N(0, \sigma^2 I)$ towards $N(m, \sigma^2 I)$: its displacement.

    The flow translates every particle by the same vector $s^*\hat m$, $\hat m = m/|m|$, at
    constant velocity $s^*\hat m/T$, with ($\lambda$ = `kinetic_weight`, $L$ = `lipschitz`)

    $$s^* = \begin{cases}\dfrac{|m|\,T}{T + \lambda\sigma^2}, & \text{if }
    \dfrac{|m|\lambda}{T + \lambda\sigma^2} \le L,\\[4pt] \dfrac{LT}{\lambda}, &
    \text{otherwise (the speed limit } L/\lambda \text{ binds).}\end{cases}$$

    It minimises $H_{L,\sigma}(|m| - s) + \frac{\lambda}{2T}s^2$, with $H_{L,\sigma}$ the Huber
    function that the Lipschitz-regularised KL of two translated Gaussians is (notes §2.6, our
    derivation); addendum A §3.2 shows that this translation with the linear critic
    $\phi^* = c\cdot x$, $c = \mathrm{clip}_L((s^*\hat m - m)/\sigma^2)$, solves the whole
    optimality system. `lipschitz=None` is $L = \infty$ (KL, no W1 proximal); `kinetic_weight=0`
    reaches the target, $s^* = |m|$. Pure `jnp`: the values may be traced (a slider).

    **Returns:** the displacement $s^*\hat m$, shape `(d,)` (zero when $m = 0$).

    **Raises:** `ValueError` for $\sigma \le 0$, $\lambda < 0$, $L \le 0$ or $T \le 0$ (when the
    values are concrete).
    """
    m = jnp.atleast_1d(float_array(m, "m"))
    if m.ndim != 1:
        raise ValueError(f"m must be a vector (d,), got shape {m.shape}.")
    concrete = not any(isinstance(v, jax.core.Tracer) for v in (sigma, kinetic_weight, T,
                                                                 lipschitz))
    if concrete:
        _check_weights(kinetic_weight, lipschitz)
        for name, v in (("sigma", sigma), ("T", T)):
            if not float(v) > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}.")
    lam, sigma, T = (jnp.asarray(v, m.dtype) for v in (kinetic_weight, sigma, T))
    r = jnp.linalg.norm(m)
    s_free = r * T / (T + lam * sigma**2)
    if lipschitz is None:
        s = s_free
    else:
        L = jnp.asarray(lipschitz, m.dtype)
        binds = r * lam / (T + lam * sigma**2) > L
        s = jnp.where(binds, L * T / jnp.where(lam > 0, lam, 1.0), s_free)
    return s * m / jnp.where(r > 0, r, 1.0)


# ---------------------------------------------------------------------------------------------
# The flow


class Potential(eqx.Module):
    r"""A scalar potential $U_\theta(x, t)$: a tanh MLP on $[x, t/T]$ (the authors' generator).

    **Arguments:** `dim`, `width`, `depth` (hidden layers), `key` (keyword only), `T`.
    """

    mlp: eqx.nn.MLP
    T: Float[Array, ""]
    dim: int = eqx.field(static=True)

    def __init__(self, dim: int, width: int = 32, depth: int = 3, *, key: Key, T: Number = 1.0):
        self.dim = positive_int("dim", dim)
        width, depth = positive_int("width", width), positive_int("depth", depth)
        self.mlp = eqx.nn.MLP(self.dim + 1, "scalar", width, depth, jnp.tanh, key=key)
        self.T = jnp.asarray(T, float)

    def __call__(self, x: Float[Array, " d"], t) -> Float[Array, ""]:
        t = jnp.asarray(t, x.dtype)
        return self.mlp(jnp.concatenate([x, (t / jax.lax.stop_gradient(self.T))[None]]))


def _velocity(potential, x, t):
    return -jax.grad(potential)(x, t)


def _field(t, y, potential):
    x, _ = y
    v = jax.vmap(lambda xi: _velocity(potential, xi, t))(x)
    return v, 0.5 * jnp.sum(v**2, axis=-1)


def _solve(potential, T, x0, steps, solver, saveat, rtol, atol):
    """Integrate (x, kinetic energy) from 0 to T; fixed steps unless the solver is adaptive."""
    adaptive = isinstance(solver, diffrax.AbstractAdaptiveSolver)
    controller = (diffrax.PIDController(rtol=rtol, atol=atol) if adaptive
                  else diffrax.ConstantStepSize())
    y0 = (x0, jnp.zeros(x0.shape[:1], x0.dtype))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_field), solver, 0.0, T, T / steps, y0, args=potential, saveat=saveat,
        stepsize_controller=controller, max_steps=steps if not adaptive else 16 * steps,
    )
    return sol.ys


@eqx.filter_jit
def _push(potential, T, x0, steps, solver, rtol, atol):
    return _solve(potential, T, x0, steps, solver, diffrax.SaveAt(t1=True), rtol, atol)


@eqx.filter_jit
def _paths(potential, T, x0, ts, steps, solver, rtol, atol):
    return _solve(potential, T, x0, steps, solver, diffrax.SaveAt(ts=ts), rtol, atol)


class ProximalFlow(eqx.Module):
    r"""A trained flow $\dot x = -\nabla_x U_\theta(x, t)$ on $[0, T]$.

    - `push(x0)`: the samples at $T$, `(n, d)`; `paths(x0, ts)`: the positions at the times
      `ts`, `(len(ts), n, d)`; `kinetic_energy(x0)`: $\int_0^T\tfrac12|v|^2dt$ per particle.
      Each integrates with Diffrax: by default with the training steps (fixed-step Euler, as
      trained); `steps=` changes the step count, `solver=` takes any Diffrax solver (an adaptive
      one, e.g. `diffrax.Tsit5()`, runs with a PID controller at `rtol`, `atol`).
    - `velocity(x, t)`: $v$ at one point.

    Fields: `potential`, `T`, `steps` (training Euler steps), `kinetic_weight` $\lambda$,
    `lipschitz` $L$ (or `None`), and from training `critic` and `history` (a dict of per-step
    NumPy arrays: `"divergence"` the critic's objective, `"kinetic"` the batch kinetic energy).
    """

    potential: Potential
    T: Float[Array, ""]
    steps: int = eqx.field(static=True)
    kinetic_weight: float = eqx.field(static=True)
    lipschitz: float | None = eqx.field(static=True)
    critic: eqx.Module | None = None
    history: dict | None = None

    @property
    def dim(self) -> int:
        return self.potential.dim

    def velocity(self, x, t):
        return _velocity(self.potential, x, t)

    def _x0(self, x0):
        x0 = float_array(x0, "x0")
        if x0.ndim != 2 or x0.shape[1] != self.dim:
            raise ValueError(f"x0 must have shape (n, d={self.dim}), got {x0.shape}.")
        return check_finite(x0, "x0")

    def _solver(self, steps, solver):
        steps = self.steps if steps is None else positive_int("steps", steps)
        return steps, diffrax.Euler() if solver is None else solver

    def push(self, x0, *, steps: int | None = None, solver=None, rtol=1e-5, atol=1e-5):
        steps, solver = self._solver(steps, solver)
        return _push(self.potential, self.T, self._x0(x0), steps, solver, rtol, atol)[0][0]

    def kinetic_energy(self, x0, *, steps: int | None = None, solver=None, rtol=1e-5,
                       atol=1e-5):
        steps, solver = self._solver(steps, solver)
        return _push(self.potential, self.T, self._x0(x0), steps, solver, rtol, atol)[1][0]

    def paths(self, x0, ts, *, steps: int | None = None, solver=None, rtol=1e-5, atol=1e-5):
        steps, solver = self._solver(steps, solver)
        ts = jnp.asarray(ts, float)
        if ts.ndim != 1 or ts.shape[0] == 0:
            raise ValueError(f"ts must be a non-empty vector of times, got shape {ts.shape}.")
        if bool(jnp.any(ts < 0)) or bool(jnp.any(ts > self.T)) or bool(
                jnp.any(jnp.diff(ts) <= 0)):
            raise ValueError(f"ts must increase within [0, T] = [0, {float(self.T):g}].")
        return _paths(self.potential, self.T, self._x0(x0), ts, steps, solver, rtol, atol)[0]


def straightness(paths: Float[ArrayLike, "k n d"]) -> Float[Array, " n"]:
    r"""Path length over displacement, $\sum_k|x_{k+1} - x_k| / |x_K - x_0|$, per particle.

    1 for a straight path, larger when it bends (the inverse of the notes' straightness index).
    `paths` as `ProximalFlow.paths` returns, `(k, n, d)` with `k >= 2`.
    """
    p = jnp.asarray(paths)
    if p.ndim != 3 or p.shape[0] < 2:
        raise ValueError(f"paths must have shape (k >= 2, n, d), got {p.shape}.")
    length = jnp.sum(jnp.linalg.norm(jnp.diff(p, axis=0), axis=-1), axis=0)
    return length / jnp.linalg.norm(p[-1] - p[0], axis=-1)


# ---------------------------------------------------------------------------------------------
# Training


class _State(NamedTuple):
    potential: eqx.Module
    critic: eqx.Module
    pot_opt: optax.OptState
    critic_opt: optax.OptState


class _FlowStep(eqx.Module):
    """`critic_steps` critic steps, then one flow step."""

    pot_static: eqx.Module
    critic_static: eqx.Module
    source: object  # an (n, d) array or a sampler with .sample(n, *, key)
    data: jax.Array
    T: jax.Array
    kinetic_weight: jax.Array
    lipschitz: jax.Array
    penalty: jax.Array
    alpha: jax.Array
    pot_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    kind: str = eqx.field(static=True)
    constrained: bool = eqx.field(static=True)
    batch: int = eqx.field(static=True)
    n_steps: int = eqx.field(static=True)
    critic_steps: int = eqx.field(static=True)

    def _draw(self, key):
        sk, dk = jr.split(key)
        if isinstance(self.source, jax.Array):
            x0 = self.source[jr.randint(sk, (self.batch,), 0, self.source.shape[0])]
        else:
            x0 = self.source.sample(self.batch, key=sk).astype(self.data.dtype)
        real = self.data[jr.randint(dk, (self.batch,), 0, self.data.shape[0])]
        return x0, real

    def _rollout(self, pparams, x0):
        potential = eqx.combine(pparams, self.pot_static)
        ys = _solve(potential, self.T, x0, self.n_steps, diffrax.Euler(),
                    diffrax.SaveAt(t1=True), 1e-5, 1e-5)
        return ys[0][0], ys[1][0]

    def _critic_step(self, pparams, carry, key):
        cparams, cstate = carry
        dk, pk = jr.split(key)
        x0, real = self._draw(dk)
        fake = jax.lax.stop_gradient(self._rollout(pparams, x0)[0])

        def loss(cparams):
            f = eqx.combine(cparams, self.critic_static)
            value = _objective(jax.vmap(f)(fake), jax.vmap(f)(real), self.kind, self.alpha)
            gp = (gradient_penalty(f, fake, real, pk, self.lipschitz)
                  if self.constrained else 0.0)
            return self.penalty * gp - value, value

        (_, value), grads = jax.value_and_grad(loss, has_aux=True)(cparams)
        updates, cstate = self.critic_opt.update(grads, cstate, cparams)
        return (eqx.apply_updates(cparams, updates), cstate), value

    def __call__(self, state: _State, key):
        ck, gk = jr.split(key)
        (cparams, cstate), values = jax.lax.scan(
            lambda carry, k: self._critic_step(state.potential, carry, k),
            (state.critic, state.critic_opt), jr.split(ck, self.critic_steps),
        )
        critic = eqx.combine(cparams, self.critic_static)
        x0, _ = self._draw(gk)

        def flow_loss(pparams):
            xT, ke = self._rollout(pparams, x0)
            ke = jnp.mean(ke)
            return jnp.mean(jax.vmap(critic)(xT)) + self.kinetic_weight * ke, ke

        (_, ke), grads = jax.value_and_grad(flow_loss, has_aux=True)(state.potential)
        updates, pstate = self.pot_opt.update(grads, state.pot_opt, state.potential)
        new = _State(eqx.apply_updates(state.potential, updates), cparams, pstate, cstate)
        return new, {"divergence": values[-1], "kinetic": ke}


@functools.lru_cache(maxsize=32)
def _adam(lr: float) -> optax.GradientTransformation:
    """Adam with the authors' betas, cached: an Optax transformation is compared by identity, so
    a second run with the same rate (and new proximal weights) reuses the compiled chunk."""
    return optax.adam(lr, b1=0.5, b2=0.9)


def _source(source, d, dtype):
    if hasattr(source, "sample") and not isinstance(source, (np.ndarray, jax.Array)):
        if getattr(source, "dim", d) != d:
            raise ValueError(f"the source has d={source.dim} but the data has d={d}.")
        return source
    source = check_finite(float_array(source, "source"), "source")
    if source.ndim != 2 or source.shape[0] == 0 or source.shape[1] != d:
        raise ValueError(f"source must be a sampler (with .sample(n, key=)) or samples of shape "
                         f"(n, d={d}), got shape {source.shape}.")
    return source.astype(dtype)


def train_w1w2_flow(
    source,
    data: ArrayLike,
    *,
    kinetic_weight: Number,
    lipschitz: Number | None,
    key: Key,
    steps: int = 1000,
    T: Number = 1.0,
    n_steps: int = 5,
    divergence="kl",
    critic_steps: int = 5,
    batch_size: int = 256,
    width: int = 32,
    depth: int = 3,
    lr: Number = 2e-3,
    critic_lr: Number = 2e-3,
    penalty: Number = 100.0,
    chunk_size: int | None = None,
    progress: bool = True,
) -> ProximalFlow:
    r"""Train a W1+W2-proximal flow from `source` to `data` (module docstring).

    **Arguments:**

    - `source`: the source law, a sampler with `sample(n, *, key)` (e.g. `sg.gaussian(...)`,
      fresh draws each step) or samples `(n, d)` (drawn with replacement); `data`: the target
      samples `(n, d)`.
    - `kinetic_weight`: the W2 proximal weight $\lambda \ge 0$ (0: no W2 proximal);
      `lipschitz`: the W1 proximal bound $L > 0$ on the critic, or `None` (no W1 proximal: the
      critic is unconstrained). `key`: PRNG key. (Keyword only, as all below.)
    - `steps`: flow steps (each after `critic_steps` critic steps); `T`, `n_steps`: the horizon
      and the fixed Euler steps of the rollout (the paper's toy runs: 1 and 5).
    - `divergence`: `"kl"` (Donsker-Varadhan, the authors' runs), `"w1"` (needs `lipschitz`) or
      `("alpha", a)`, through `sg.variational_objective`.
    - `batch_size`; the potential's and the critic's `width`, `depth` (tanh potential, SiLU
      critic); `lr`, `critic_lr` (Adam, $\beta = (0.5, 0.9)$; the authors' toy rates,
      1e-4/2e-5 over 25 000 iterations, are raised here for a laptop budget); `penalty`, the
      gradient-penalty weight (100, as the core's critics: at 10 the critic's slope reached
      1.5 L on translated Gaussians, at 100 within 5% of L at the pushed points);
      `chunk_size`, `progress` as `sg.train`. Runs with the same sizes, rates, `divergence`,
      `lipschitz is None` and `chunk_size` share one compiled chunk, whatever `kinetic_weight`
      and `lipschitz` are; the default chunk is `ceil(steps / 20)`, so a new `steps` compiles
      again unless `chunk_size` is fixed.

    **Returns:** a `ProximalFlow`, with `critic` and `history` filled.

    **Raises:** `ValueError` for $\lambda < 0$, $L \le 0$, a non-finite or mis-shaped sample,
    `source` and `data` of different dimensions, `"w1"` without `lipschitz`, or a non-positive
    size or rate.
    """
    lam, L = _check_weights(kinetic_weight, lipschitz)
    kind, alpha = check_divergence(divergence)
    if kind == "w1" and L is None:
        raise ValueError('divergence="w1" needs a Lipschitz bound (lipschitz=...): without it '
                         "the critic's objective is unbounded.")
    data = check_finite(float_array(data, "data"), "data")
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (n, d) with n >= 1, got {data.shape}.")
    d = data.shape[1]
    source = _source(source, d, data.dtype)
    sizes = {k: positive_int(k, v) for k, v in (
        ("steps", steps), ("n_steps", n_steps), ("critic_steps", critic_steps),
        ("batch_size", batch_size), ("width", width), ("depth", depth))}
    for name, v in (("T", T), ("lr", lr), ("critic_lr", critic_lr), ("penalty", penalty)):
        if not float(v) > 0:
            raise ValueError(f"{name} must be > 0, got {v!r}.")

    pk, ck, run_key = jr.split(key, 3)
    dt = data.dtype
    potential = Potential(d, sizes["width"], sizes["depth"], key=pk, T=T)
    critic = eqx.nn.MLP(d, "scalar", sizes["width"], sizes["depth"], jax.nn.silu, key=ck)
    opts = (_adam(float(lr)), _adam(float(critic_lr)))
    (pparams, pstatic), (cparams, cstatic) = (eqx.partition(m, eqx.is_inexact_array)
                                              for m in (potential, critic))
    state = _State(pparams, cparams, opts[0].init(pparams), opts[1].init(cparams))
    arr = lambda v: jnp.asarray(v, dt)  # noqa: E731
    step = _FlowStep(pstatic, cstatic, source, data, arr(T), arr(lam),
                     arr(1.0 if L is None else L), arr(penalty), arr(alpha), opts[0], opts[1],
                     kind, L is not None, sizes["batch_size"], sizes["n_steps"],
                     sizes["critic_steps"])
    state, history = run_chunked(step, state, sizes["steps"], key=run_key, chunk_size=chunk_size,
                                 progress=progress, desc="W1+W2 flow", metric_name="divergence")
    return ProximalFlow(eqx.combine(state.potential, pstatic), arr(T), sizes["n_steps"], lam, L,
                        eqx.combine(state.critic, cstatic), history)
