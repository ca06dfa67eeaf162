r"""The generative particle algorithm (GPA): particles moved down a Lipschitz discriminator.

Gu, Birmpa, Pantazis, Rey-Bellet, Katsoulakis, "Lipschitz-regularized gradient flows and
generative particle algorithms for high-dimensional scarce data" (SIAM J. Math. Data Sci.).
Particles $Y^{(i)}$ (the generated law $P_n$) follow the Wasserstein gradient flow of
$P \mapsto D_f^{\Gamma_L}(P\|Q)$, the Lipschitz-regularised divergence to the data $Q$:

$$\partial_t P_t = \nabla\cdot(P_t\nabla\phi_t^{L,*}),\qquad
\frac{d}{dt}D_f^{\Gamma_L}(P_t\|Q) = -I_f^{\Gamma_L}(P_t\|Q) = -\int|\nabla\phi_t^{L,*}|^2dP_t,$$

with $\phi^{L,*}$ the optimal $L$-Lipschitz test function (the **discriminator**) and $I$ the
regularised Fisher information. Each step (the authors' loop, as the notes §2.4 and
addendum B §3.1 read their code):

1. **discriminator**: `critic_steps` Adam ascent steps on `sg.variational_objective`
   ($\mathbb{E}_{P_n}\phi - \log\mathbb{E}_Q e^\phi$ for KL, $\mathbb{E}_{P_n}\phi -
   \mathbb{E}_Q f_\alpha^*(\phi)$ for $\alpha$), full batch, warm-started from the previous
   step's weights with the Adam moments reset, each update followed by the projection of
   `lipschitz.project` (exact spectral norm, or the authors' Frobenius);
2. **transport**: $Y_{n+1} = Y_n - \Delta t\,\nabla\phi_n(Y_n)$ (explicit Euler), for the
   training particles and for any "unseen" particles, which the field moves but the
   discriminator never sees (the authors' out-of-sample mode);
3. **record**: the objective (the divergence estimate),
   $I_n = \frac1M\sum_i|\nabla\phi_n(Y_n^{(i)})|^2$ (the authors log $\mathrm{KE} = I/2$),
   $\max_i|\nabla\phi_n|$ (at most $L$ in both norms) and $\max_i|Y_n^{(i)}|$.

**The speed limit.** $|\nabla\phi| \le L$, so a particle moves at most $L\Delta t$ per step:
$\max_i|Y_n^{(i)}| \le \max_i|Y_0^{(i)}| + nL\Delta t$. This is the paper's reading of the
regularisation as a Courant-Friedrichs-Lewy condition (its abstract); `cfl_step` turns it into a
step size. Without the bound (`lipschitz=None`) the discriminator's slope is unbounded where the
particles and the data do not overlap and no fixed step is safe: a run whose particles leave
`escape_radius` or turn non-finite is **stopped** there (the particles keep their last finite
positions, later history entries are NaN, the remaining steps are skipped) and
`GPARun.diverged_at` says when. Unseen particles never stop a run.

**A flat discriminator.** $I_n \to 0$ at convergence, but not only then: a ReLU
discriminator can be flat at every particle (each unit inactive or constant there), and the
flow stalls without having arrived. Judge convergence by a distance to the data, not by
$I_n$ alone.
"""

import functools
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, float_array, positive_int
from .._loop import run_chunked
from .._types import Key, Number
from ..divergences import _objective, check_divergence
from .lipschitz import check_norm, discriminator, project


class GPARun(NamedTuple):
    r"""The result of `gpa`.

    - `particles` `(M, d)` and `unseen` `(K, d)` (or `None`): the final positions.
    - `frames` `(F, M, d)`, `unseen_frames` `(F, K, d)` (or `None`), at the steps
      `frame_steps` `(F,)` (0 first, `steps` last), when `save_every` was given.
    - `history`: per-step NumPy arrays `(steps,)`, each at the positions before that step's
      move: `"divergence"` (the discriminator's objective), `"fisher"` $I_n$, `"kinetic"`
      $I_n/2$ (the authors' KE), `"max_grad"` $\max_i|\nabla\phi_n(Y_n^{(i)})|$, `"radius"`
      $\max_i|Y_n^{(i)}|$; NaN after a stop.
    - `discriminator`: the last discriminator; `diverged_at`: the step at which the run was
      stopped (particles non-finite or beyond the escape radius), or `None`.
    """

    particles: np.ndarray
    unseen: np.ndarray | None
    frames: np.ndarray | None
    unseen_frames: np.ndarray | None
    frame_steps: np.ndarray | None
    history: dict
    discriminator: eqx.Module
    diverged_at: int | None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


