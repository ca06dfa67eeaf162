r"""Training score models by denoising score matching, on the shared chunked loop.

`train` writes one optimisation step and runs it with `sgmteach._loop.run_chunked`: jitted
`lax.scan` chunks with a progress bar between them, one compilation per run.

The defaults: Adam with warm-up and cosine decay (`default_optimizer`), stratified times,
$\lambda = s_t^2$ weighting, and an exponential moving average (EMA) of the weights, which is
what `train` returns. The EMA is Optax's, with bias correction: after $k$ steps it is the
average of the $k$ iterates with weights proportional to $\text{decay}^{k-j}$, so the random
initial weights are not part of it (without the correction they would keep weight
$\text{decay}^k$: 37% after 100 steps at decay 0.99). `benchmarks/train_to_quality.py` measures
how fast this recipe reaches a given sample quality.
"""

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from ._checks import check_finite, float_array, positive_int
from ._loop import run_chunked
from ._types import Key
from .losses import WEIGHTINGS, dsm_loss
from .nets import trainable

TIME_SAMPLINGS = ("stratified", "uniform")


class _State(NamedTuple):
    params: eqx.Module
    ema: eqx.Module  # the bias-corrected average, what `train` returns
    opt_state: optax.OptState
    ema_state: optax.OptState


def _sample_times(key, n, t_min, T, how):
    u = jr.uniform(key, (n,))
    if how == "stratified":  # one time in each of n equal strata: same law, lower variance
        u = (jnp.arange(n) + u) / n
    return t_min + (T - t_min) * u


class _DSMStep(eqx.Module):
    """One step of score matching: a batch, a loss, an optimiser step, an EMA step."""

    static: eqx.Module
    sde: eqx.Module
    data: jax.Array
    optimizer: optax.GradientTransformation
    ema: optax.GradientTransformation
    loss_fn: object
    augment: object
    batch_size: int = eqx.field(static=True)
    t_min: float = eqx.field(static=True)
    weighting: str = eqx.field(static=True)
    time_sampling: str = eqx.field(static=True)

    def __call__(self, state: _State, key):
        ik, ak, tk, lk = jr.split(key, 4)
        x0 = self.data[jr.randint(ik, (self.batch_size,), 0, self.data.shape[0])]
        if self.augment is not None:
            x0 = self.augment(x0, key=ak)
        t = _sample_times(tk, self.batch_size, self.t_min, self.sde.T, self.time_sampling)

        def loss_of(params):
            model = eqx.combine(params, self.static)
            return self.loss_fn(model, self.sde, x0, t, key=lk, weighting=self.weighting)

        loss, grads = jax.value_and_grad(loss_of)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = eqx.apply_updates(state.params, updates)
        ema, ema_state = self.ema.update(params, state.ema_state)
        return _State(params, ema, opt_state, ema_state), loss


def training_data(model, data):
    """`data` as a finite float array `(n, d)` whose `d` is the model's `dim`, or `ValueError`.

    The boundary check every score-model trainer shares (`train`, `sg.nonlinear.train_ndsm`).
    """
    data = float_array(data, "data")
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (n, d) with n >= 1, got {data.shape}.")
    data = check_finite(data, "data")
    model_dim = getattr(model, "dim", None)
    if model_dim is None:
        raise ValueError("model must have a `dim` attribute (the data dimension it acts on), "
                         "as ScoreMLP and the symmetrised models do.")
    if model_dim != data.shape[1]:
        raise ValueError(
            f"data has dimension d={data.shape[1]} but the model expects d={model_dim}."
        )
    return data


def initial_state(model, optimizer, ema):
    """`(state, static)`: the trainable part of `model` with fresh optimiser and EMA states.

    Only what `count_params` counts is optimised: a ScoreMLP's time embedding and SDE stay out
    of the optimiser state and the EMA (`nets.trainable`).
    """
    params, static = eqx.partition(model, trainable(model))
    return _State(params, params, optimizer.init(params), ema.init(params)), static


