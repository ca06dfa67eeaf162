r"""What NDSM's control variates do to the loss *gradient*'s noise, and what they cost per step.

`sg.nonlinear.ndsm_loss` regresses onto the one-step Euler target $-Z_k/(\sigma_k\sqrt h)$, whose
zero-mean terms make the raw loss's standard deviation grow like $1/h$ with $\lambda = 1$
(`shared/docs/papers/nonlinear-dsm.md` §3.3; with the default weighting $\lambda = \sigma^2h$
it stays near $\sqrt{2d} = 2$ while the controlled loss's shrinks about like $h$). The notes
measure the *loss*'s standard deviation (§4.3); what the optimiser sees is the *gradient*'s.
This script measures both, for every control variate, at $h \in \{10^{-1}, 10^{-2}, 10^{-3}\}$,
and the time per training step of each, in the same run.

**Set-up.** Forward SDE `LangevinSDE(ref, 0.1, 10.0)` with the imbalanced reference
`GaussianMixture.isotropic([0.9, 0.1], [[-2, 0], [2, 0]], 0.4)`. The data, 4096 points, come
from a *different* mixture (weights 1/2, 1/2, means $(0, \pm 2)$, std 0.3), so the chain is not
stationary: its states move from the data towards $\rho$. For each $h$, `euler_paths` runs the
4096 points over $K = 1/h$ steps, and a pool of 65536 chain states $(X_k, t_k = kh)$ is drawn
from them (random path, $k$ spread evenly over $0..K-1$, pool sorted by $k$). A minibatch is
what `train_ndsm` draws: 512 states with stratified $k$, and fresh normals $Z_k$. So the
gradient noise measured here is what training sees, the part from which states were drawn
included (no control variate touches that part; it is the floor under the controlled rows).

**Score model.** `ScoreMLP(2, 128, 3)` (the tutorial's size), from one random init, trained at
each $h$ for 300 steps by `train_ndsm(..., n_steps=1/h, control_variate="plugin")` (its
defaults otherwise: batch 512, lr 1e-2 with warm-up and cosine decay, EMA 0.99; the EMA
weights), so that each $h$ is measured on a model a few hundred steps into training on that
chain. Not the random init: there the mean gradient is large and every estimator's
noise-to-signal ratio small, which says little about training once the loss has come down,
and that is when the noise matters. Not one model for all three $h$ either: the $h = 0.1$
chain differs visibly from the others (see below), and a model trained elsewhere sees a large
mean gradient there.

At $h = 0.1$ the Euler chain of this SDE overshoots late in time: near the reference's
components the drift's rate is about $\beta(t)/(2 \cdot 0.4^2)$, and $h$ times that exceeds 2
(Euler's stability limit) once $\beta > 6.4$, i.e. $t > 0.64$. Its states spread out (largest
$|x|$ about 9, against 3.7 at $h \le 10^{-2}$; printed). NDSM trains on the chain as it is, so
this is part of what $h = 0.1$ means here.

**Variants** (all `weighting="sigma2h"`, the training default):

- `raw`: `control_variate="none"`;
- `plugin`: $s_\theta(\mu_k)$ as the control variate (gradient through both evaluations);
- `neural`: the residual form $s_\theta(\mu_k) + r_\phi(\mu_k)$, `init_control_variate(2)`
  (it starts *equal* to the plug-in one), then trained for `CV_STEPS` steps on `cv_objective`
  with the score model fixed (Adam 1e-3 after clipping at 1, `train_ndsm`'s `cv_lr`), for each
  $h$ separately. $r_\phi$ does not depend on $\theta$ either, so its $\theta$-gradient is the
  plug-in's, bit for bit: training $\phi$ changes the loss's variance, not the gradient's;
- `neural, theta-free`: `residual=False`, $c_\phi(\mu_k)$ alone (the notes' §4.2 form), trained
  the same way. $c_\phi$ does not depend on $\theta$, so its $\theta$-gradient is the raw one:
  the script prints the largest difference, batch by batch, on the same $(X_k, Z_k)$, for
  both pairs (`= raw`, `= plugin` in the bias column).

**Measured**, for each $h$ and variant, on `R` minibatches of 512 drawn from `R` independent keys
(the same keys, hence the same $(X_k, Z_k)$, for every variant: common random numbers):

1. grad std: the gradient of `ndsm_loss` with respect to the score model's parameters
   (`eqx.partition(model, eqx.is_inexact_array)`), flattened; its total standard deviation
   $\sqrt{\sum_j \operatorname{Var}(g_j)}$ across the `R` batches;
2. noise/signal: that over $\|\bar g\|$, the norm of the mean gradient. Every variant has the same
   expected gradient, so $\bar g$ is the mean of raw or plugin, whichever has the smaller grad
   std at that $h$ (the best estimate: the raw one's mean over `R` batches is mostly noise at
   small $h$); its relative standard error is printed;
3. bias check: $\|\bar g_v - \bar g_{\rm ref}\|$ over its standard error (from the per-batch
   differences); its square has mean 1 when the two have the same expectation, so values
   about 1 (2 turns up now and then: seed 1 at $h = 10^{-2}$ gave 2.08, and seven fresh sets
   of keys for the same model 0.76-1.47); a bias would show as a much larger figure;
4. loss std: the standard deviation of the per-sample loss (`ndsm_losses`) over all
   `R` x 512 samples, the notes' quantity;
5. µs/step: one training step, `value_and_grad` of the batch loss, an Adam update (plain
   `optax.adam`: `train_ndsm`'s clipping, schedule and EMA cost the same for every variant),
   the batch drawn from the pool inside the step, as `train_ndsm` does, in a jitted `lax.scan` of
   `SCAN_STEPS` steps (per-call dispatch excluded, as in the shared training loop), divided by
   `SCAN_STEPS`. Compiled once beforehand (compile time excluded), `block_until_ready`; every
   (h, variant) is timed in turn in each of `ROUNDS` interleaved rounds, and the figure is the
   median. `neural + phi step` adds the $\phi$-update on `cv_objective` that `train_ndsm` takes
   at every step with the neural control variate: what that option costs in training.

$h$ is a traced argument and every pool has one shape, so each variant is one compiled program
for all three $h$: the step's cost cannot depend on $h$, and `cost_ratio` pools the rounds of
all $h$.

Last line: `grad_std_reduction_at_h1e-3=<x> cost_ratio=<y>`: the raw grad std / the plug-in's
at $h = 10^{-3}$, and the plug-in's median time per step / the raw one's (3 significant digits).

`--quick` (or `BENCH_QUICK=1`): fewer batches, training steps and rounds, to check that the
script runs; its figures then mean little. At full size about 80 s of CPU time, most of it
compilation: 1m40 wall on this project's 2-core CPU at load average 4-5, 2m20 at 7-8. On a
CPU every figure but the times is the same from run to run (fixed seed).

Run: `.venv/bin/python benchmarks/control_variate.py` (or `make bench`).
"""