class _State(NamedTuple):
    particles: jax.Array
    unseen: jax.Array
    params: eqx.Module
    stopped: jax.Array
    stop_step: jax.Array
    n: jax.Array


class _GPAStep(eqx.Module):
    static: eqx.Module
    data: jax.Array
    step: jax.Array
    lipschitz: jax.Array
    alpha: jax.Array
    escape: jax.Array
    opt: optax.GradientTransformation
    kind: str = eqx.field(static=True)
    constrained: bool = eqx.field(static=True)
    norm: str = eqx.field(static=True)
    critic_steps: int = eqx.field(static=True)

    def _project(self, params):
        if not self.constrained:
            return params
        mlp = project(eqx.combine(params, self.static), self.lipschitz, self.norm)
        return eqx.partition(mlp, eqx.is_inexact_array)[0]

    def _move(self, state: _State):
        y = state.particles

        def loss(params):
            f = eqx.combine(params, self.static)
            return -_objective(jax.vmap(f)(y), jax.vmap(f)(self.data), self.kind, self.alpha)

        def inner(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss)(params)
            updates, opt_state = self.opt.update(grads, opt_state, params)
            return (self._project(eqx.apply_updates(params, updates)), opt_state), None

        # Warm-started weights, fresh Adam moments (the authors reset them every step).
        (params, _), _ = jax.lax.scan(inner, (state.params, self.opt.init(state.params)),
                                      None, length=self.critic_steps)
        f = eqx.combine(params, self.static)
        grad = jax.vmap(jax.grad(f))(y)
        value = -loss(params)
        speed = jnp.linalg.norm(grad, axis=-1)
        new_y = y - self.step * grad
        new_u = state.unseen - self.step * jax.vmap(jax.grad(f))(state.unseen)
        # an unseen particle never stops the run: one that would turn non-finite stays put
        new_u = jnp.where(jnp.all(jnp.isfinite(new_u), axis=-1, keepdims=True), new_u,
                          state.unseen)
        bad = (~jnp.all(jnp.isfinite(new_y)) | ~jnp.isfinite(value)
               | (jnp.max(jnp.linalg.norm(new_y, axis=-1)) > self.escape))
        keep = lambda new, old: jnp.where(bad, old, new)  # noqa: E731
        n = state.n + 1
        new = _State(keep(new_y, y), keep(new_u, state.unseen),
                     jax.tree_util.tree_map(keep, params, state.params), bad,
                     jnp.where(bad, n, state.stop_step), n)
        fisher = jnp.mean(speed**2)
        return new, {"divergence": value, "fisher": fisher, "kinetic": fisher / 2,
                     "max_grad": jnp.max(speed),
                     "radius": jnp.max(jnp.linalg.norm(y, axis=-1))}

    def _stopped(self, state: _State):
        nan = jnp.asarray(jnp.nan, state.particles.dtype)
        names = ("divergence", "fisher", "kinetic", "max_grad", "radius")
        return state._replace(n=state.n + 1), {k: nan for k in names}

    def __call__(self, state: _State, key):
        del key  # full batch: the step is deterministic
        # a stopped run skips its remaining steps (lax.cond runs one branch)
        return jax.lax.cond(state.stopped, lambda s: self._stopped(s), lambda s: self._move(s),
                            state)


@functools.lru_cache(maxsize=32)
def _adam(lr: float) -> optax.GradientTransformation:
    """Adam, cached: an Optax transformation is compared by identity, so a second run with the
    same rate (and a new L, step or alpha) reuses the compiled chunk."""
    return optax.adam(lr)


def _points(x, name, d=None):
    x = check_finite(float_array(x, name), name)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, d) with n >= 1, got {x.shape}.")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} has d={x.shape[1]} but the data has d={d}.")
    return x


def _positive(name, v, what=""):
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0{what}, got {v!r}.") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0{what}, got {v!r}.")
    return v


