r"""GPA throughput: particle-steps per second of `sg.particles.gpa` against a PyTorch eager loop.

The same algorithm on both sides (lipschitz-gradient-flows notes §2.4, addendum B §3.1): the 2-D
mixture of four Gaussians at distance 4 (σ = 0.5, 2000 samples), 2000 particles from
$N(0, 0.5^2 I)$; per step, 3 Adam steps (rate 5e-3, moments reset each step, as the authors'
code) on the Donsker-Varadhan objective $\frac1M\sum\phi(Y_i) - \log\frac1N\sum e^{\phi(X_j)}$,
full batch, each followed by the exact spectral projection of every weight matrix to
$L^{1/4}$ (L = 1; a ReLU MLP 2 → 32 → 32 → 32 → 1); then the Euler move
$Y \leftarrow Y - \Delta t\,\nabla\phi(Y)$ with $\Delta t = 0.5$ and the logged kinetic energy.

**sgmteach**: `gpa(..., steps=S)` after an identical warm-up call (same shapes and static
configuration: the compiled loop is reused, so compilation is excluded), wall time / S.

**PyTorch eager**, written as a PyTorch user would: `nn.Sequential`, `torch.optim.Adam` made
afresh each step, `torch.logsumexp`, the projection by `torch.linalg.matrix_norm(W, ord=2)` under
`torch.no_grad()`, the particle gradient by `torch.autograd.grad(phi(Y).sum(), Y)`; timed with one
thread and PyTorch's default thread count, the faster kept (`_torch.thread_counts`).

Context, not a measured ratio: the authors' TensorFlow notebook (`Learning_gaussian.ipynb`, 200
particles, 500 steps) prints "total time 32.838s" on an Apple M2 (addendum B §3.1 item 5).

The sides alternate over `ROUNDS` rounds; each figure is the median. Prints the load average.
Last line: `speedup_vs_pytorch_eager=<x>`: PyTorch's time per step over sgmteach's (above 1:
sgmteach faster). `--quick` (or `BENCH_QUICK=1`): fewer steps, a smoke run.
"""

import math
import os
import sys
import time

import jax
import jax.random as jr
import numpy as np
import torch
from _torch import time_per_step

import sgmteach as sg
from sgmteach import particles

QUICK = "--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1"
M = N = 2000
WIDTH, DEPTH, CRITIC_STEPS, LR, LIP, DT = 32, 3, 3, 5e-3, 1.0, 0.5
STEPS = 20 if QUICK else 200  # timed steps per round
ROUNDS = 2 if QUICK else 3


class TorchGPA:
    def __init__(self, y0, data):
        torch.manual_seed(0)
        layers, width = [], 2
        for _ in range(DEPTH):
            layers += [torch.nn.Linear(width, WIDTH), torch.nn.ReLU()]
            width = WIDTH
        self.phi = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
        self.linears = [m for m in self.phi if isinstance(m, torch.nn.Linear)]
        self.y = torch.tensor(np.asarray(y0))
        self.x = torch.tensor(np.asarray(data))
        self.project()

    @torch.no_grad()
    def project(self):
        per_layer = LIP ** (1 / len(self.linears))
        for lin in self.linears:
            lin.weight.mul_(per_layer / torch.linalg.matrix_norm(lin.weight, ord=2))

    def objective(self, y):
        fy, fx = self.phi(y)[:, 0], self.phi(self.x)[:, 0]
        return fy.mean() - (torch.logsumexp(fx, 0) - math.log(fx.shape[0]))

    def step(self):
        opt = torch.optim.Adam(self.phi.parameters(), lr=LR)  # moments reset every step
        for _ in range(CRITIC_STEPS):
            opt.zero_grad()
            (-self.objective(self.y)).backward()
            opt.step()
            self.project()
        y = self.y.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.phi(y).sum(), y)
        self.kinetic = 0.5 * float((g**2).sum(1).mean())
        self.y = (self.y - DT * g).detach()


def problem():
    target = sg.ring(4, radius=4.0, std=0.5)
    data = target.sample(N, key=jr.key(1))
    y0 = 0.5 * jr.normal(jr.key(0), (M, 2))
    return y0, data


def time_sgmteach(y0, data):
    kw = dict(lipschitz=LIP, step=DT, steps=STEPS, critic_steps=CRITIC_STEPS, lr=LR,
              width=WIDTH, depth=DEPTH, chunk_size=STEPS, progress=False)

    def run(seed):
        out = particles.gpa(y0, data, key=jr.key(seed), **kw)
        assert out.diverged_at is None
        return out

    run(0)  # compiles; the timed call reuses the loop
    start = time.perf_counter()
    run(1)  # gpa returns NumPy arrays: the work is done when it returns
    return (time.perf_counter() - start) / STEPS


def time_torch(y0, data):
    return time_per_step(lambda: TorchGPA(y0, data), STEPS)


def main():
    print(f"load average {os.getloadavg()}, jax backend {jax.default_backend()}, "
          f"M = N = {M}, {STEPS} steps x {ROUNDS} rounds{' (quick)' if QUICK else ''}")
    y0, data = problem()
    ours, theirs = [], []
    for _ in range(ROUNDS):
        ours.append(time_sgmteach(y0, data))
        theirs.append(time_torch(y0, data))
    a, b = float(np.median(ours)), float(np.median(theirs))
    print(f"sgmteach {1e3 * a:.2f} ms/step ({M / a:.3g} particle-steps/s), PyTorch eager "
          f"{1e3 * b:.2f} ms/step ({M / b:.3g} particle-steps/s)")
    print("context (not measured here): the authors' TensorFlow demo, 200 particles x 500 steps, "
          "32.8 s on an Apple M2, i.e. about 3.0e3 particle-steps/s")
    print(f"speedup_vs_pytorch_eager={b / a:.2f}")


if __name__ == "__main__":
    main()