import os
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import sgmteach as sg
from sgmteach import nonlinear as nl

QUICK = "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK") == "1"
R, TRAIN_STEPS, CV_STEPS, ROUNDS = (40, 50, 50, 3) if QUICK else (200, 300, 300, 10)
HS = (1e-1, 1e-2, 1e-3)
BATCH = 512
N_DATA = 4096
POOL = 65536
SCAN_STEPS = 10
MAP_BATCH = 20  # minibatches per vmapped chunk of lax.map (memory)
WEIGHTING = "sigma2h"
SEED = 0

# name -> (control_variate, residual, uses a cv_model)
VARIANTS = {
    "raw": ("none", True, False),
    "plugin": ("plugin", True, False),
    "neural": ("neural", True, True),
    "neural, theta-free": ("neural", False, True),
}


def draw_batch(pool_x, pool_t, key):
    """`train_ndsm`'s minibatch: stratified positions in the k-sorted pool, fresh normals."""
    ku, kz = jr.split(key)
    m = pool_x.shape[0]
    u = (jnp.arange(BATCH) + jr.uniform(ku, (BATCH,))) / BATCH
    j = jnp.minimum(jnp.floor(u * m).astype(int), m - 1)
    x = pool_x[j]
    return x, pool_t[j], jr.normal(kz, x.shape, dtype=x.dtype)


def make_pool(sde, data, h, key):
    """`POOL` chain states from `euler_paths` over K = 1/h steps, sorted by k."""
    pk, ik, sk = jr.split(key, 3)
    steps = round(1.0 / h)
    xs, _ = nl.euler_paths(sde, data, steps, key=pk)
    k = jnp.arange(POOL) * steps // POOL
    i = jr.randint(ik, (POOL,), 0, data.shape[0])
    return xs[k, i], k * (sde.T / steps)


def batch_loss(params, static, sde, x, t, h, z, cv_model, variant):
    cv, residual, _ = VARIANTS[variant]
    losses = nl.ndsm_losses(eqx.combine(params, static), sde, x, t, h, z=z, weighting=WEIGHTING,
                            control_variate=cv, cv_model=cv_model, residual=residual)
    return jnp.mean(losses), losses


@eqx.filter_jit
def gradients(params, static, sde, pool_x, pool_t, h, keys, cv_model, variant):
    """Flattened gradients `(R, P)` and per-sample losses `(R, BATCH)`, one row per key."""
    def one(key):
        x, t, z = draw_batch(pool_x, pool_t, key)
        grads, losses = jax.grad(batch_loss, has_aux=True)(params, static, sde, x, t, h, z,
                                                           cv_model, variant)
        return ravel_pytree(grads)[0], losses

    return jax.lax.map(one, keys, batch_size=MAP_BATCH)