def cfl_step(lipschitz: Number, length_scale: Number, *, courant: Number = 1.0) -> float:
    r"""The step $\Delta t = C\,\ell/L$ at which one step moves a particle at most $C\ell$.

    The particle form of the CFL condition: with $|\nabla\phi| \le L$ one Euler step moves a
    particle at most $L\Delta t$, so $\Delta t = C\ell/L$ keeps every move within `courant`
    $= C$ times the target's length scale $\ell$ (a component's standard deviation, the
    spacing of its modes). The paper's abstract says the Lipschitz regularisation "corresponds
    to imposing a Courant-Friedrichs-Lewy numerical stability condition"; its concrete
    inequality could not be read, and this rule is the notes' derivation (§2.3), not the
    paper's formula. One exact case (notes §2.3, derived): between translated Gaussians of
    variance $\sigma^2$ the near field contracts at rate $1/\sigma^2$, so Euler is monotone
    for $\Delta t \le \sigma^2$ and stable for $\Delta t < 2\sigma^2$, a second limit the rule
    does not replace.

    **Raises:** `ValueError` unless all three are finite and > 0.
    """
    L = _positive("lipschitz", lipschitz)
    ell = _positive("length_scale", length_scale)
    c = _positive("courant", courant)
    return c * ell / L


def gpa(
    particles: ArrayLike,
    data: ArrayLike,
    *,
    divergence="kl",
    lipschitz: Number | None,
    step: Number,
    steps: int,
    key: Key,
    norm: str = "spectral",
    critic_steps: int = 3,
    lr: Number = 5e-3,
    width: int = 32,
    depth: int = 3,
    unseen: ArrayLike | None = None,
    save_every: int | None = None,
    escape_radius: Number | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> GPARun:
    r"""Transport `particles` towards `data` along the Lipschitz-regularised gradient flow.

    **Arguments:**

    - `particles` `(M, d)`: the source draws, moved; `data` `(N, d)`: the target samples.
    - `divergence`: `"kl"` (Donsker-Varadhan with log-sum-exp, the authors' default),
      `"kl_lt"` (KL in Legendre form, as the authors' heavy-tail code: unstable on heavy tails,
      there to show it) or `("alpha", a)`, $a > 1$ (the heavy-tail paper's $f_\alpha$);
      evaluated by `sg.variational_objective`.
    - `lipschitz`: the bound $L > 0$ of the discriminator, or `None` (no bound: the flow of the
      plain divergence, which diverges on empirical data); `norm`: `"spectral"` (exact, the
      default) or `"frobenius"` (the authors' code: a looser bound at the same $L$, slower
      wherever the layers cannot align to rank one; `lipschitz.py`).
    - `step` $\Delta t > 0$ (see `cfl_step`) and `steps`; `key`: the discriminator's
      initialisation (keyword only, as all here).
    - `critic_steps`, `lr`: discriminator updates per step (Adam, moments reset each step);
      `width`, `depth`: its ReLU MLP (the authors' 3 x 32).
    - `unseen` `(K, d)`: extra particles pushed by the same field, never trained on.
    - `save_every`: keep the positions every so many steps (`frames`); it is also the chunk
      size of the compiled loop. `escape_radius`: the radius beyond which a run counts as
      diverged and stops (default $10\max(\max_j|X_j|, \max_i|Y^{(i)}_0|)$).
    - `chunk_size`, `progress`: as `sg.train`. Runs with the same sizes, `divergence` kind,
      `lipschitz is None`, `norm` and `lr` share one compiled chunk: $L$, $\Delta t$ and
      $\alpha$ are traced values.

    **Returns:** a `GPARun`. A stopped run warns (`RuntimeWarning`) and returns what it reached.

    **Raises:** `ValueError` for $L \le 0$, $\Delta t \le 0$, $\alpha \le 1$, NaN or inf in
    `particles`, `data` or `unseen`, mismatched dimensions, a non-positive size or rate, or an
    unknown `norm` or `divergence`.
    """
    kind, alpha = check_divergence(divergence)
    if kind == "w1":
        raise ValueError('divergence must be "kl", "kl_lt" or ("alpha", a) for a particle '
                         "flow: the W1 flow's discriminator has no unique optimiser to follow.")
    check_norm(norm)
    L = None if lipschitz is None else _positive(
        "lipschitz", lipschitz, " (the discriminator's Lipschitz bound), or None for no bound")
    dt = _positive("step", step)
    steps = positive_int("steps", steps)
    critic_steps = positive_int("critic_steps", critic_steps)
    lr = _positive("lr", lr)
    data = _points(data, "data")
    d = data.shape[1]
    y0 = _points(particles, "particles", d).astype(data.dtype)
    u0 = (jnp.zeros((0, d), data.dtype) if unseen is None
          else _points(unseen, "unseen", d).astype(data.dtype))
    if escape_radius is None:
        escape = 10 * max(float(jnp.max(jnp.linalg.norm(data, axis=-1))),
                          float(jnp.max(jnp.linalg.norm(y0, axis=-1))), 1.0)
    else:
        escape = _positive("escape_radius", escape_radius)
    if save_every is not None:
        save_every = positive_int("save_every", save_every)
        if chunk_size is not None and chunk_size != save_every:
            raise ValueError("give save_every or chunk_size, not both: the frames are kept "
                             "between chunks.")
        chunk_size = min(save_every, steps)

    arr = lambda v: jnp.asarray(v, data.dtype)  # noqa: E731
    mlp = discriminator(d, width, depth, key=key)
    if L is not None:
        mlp = project(mlp, arr(L), norm)
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    fn = _GPAStep(static, data, arr(dt), arr(1.0 if L is None else L), arr(alpha), arr(escape),
                  _adam(lr), kind, L is not None, norm, critic_steps)
    state = _State(y0, u0, params, jnp.asarray(False), jnp.asarray(0, jnp.int32),
                   jnp.asarray(0, jnp.int32))
    frames, uframes, frame_steps = [np.asarray(y0)], [np.asarray(u0)], [0]

    def keep(s, done):
        frames.append(np.asarray(s.particles))
        uframes.append(np.asarray(s.unseen))
        frame_steps.append(done)

    state, history = run_chunked(
        fn, state, steps, key=key, chunk_size=chunk_size, progress=progress, desc="GPA",
        metric_name="divergence", on_chunk=keep if save_every is not None else None)
    stop = int(state.stop_step) if bool(state.stopped) else None
    if stop is not None:
        warnings.warn(f"GPA stopped at step {stop} of {steps}: the particles left the escape "
                      f"radius {escape:.3g} or became non-finite (lipschitz={lipschitz}, "
                      f"step={dt:g}); the run holds the last finite positions.",
                      RuntimeWarning, stacklevel=2)
    saved = save_every is not None
    has_unseen = unseen is not None
    return GPARun(
        np.asarray(state.particles), np.asarray(state.unseen) if has_unseen else None,
        np.stack(frames) if saved else None,
        np.stack(uframes) if saved and has_unseen else None,
        np.asarray(frame_steps) if saved else None,
        history, eqx.combine(state.params, static), stop,
    )


def translated_gaussian_distance(r0: Number, sigma: Number, lipschitz: Number | None,
                                 t: ArrayLike) -> Float[Array, "..."]:
    r"""The exact GPA distance $r(t) = |a(t) - m|$ from $N(a(t), \sigma^2I)$ to $N(m, \sigma^2I)$.

    With the optimal test function of `huber_kl` every particle moves at velocity
    $-\mathrm{clip}_L((a - m)/\sigma^2)$, so the law stays Gaussian and
    $\dot r = -\min(r/\sigma^2, L)$: a linear approach at speed $L$ while $r > L\sigma^2$,
    then exponential at rate $1/\sigma^2$,

    $$r(t) = r_0 - Lt\ \ (t \le t^*),\qquad r(t) = \min(r_0, L\sigma^2)\,e^{-(t - t^*)/\sigma^2},
    \qquad t^* = (r_0 - L\sigma^2)_+/L$$

    (notes §5 N1, our derivation). `lipschitz=None`: $L = \infty$, pure exponential. The
    dissipation identity holds exactly: $\frac{d}{dt}H_{L,\sigma}(r) = -\min(r/\sigma^2, L)^2$.
    """
    r0, s2 = float(r0), _positive("sigma", sigma) ** 2
    if not (np.isfinite(r0) and r0 >= 0):
        raise ValueError(f"r0 (a distance) must be finite and >= 0, got {r0!r}.")
    t = jnp.asarray(t, jnp.result_type(float))
    if np.any(np.asarray(t) < 0):
        raise ValueError("t must be >= 0.")
    if lipschitz is None:
        return r0 * jnp.exp(-t / s2)
    L = _positive("lipschitz", lipschitz)
    t_star = max(r0 - L * s2, 0.0) / L
    return jnp.where(t <= t_star, r0 - L * t, min(r0, L * s2) * jnp.exp(-(t - t_star) / s2))


