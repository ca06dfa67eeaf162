r"""Reverse-SDE sampling: sgmteach's two backends, a Diffrax variant and a PyTorch eager loop.

One job, two scores: 4000 particles carried by Euler–Maruyama over 500 steps from $T = 1$ to
$t_0 = 10^{-3}$ under `VPSDE(0.1, 20.0)`, with

- the exact score of `ring(8, 4.0, 0.3)` (`ExactScore`: cheap, so solver overhead shows), and
- a `ScoreMLP(2, 128, 3)` at its random initial weights (score-dominated: what a learned model
  costs; its weights do not change the cost).

Samplers: `sgmteach.sample(..., method="sde")` with `backend="diffrax"` (the default:
`diffeqsolve` with `Euler`, `UnsafeBrownianPath`, `ForwardMode`) and with `backend="scan"` (a
fused Euler–Maruyama `lax.scan`); the same Diffrax solve with a `VirtualBrownianTree`; and, for
the MLP, a PyTorch eager Euler–Maruyama loop with the same weights (`benchmarks/_torch.py`,
`torch.no_grad`): on the GPU when JAX runs on one, else on the CPU with one thread and with its
default thread count, both timed (under load the default is many times slower). The table
marks whichever backend `sample` uses by default. Every sampler runs once before timing (JAX's
compilation excluded), and each timed JAX call ends with `block_until_ready`. The
configurations run in turn, `REPEATS` times, and the table reports medians, so that load from
other processes falls on all of them. Where `jax.default_backend() == "gpu"`, the JAX samplers
also run 10^6 particles.

The last line is `diffrax_cost_vs_scan=<x>`: the median time of the fastest Diffrax
configuration divided by that of the fused scan, on the MLP job. Both sides are sgmteach: the
number says what choosing Diffrax for the default costs against the hand-fused scan (1: the
same; above 1: Diffrax is slower; below 1: faster). Within about 10% (0.9-1.1) the two cost the
same; `sgmteach/sample.py` says which is the default and why.

`--quick` (or `BENCH_QUICK=1`): 1000 particles x 100 steps, 3 repeats, to check the script runs.

Run: `.venv/bin/python benchmarks/sampling.py` (or `make bench`).
"""

import inspect
import os
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _torch import TorchScoreMLP, euler_maruyama, thread_counts, torch_device, with_threads

import sgmteach as sg
from sgmteach.sample import _diffrax_sde

QUICK = "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK") == "1"
N, STEPS, REPEATS = (1000, 100, 3) if QUICK else (4000, 500, 7)
T0 = 1e-3
N_GPU = 1_000_000
SEED = 0


@eqx.filter_jit
def _diffrax_sample(score, sde, key, t0, n, brownian):
    # Mirrors sgmteach.sample._sample with backend="diffrax", for any Brownian path.
    pk, nk = jr.split(key)
    x = sde.prior_sample(n, 2, key=pk)
    return _diffrax_sde(score, sde, x, t0, nk, STEPS, brownian=brownian)[-1]


SCAN = 'sample(backend="scan"): fused lax.scan'
UNSAFE = 'sample(backend="diffrax"): UnsafeBrownianPath'
TREE = "Diffrax Euler, VirtualBrownianTree"
DEFAULT = {"scan": SCAN, "diffrax": UNSAFE}[
    inspect.signature(sg.sample).parameters["backend"].default
]


def jax_samplers(score, sde, n):
    t0 = jnp.asarray(T0)
    return {
        SCAN: lambda key: sg.sample(score, sde, n, 2, key=key, steps=STEPS, backend="scan"),
        UNSAFE: lambda key: sg.sample(score, sde, n, 2, key=key, steps=STEPS, backend="diffrax"),
        TREE: lambda key: _diffrax_sample(score, sde, key, t0, n, "tree"),
    }


def time_interleaved(fns: dict, repeats: int) -> dict:
    """Median wall time of each `fn(key)`, running the configurations in turn."""
    times = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            key = jr.fold_in(jr.key(SEED), r)
            start = time.perf_counter()
            jax.block_until_ready(fn(key))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def warm_up(fns: dict) -> None:
    for fn in fns.values():
        jax.block_until_ready(fn(jr.key(SEED + 1)))


def table(title: str, medians: dict) -> None:
    print(f"\n{title}")
    print(f"  {'sampler':<58}{'median s':>9}{'x scan':>8}")
    for name, t in medians.items():
        mark = " (default)" if name == DEFAULT else ""
        print(f"  {name + mark:<58}{t:>9.3f}{t / medians[SCAN]:>8.2f}")


def main() -> None:
    load = os.getloadavg()[0]
    sde = sg.VPSDE(0.1, 20.0)
    exact = sg.ExactScore(sg.ring(8, 4.0, 0.3), sde)
    mlp = sg.ScoreMLP(2, 128, 3, key=jr.key(SEED), sde=sde)
    net = TorchScoreMLP(mlp, device=torch_device())  # checks the copied weights
    print(f"JAX {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f}" + (" (--quick: sizes reduced)" if QUICK else ""))
    print(f"reverse VP SDE, Euler–Maruyama, {N} particles x {STEPS} steps, median of {REPEATS}")
    diffrax_names = [UNSAFE, TREE]

    results = {}
    for label, score in (("exact score", exact), ("ScoreMLP(2, 128, 3)", mlp)):
        fns = jax_samplers(score, sde, N)
        if score is mlp:
            torch_em = lambda key: euler_maruyama(net, N, steps=STEPS, t0=T0,
                                                  seed=int(jr.randint(key, (), 0, 2**30)))
            if net.freqs.device.type == "cpu":  # 1 thread and the default, both timed
                for k in thread_counts():
                    fns[f"PyTorch eager Euler–Maruyama, {k} thread(s)"] = with_threads(k, torch_em)
            else:
                fns[f"PyTorch eager Euler–Maruyama ({net.freqs.device.type})"] = torch_em
        warm_up(fns)
        results[label] = time_interleaved(fns, REPEATS)
        table(f"{label}, {N} particles", results[label])

    if jax.default_backend() == "gpu":
        for label, score in (("exact score", exact), ("ScoreMLP(2, 128, 3)", mlp)):
            fns = jax_samplers(score, sde, N_GPU)
            warm_up(fns)
            table(f"{label}, {N_GPU} particles (GPU)", time_interleaved(fns, REPEATS))
    else:
        print(f"\n(no GPU: the {N_GPU}-particle runs need jax.default_backend() == 'gpu'; skipped)")

    print(f"\nload average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for label, med in results.items():
        fastest = min(diffrax_names, key=med.get)
        print(f"{label}: fastest Diffrax = {fastest}, {med[fastest] / med[SCAN]:.2f}x the "
              "scan's time")
    mlp_med = results["ScoreMLP(2, 128, 3)"]
    torch_best = min((k for k in mlp_med if k.startswith("PyTorch")), key=mlp_med.get)
    print(f"fastest PyTorch = {torch_best}, {mlp_med[torch_best] / mlp_med[SCAN]:.2f}x the "
          "scan's time")
    fastest = min(diffrax_names, key=mlp_med.get)
    print(f"diffrax_cost_vs_scan={mlp_med[fastest] / mlp_med[SCAN]:.2f}")


if __name__ == "__main__":
    main()