CV_ADAM = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))


def cv_step(cv_params, cv_opt, cv_static, model, sde, x, t, h, z, residual):
    def objective(p):
        return nl.cv_objective(eqx.combine(p, cv_static), model, sde, x, t, h, z=z,
                               weighting=WEIGHTING, residual=residual)

    grads = jax.grad(objective)(cv_params)
    updates, cv_opt = CV_ADAM.update(grads, cv_opt, cv_params)
    return eqx.apply_updates(cv_params, updates), cv_opt


@eqx.filter_jit
def train_cv(cv_model, model, sde, pool_x, pool_t, h, key, residual):
    """`CV_STEPS` steps on `cv_objective`, the score model fixed."""
    cv_params, cv_static = eqx.partition(cv_model, eqx.is_inexact_array)

    def step(carry, k):
        x, t, z = draw_batch(pool_x, pool_t, k)
        return cv_step(*carry, cv_static, model, sde, x, t, h, z, residual), None

    (cv_params, _), _ = jax.lax.scan(step, (cv_params, CV_ADAM.init(cv_params)),
                                     jr.split(key, CV_STEPS))
    return eqx.combine(cv_params, cv_static)


ADAM = optax.adam(1e-3)


@eqx.filter_jit
def train_steps(params, opt_state, static, cv_model, sde, pool_x, pool_t, h, key, variant,
                with_phi):
    """`SCAN_STEPS` training steps of `variant` (with the phi-update when `with_phi`)."""
    cv_params, cv_static = (None, None) if cv_model is None else \
        eqx.partition(cv_model, eqx.is_inexact_array)
    cv_opt = None if cv_model is None else CV_ADAM.init(cv_params)

    def step(carry, k):
        params, opt_state, cv_params, cv_opt = carry
        x, t, z = draw_batch(pool_x, pool_t, k)
        cv = None if cv_params is None else eqx.combine(cv_params, cv_static)
        (loss, _), grads = jax.value_and_grad(batch_loss, has_aux=True)(
            params, static, sde, x, t, h, z, cv, variant)
        updates, opt_state = ADAM.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        if with_phi:
            cv_params, cv_opt = cv_step(cv_params, cv_opt, cv_static,
                                        eqx.combine(params, static), sde, x, t, h, z,
                                        VARIANTS[variant][1])
        return (params, opt_state, cv_params, cv_opt), loss

    carry, losses = jax.lax.scan(step, (params, opt_state, cv_params, cv_opt),
                                 jr.split(key, SCAN_STEPS))
    return carry[0], carry[1], losses


def sig3(v):
    return f"{float(v):.3g}"