def ema_transform(decay: float) -> optax.GradientTransformation:
    """Optax's bias-corrected EMA of the weights (cached per decay: one compile per config)."""
    if not 0 <= decay < 1:
        raise ValueError(f"ema_decay must lie in [0, 1), got {decay}.")
    return _ema(float(decay))


@functools.lru_cache(maxsize=32)
def _ema(decay: float) -> optax.GradientTransformation:
    return optax.ema(decay, debias=True)


@functools.lru_cache(maxsize=32)
def default_optimizer(steps: int, lr: float = 1e-2, warmup: int | None = None):
    """Adam with linear warm-up and cosine decay to 5% of `lr`, gradients clipped at norm 1.

    Cached: the same arguments return the same object, so a second `train` run with the same
    configuration reuses the compiled training chunk (an Optax transformation is a pair of
    functions, compared by identity).
    """
    warmup = min(max(steps // 20, 1), 200) if warmup is None else warmup
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup, max(steps, warmup + 1), end_value=0.05 * lr
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def train(
    model,
    sde,
    data,
    *,
    key: Key,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-2,
    optimizer: optax.GradientTransformation | None = None,
    ema_decay: float = 0.99,
    t_min: float = 1e-3,
    weighting: str = "sigma2",
    time_sampling: str = "stratified",
    loss_fn=dsm_loss,
    augment=None,
    chunk_size: int | None = None,
    progress: bool = True,
):
    r"""Train a score model by denoising score matching.

    **Arguments:**

    - `model`: an Equinox module `(x, t) -> s` on one point, e.g. `ScoreMLP`.
    - `sde`: the forward `AbstractSDE`.
    - `data`: the training set, shape `(n, d)`; batches are drawn from it with replacement.
      Integer data is promoted to float.
    - `key`: PRNG key. (Keyword only, as all below.)
    - `steps`, `batch_size`: optimisation steps and points per step.
    - `lr`, `optimizer`: peak learning rate of `default_optimizer`, or any Optax optimiser.
    - `ema_decay`: decay of the bias-corrected weight average that is returned (0 returns the
      last iterate).
    - `t_min`: times are drawn in $[t_{\min}, T]$; `time_sampling`: `"stratified"` or `"uniform"`.
    - `weighting`: $\lambda(t)$, see `sgmteach.losses`.
    - `loss_fn`: `loss_fn(model, sde, x0, t, *, key, weighting)`, default `dsm_loss`.
    - `augment`: optional callable `(x0_batch, *, key) -> x0_batch` applied each step
      (data augmentation).
    - `chunk_size`: steps per compiled chunk (default: about 20 bar updates).
    - `progress`: show a `tqdm.auto` progress bar.

    **Returns:** `(model, losses)`: the EMA model (bias-corrected) and the per-step loss, a
    NumPy array `(steps,)`.

    **Raises:** `ValueError` for NaN/inf in `data`, a model without `dim` or whose `dim` does
    not match the data, or a non-positive `steps`/`batch_size`.
    """
    data = training_data(model, data)
    steps, batch_size = positive_int("steps", steps), positive_int("batch_size", batch_size)
    if loss_fn is dsm_loss and weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}.")
    if time_sampling not in TIME_SAMPLINGS:
        raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {time_sampling!r}.")
    if not 0 < t_min < float(sde.T):
        raise ValueError(f"t_min must lie in (0, T), got {t_min}.")
    if not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}.")

    optimizer = default_optimizer(steps, float(lr)) if optimizer is None else optimizer
    ema = _ema(float(ema_decay))
    state, static = initial_state(model, optimizer, ema)
    step = _DSMStep(static, sde, data, optimizer, ema, loss_fn, augment, batch_size,
                    float(t_min), weighting, time_sampling)
    state, losses = run_chunked(step, state, steps, key=key, chunk_size=chunk_size,
                                progress=progress, desc="training", metric_name="loss")
    return eqx.combine(state.ema, static), losses
