"""Cost of an equivariant score evaluation against a plain one, for |G| in {1, 4, 8, 16}.

`EquivariantScore(model, CyclicGroup(g))` evaluates `model` on the g rotated copies of every
particle in one `jax.vmap` (no Python loop over the group) and averages the rotated-back outputs,
so its cost should grow about linearly in |G|: the number to read is the ratio to one plain
evaluation of the same batch. Model: `ScoreMLP(2, 128, 3)` with fixed random weights (the cost
does not depend on their values). 4000 particles on CPU, 10^5 on a GPU (`jax.default_backend()`).

Each evaluation is compiled once beforehand (compile time excluded); then the plain and the
equivariant evaluations are timed in interleaved rounds, so load on a shared machine hits all
of them alike, and each figure is the median over the rounds. Last line:
`cost_ratio_at_G8=<x>`.
"""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sgmteach as sg

ORDERS = (1, 4, 8, 16)
ROUNDS = 15


@eqx.filter_jit
def evaluate(score, x, t):
    return jax.vmap(score, in_axes=(0, None))(x, t)


def main():
    backend = jax.default_backend()
    n = 100_000 if backend == "gpu" else 4000
    model = sg.ScoreMLP(2, 128, 3, key=jr.key(0))
    x, t = jr.normal(jr.key(1), (n, 2)), jnp.asarray(0.5)
    sym = sg.symmetry
    scores = {"plain": model} | {g: sym.EquivariantScore(model, sym.CyclicGroup(g)) for g in ORDERS}
    for score in scores.values():  # compile outside the timed rounds
        evaluate(score, x, t).block_until_ready()

    times = {name: [] for name in scores}
    for _ in range(ROUNDS):
        for name, score in scores.items():
            start = time.perf_counter()
            evaluate(score, x, t).block_until_ready()
            times[name].append(time.perf_counter() - start)
    med = {name: float(np.median(v)) for name, v in times.items()}

    print(f"backend {backend}; {n} particles; ScoreMLP(2, 128, 3); median of {ROUNDS} "
          "interleaved rounds")
    print(f"plain evaluation: {1e3 * med['plain']:.2f} ms")
    print(f"{'|G|':>4}{'equivariant ms':>16}{'ratio':>8}{'ratio/|G|':>11}")
    for g in ORDERS:
        ratio = med[g] / med["plain"]
        print(f"{g:>4}{1e3 * med[g]:16.2f}{ratio:8.2f}{ratio / g:11.2f}")
    print(f"cost_ratio_at_G8={med[8] / med['plain']:.2f}")


if __name__ == "__main__":
    main()
