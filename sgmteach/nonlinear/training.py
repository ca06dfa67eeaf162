r"""Training score models by nonlinear DSM, on the shared chunked loop (`sgmteach._loop`).

The forward chain does not depend on $\theta$, so it is simulated once: a bank of Euler paths
(`euler_paths`) from the data. Each step draws (path, $k$) pairs from the bank, fresh normals
$Z_k$ for the step from $X_k$, and takes an optimiser step on `ndsm_loss`. Fresh normals are
exact: given $X_k$ the chain's next state is $\mu_k + \sigma_k\sqrt h Z_k$ whatever $Z_k$ was
stored, so the bank only has to hold the states. With the neural control variate, each step
also takes one step on `cv_objective` (variance minimisation, score model frozen): the
alternation of the notes (§4.2).
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from .._checks import positive_int
from .._loop import run_chunked
from .._types import Key
from ..sde import AbstractSDE
from ..train import _State, default_optimizer, ema_transform, initial_state, training_data
from .langevin import euler_paths
from .losses import CONTROL_VARIATES, NDSM_WEIGHTINGS, cv_objective, ndsm_constant, ndsm_losses


class _CVState(NamedTuple):
    params: eqx.Module
    opt_state: optax.OptState


class _NDSMStep(eqx.Module):
    static: eqx.Module
    sde: AbstractSDE
    bank: jax.Array  # (K, m, d): chain states X_0 .. X_{K-1}
    optimizer: optax.GradientTransformation
    ema: optax.GradientTransformation
    cv_optimizer: optax.GradientTransformation | None
    cv_static: eqx.Module | None
    batch_size: int = eqx.field(static=True)
    weighting: str = eqx.field(static=True)
    control_variate: str = eqx.field(static=True)
    residual: bool = eqx.field(static=True)

    def __call__(self, state, key):
        score_state, cv_state = state
        K, m, _ = self.bank.shape
        h = self.sde.T / K
        kk, ik, zk = jr.split(key, 3)
        # Stratified chain indices: the same law as uniform k, lower variance across k.
        u = (jnp.arange(self.batch_size) + jr.uniform(kk, (self.batch_size,))) / self.batch_size
        k = jnp.minimum(jnp.floor(u * K).astype(int), K - 1)
        x = self.bank[k, jr.randint(ik, (self.batch_size,), 0, m)]
        t = k * h
        z = jr.normal(zk, x.shape, dtype=x.dtype)
        cv_model = None if cv_state is None else eqx.combine(cv_state.params, self.cv_static)

        def loss_of(params):
            model = eqx.combine(params, self.static)
            return jnp.mean(ndsm_losses(model, self.sde, x, t, h, z=z, weighting=self.weighting,
                                        control_variate=self.control_variate,
                                        cv_model=cv_model, residual=self.residual))

        loss, grads = jax.value_and_grad(loss_of)(score_state.params)
        updates, opt_state = self.optimizer.update(grads, score_state.opt_state,
                                                   score_state.params)
        params = eqx.apply_updates(score_state.params, updates)
        ema, ema_state = self.ema.update(params, score_state.ema_state)
        if cv_state is not None:
            model = eqx.combine(params, self.static)

            def cv_loss_of(cv_params):
                return cv_objective(eqx.combine(cv_params, self.cv_static), model, self.sde, x,
                                    t, h, z=z, weighting=self.weighting, residual=self.residual)

            cv_grads = jax.grad(cv_loss_of)(cv_state.params)
            cv_updates, cv_opt = self.cv_optimizer.update(cv_grads, cv_state.opt_state,
                                                          cv_state.params)
            cv_state = _CVState(eqx.apply_updates(cv_state.params, cv_updates), cv_opt)
        if self.control_variate != "none":  # report what the raw loss estimates
            loss = loss + jnp.mean(ndsm_constant(self.sde, t, h, x.shape[1],
                                                 weighting=self.weighting))
        return ((_State(params, ema, opt_state, ema_state), cv_state), loss)


def train_ndsm(
    model,
    sde: AbstractSDE,
    data,
    *,
    key: Key,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-2,
    optimizer: optax.GradientTransformation | None = None,
    ema_decay: float = 0.99,
    n_steps: int = 100,
    paths: int = 4,
    weighting: str = "sigma2h",
    control_variate: str = "plugin",
    cv_model=None,
    cv_lr: float = 1e-3,
    residual: bool = True,
    chunk_size: int | None = None,
    progress: bool = True,
):
    r"""Train a score model by nonlinear denoising score matching on the SDE's Euler chain.

    **Arguments:**

    - `model`: an Equinox module `(x, t) -> s` on one point with a `dim`, e.g.
      `ScoreMLP(d, key=...)` (a plain score: the noise parameterisation needs a linear SDE).
    - `sde`: any `AbstractSDE`, e.g. `LangevinSDE`.
    - `data`: training points `(n, d)`; `key`: PRNG key. (Keyword only, as all below.)
    - `steps`, `batch_size`, `lr`, `optimizer`, `ema_decay`: as in `sg.train`.
    - `n_steps`: Euler steps $K$ of the chain ($h = T/K$); `paths`: paths simulated per data
      point for the bank.
    - `weighting`: `"sigma2h"` or `"none"`; `control_variate`: `"none"`, `"plugin"` (default)
      or `"neural"`; `cv_model`, `cv_lr`, `residual`: the neural control variate's network
      (default `init_control_variate(d, ...)`), its Adam learning rate and its form.
    - `chunk_size`, `progress`: as in `sg.train`.

    **Returns:** `(model, losses)`, or `(model, losses, cv_model)` with `"neural"`: the EMA
    model and each step's batch loss, a NumPy array `(steps,)`. Controlled losses are reported
    with `ndsm_constant` added back, so every control variate's curve estimates the same number
    as the raw loss.

    **Raises:** `ValueError` for bad data (as `sg.train`), non-positive counts, or an unknown
    weighting or control variate.
    """
    from .losses import init_control_variate

    data = training_data(model, data)
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}.")
    steps, batch_size = positive_int("steps", steps), positive_int("batch_size", batch_size)
    n_steps, paths = positive_int("n_steps", n_steps), positive_int("paths", paths)
    if weighting not in NDSM_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {NDSM_WEIGHTINGS}, got {weighting!r}.")
    if control_variate not in CONTROL_VARIATES:
        raise ValueError(f"control_variate must be one of {CONTROL_VARIATES}, got "
                         f"{control_variate!r}.")
    bank_key, cv_key, run_key = jr.split(key, 3)
    xs, _ = euler_paths(sde, jnp.repeat(data, paths, axis=0), n_steps, key=bank_key)
    optimizer = default_optimizer(steps, float(lr)) if optimizer is None else optimizer
    ema = ema_transform(ema_decay)
    score_state, static = initial_state(model, optimizer, ema)
    cv_state = cv_static = cv_optimizer = None
    if control_variate == "neural":
        if cv_model is None:
            cv_model = init_control_variate(data.shape[1], key=cv_key, residual=residual)
        cv_optimizer = _cv_adam(float(cv_lr))
        cv_params, cv_static = eqx.partition(cv_model, eqx.is_inexact_array)
        cv_state = _CVState(cv_params, cv_optimizer.init(cv_params))
    step = _NDSMStep(static, sde, xs[:-1], optimizer, ema, cv_optimizer, cv_static, batch_size,
                     weighting, control_variate, bool(residual))
    (score_state, cv_state), losses = run_chunked(
        step, (score_state, cv_state), steps, key=run_key, chunk_size=chunk_size,
        progress=progress, desc="training (NDSM)", metric_name="loss")
    trained = eqx.combine(score_state.ema, static)
    if cv_state is None:
        return trained, losses
    return trained, losses, eqx.combine(cv_state.params, cv_static)


_CV_ADAMS: dict = {}


def _cv_adam(lr: float) -> optax.GradientTransformation:
    # One object per rate, so a second run with the same configuration reuses the compile.
    if lr not in _CV_ADAMS:
        _CV_ADAMS[lr] = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    return _CV_ADAMS[lr]