def main():
    t_start = time.perf_counter()
    print(f"backend {jax.default_backend()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}" + (" (--quick: figures mean little)" if QUICK else ""))
    key = jr.key(SEED)
    dk, mk, tk, pk, ck, gk, sk = jr.split(key, 7)
    ref = sg.GaussianMixture.isotropic(jnp.array([0.9, 0.1]), jnp.array([[-2.0, 0.0],
                                                                         [2.0, 0.0]]), 0.4)
    sde = nl.LangevinSDE(ref, 0.1, 10.0)
    data_law = sg.GaussianMixture.isotropic(jnp.array([0.5, 0.5]),
                                            jnp.array([[0.0, 2.0], [0.0, -2.0]]), 0.3)
    data = data_law.sample(N_DATA, key=dk)
    init = sg.ScoreMLP(2, 128, 3, key=mk)
    n_params = ravel_pytree(eqx.filter(init, eqx.is_inexact_array))[0].size
    print(f"ScoreMLP(2, 128, 3) ({n_params} parameters), trained {TRAIN_STEPS} train_ndsm steps "
          f"(plugin) at each h; R = {R} minibatches of {BATCH}; weighting {WEIGHTING}; neural "
          f"control variates: {CV_STEPS} cv_objective steps at each h")

    models, pools, cvs, stats = {}, {}, {}, {}
    cv_inits = {res: nl.init_control_variate(2, key=ck, residual=res) for res in (True, False)}
    for hi, h in enumerate(HS):
        model, train_losses = nl.train_ndsm(init, sde, data, key=jr.fold_in(tk, hi),
                                            steps=TRAIN_STEPS, n_steps=round(1 / h), paths=1,
                                            control_variate="plugin", progress=False)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        models[h] = params, static
        pool_x, pool_t = make_pool(sde, data, h, jr.fold_in(pk, hi))
        pools[h] = (pool_x, pool_t)
        ha = jnp.asarray(h)
        cvs[h] = {res: train_cv(cv_inits[res], model, sde, pool_x, pool_t, ha,
                                jr.fold_in(ck, hi), res) for res in (True, False)}
        keys = jr.split(jr.fold_in(gk, hi), R)
        for name, (_, res, uses_cv) in VARIANTS.items():
            cv_model = cvs[h][res] if uses_cv else None
            g, losses = gradients(params, static, sde, pool_x, pool_t, ha, keys, cv_model, name)
            stats[h, name] = (np.asarray(g, dtype=np.float64),
                              np.asarray(losses, dtype=np.float64))
        print(f"h = {h:g}: training loss {np.mean(train_losses[:10]):.4g} -> "
              f"{np.mean(train_losses[-10:]):.4g} (first / last 10 steps); chain states' "
              f"largest |x| {float(jnp.abs(pool_x).max()):.1f}")
    t_grads = time.perf_counter() - t_start

    # Timing: every (h, variant) compiled first, then interleaved rounds.
    timed = list(VARIANTS) + ["neural + phi step"]

    def run(h, name, k):
        var = "neural" if name == "neural + phi step" else name
        cv_model = cvs[h][VARIANTS[var][1]] if VARIANTS[var][2] else None
        params, static = models[h]
        out = train_steps(params, ADAM.init(params), static, cv_model, sde, *pools[h],
                          jnp.asarray(h), k, var, name == "neural + phi step")
        jax.block_until_ready(out)

    for h in HS:
        for name in timed:
            run(h, name, sk)
    times = {(h, name): [] for h in HS for name in timed}
    for r in range(ROUNDS):
        for h in HS:
            for name in timed:
                k = jr.fold_in(sk, r)
                start = time.perf_counter()
                run(h, name, k)
                times[h, name].append((time.perf_counter() - start) / SCAN_STEPS)
    us = {hn: 1e6 * float(np.median(v)) for hn, v in times.items()}
    pooled = {name: 1e6 * float(np.median([s for h in HS for s in times[h, name]]))
              for name in timed}

    print(f"\n{'h':>6}  {'variant':<20}{'grad std':>10}{'noise/sig':>11}{'Δmean/se':>10}"
          f"{'loss std':>10}{'µs/step':>9}")
    summary = {}
    for h in HS:
        g_std = {name: float(np.sqrt(stats[h, name][0].var(axis=0, ddof=1).sum()))
                 for name in VARIANTS}
        # neural has plugin's theta-gradient and theta-free raw's (below), so one of two is ref.
        ref_name = min(("raw", "plugin"), key=g_std.get)
        g_ref = stats[h, ref_name][0]
        signal = float(np.linalg.norm(g_ref.mean(axis=0)))
        same = {}
        for name, base in (("neural", "plugin"), ("neural, theta-free", "raw")):
            g, g0 = stats[h, name][0], stats[h, base][0]
            same[name] = base, float(np.abs(g - g0).max() / np.abs(g0).max())
        for name in VARIANTS:
            g, losses = stats[h, name]
            if name == ref_name:
                bias = "ref"
            elif same.get(name, (None, 1.0))[1] < 1e-4:
                bias = "= " + same[name][0]
            else:
                d = g - g_ref
                se = np.sqrt(d.var(axis=0, ddof=1).sum() / R)
                bias = f"{np.linalg.norm(d.mean(axis=0)) / se:.2f}"
            print(f"{h:>6g}  {name:<20}{g_std[name]:10.3g}{g_std[name] / signal:11.3g}"
                  f"{bias:>10}{losses.std(ddof=1):10.3g}{us[h, name]:9.0f}")
        print(f"{'':>6}  {'neural + phi step':<20}{'':>41}{us[h, 'neural + phi step']:9.0f}")
        print(f"{'':>6}  |mean grad| {signal:.3g} (from {ref_name}, relative s.e. "
              f"{g_std[ref_name] / np.sqrt(R) / signal:.2f}); max |grad diff| / max |grad|, "
              "same batches: " + ", ".join(f"{n} vs {b} {v:.1e}" for n, (b, v) in same.items()))
        summary[h] = g_std

    print(f"\nµs/step pooled over h (median of {ROUNDS * len(HS)}): "
          + ", ".join(f"{name} {pooled[name]:.0f}" for name in timed))
    print("time per step / raw: " + ", ".join(f"{name} {pooled[name] / pooled['raw']:.2f}"
                                              for name in timed[1:]))
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; training and "
          f"gradients {t_grads:.0f} s, total {time.perf_counter() - t_start:.0f} s")
    reduction = summary[1e-3]["raw"] / summary[1e-3]["plugin"]
    print(f"grad_std_reduction_at_h1e-3={sig3(reduction)} "
          f"cost_ratio={sig3(pooled['plugin'] / pooled['raw'])}")


if __name__ == "__main__":
    main()
