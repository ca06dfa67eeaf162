r"""Reverse-SDE sampling: a fused `lax.scan` against Diffrax and a PyTorch eager loop.

One job, two scores: 4000 particles carried by Euler–Maruyama over 500 steps from $T = 1$ to
$t_0 = 10^{-3}$ under `VPSDE(0.1, 20.0)`, with

- the exact score of `ring(8, 4.0, 0.3)` (`ExactScore`: cheap, so solver overhead shows), and
- a `ScoreMLP(2, 128, 3)` at its random initial weights (score-dominated: what a learned model
  costs; its weights do not change the cost).

Samplers: `sgmteach.sample(..., method="sde")` with `backend="scan"` (a fused Euler–Maruyama
`lax.scan`) and with `backend="diffrax"` (`diffeqsolve` with `Euler`, `UnsafeBrownianPath`,
`ForwardMode`); the same Diffrax solve with a `VirtualBrownianTree`; and, for the MLP, a PyTorch
eager Euler–Maruyama loop with the same weights (`torch.no_grad`, default threads). The table
marks whichever backend `sample` uses by default. Every JAX sampler is compiled before timing,
and each timed call ends with `block_until_ready`. The configurations run in turn, `REPEATS`
times, and the table reports medians, so that load from other processes falls on all of them.
Where `jax.default_backend() == "gpu"`, the JAX samplers also run 10^6 particles.

The last line is `speedup_vs_diffrax_sde=<x>`: the median time of the fastest Diffrax
configuration divided by that of the fused scan, on the MLP job (above 1: the scan is faster).
Within about 10% (0.9-1.1) the two cost the same; `sgmteach/sample.py` says which is the default
and why.

Run: `.venv/bin/python benchmarks/sampling.py` (or `make bench`).
"""

import inspect
import math
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import torch

import sgmteach as sg
from sgmteach.sample import _diffrax_sde

N, STEPS, T0 = 4000, 500, 1e-3
N_GPU = 1_000_000
REPEATS = 7
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


class TorchScoreMLP(torch.nn.Module):
    """The same network as `sgmteach.ScoreMLP(2, 128, 3, sde=VPSDE(0.1, 20))`, in PyTorch."""

    def __init__(self, model: sg.ScoreMLP, sde: sg.VPSDE):
        super().__init__()
        self.beta_min, self.beta_max = float(sde.beta_min), float(sde.beta_max)
        self.register_buffer("freqs", torch.tensor(np.asarray(model.embed.freqs)))
        layers = []
        for i, lin in enumerate(model.mlp.layers):
            t_lin = torch.nn.Linear(lin.in_features, lin.out_features)
            t_lin.weight.data = torch.tensor(np.asarray(lin.weight))
            t_lin.bias.data = torch.tensor(np.asarray(lin.bias))
            layers.append(t_lin)
            if i < len(model.mlp.layers) - 1:
                layers.append(torch.nn.SiLU())
        self.net = torch.nn.Sequential(*layers)

    def beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def std(self, t):
        B = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return torch.sqrt(-torch.expm1(-B))

    def forward(self, x, t):
        a = 2 * math.pi * self.freqs * t
        emb = torch.cat([torch.sin(a), torch.cos(a)]).expand(x.shape[0], -1)
        return -self.net(torch.cat([x, emb], -1)) / self.std(t)


@torch.no_grad()
def torch_em(net: TorchScoreMLP, n: int, seed: int):
    """Euler–Maruyama for the reverse VP SDE, written as a PyTorch tutorial would."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=gen)
    dt = (1.0 - T0) / STEPS
    for i in range(STEPS):
        t = torch.tensor(1.0 - i * dt)
        beta = net.beta(t)
        drift = -0.5 * beta * x
        x = x + (beta * net(x, t) - drift) * dt
        x = x + torch.sqrt(beta * dt) * torch.randn(n, 2, generator=gen)
    return x


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
    print(
        f"JAX {jax.__version__} on {jax.default_backend()}, PyTorch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {os.cpu_count()} CPUs, load average {load:.1f}"
    )
    print(f"reverse VP SDE, Euler–Maruyama, {N} particles x {STEPS} steps, median of {REPEATS}")
    sde = sg.VPSDE(0.1, 20.0)
    exact = sg.ExactScore(sg.ring(8, 4.0, 0.3), sde)
    mlp = sg.ScoreMLP(2, 128, 3, key=jr.key(SEED), sde=sde)
    net = TorchScoreMLP(mlp, sde)
    x, t = jr.normal(jr.key(SEED + 2), (64, 2)), jnp.asarray(0.3)
    with torch.no_grad():
        gap = np.abs(net(torch.tensor(np.asarray(x)), torch.tensor(0.3)).numpy()
                     - np.asarray(jax.vmap(mlp, in_axes=(0, None))(x, t))).max()
    if gap > 1e-4:
        raise RuntimeError(f"the PyTorch copy of the MLP differs from sgmteach's by {gap:.2e}")
    diffrax_names = [UNSAFE, TREE]

    results = {}
    for label, score in (("exact score", exact), ("ScoreMLP(2, 128, 3)", mlp)):
        fns = jax_samplers(score, sde, N)
        if score is mlp:
            fns["PyTorch eager Euler–Maruyama"] = lambda key: torch_em(
                net, N, int(jr.randint(key, (), 0, 2**30))
            )
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
        print(f"{label}: fastest Diffrax = {fastest}, {med[fastest] / med[SCAN]:.2f}x the scan")
    mlp_med = results["ScoreMLP(2, 128, 3)"]
    fastest = min(diffrax_names, key=mlp_med.get)
    print(f"speedup_vs_diffrax_sde={mlp_med[fastest] / mlp_med[SCAN]:.2f}")


if __name__ == "__main__":
    main()
