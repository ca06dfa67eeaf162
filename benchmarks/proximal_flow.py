r"""Time per training step of `sg.flows.train_w1w2_flow` against a PyTorch eager loop.

**The job** (the authors' loop, `POT_Flow_GAN.py`, at the laptop sizes of tutorial 07): a
potential $U_\theta(x, t)$ (tanh MLP on $[x, t/T]$, 3 hidden layers of 32), velocity
$v = -\nabla_x U_\theta$, rolled out by 5 explicit Euler steps on $[0, 1]$ with the kinetic
energy carried along; a critic $\phi$ (SiLU MLP, 3 x 32). One training step = 5 critic steps
(ascent on the Donsker-Varadhan objective
$\mathbb{E}_{\text{gen}}\phi - \log\mathbb{E}_{\text{data}} e^\phi$ minus 100 times the
one-sided gradient penalty at $L = 1$ on random interpolates, each on a
fresh rollout of a fresh source batch) and 1 flow step (descent on
$\mathbb{E}\phi(x_T) + \lambda\,\mathrm{KE}$, $\lambda = 0.5$, gradient through the rollout);
Adam $\beta = (0.5, 0.9)$, rates 2e-3. Source $N(0, I)$, target $N((4, 0, ...), I)$, batch 256,
$d = 2$ (and $d = 7$).

**sgmteach**: `train_w1w2_flow(..., steps=S)` after an identical warm-up call (same shapes and
static configuration: the compiled chunk is reused, so compilation is excluded), wall time / S.

**PyTorch eager**, written as a PyTorch user would: `nn.Sequential` networks, the velocity by
`torch.autograd.grad(U.sum(), x, create_graph=True)`, the penalty's gradient likewise,
`torch.optim.Adam(betas=(0.5, 0.9))`, the same step structure and sizes; timed with one
thread and PyTorch's default thread count, the faster kept (`_torch.thread_counts`).

The sides alternate over `ROUNDS` rounds; each figure is the median. Prints the load average.
Last line: `speedup_vs_pytorch_eager=<x>` at $d = 2$: PyTorch's time per step over
sgmteach's (above 1: sgmteach faster). `--quick` (or `BENCH_QUICK=1`): fewer steps, a smoke run.
"""

import math
import os
import sys
import time

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import torch
from _torch import time_per_step

import sgmteach as sg
from sgmteach import flows

QUICK = "--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1"
BATCH, WIDTH, DEPTH, N_EULER, CRITIC_STEPS = 256, 32, 3, 5, 5
LAM, LIP, PENALTY, LR = 0.5, 1.0, 100.0, 2e-3
STEPS = 20 if QUICK else 100  # timed training steps per round
ROUNDS = 2 if QUICK else 3


def mlp(d_in, act):
    layers, width = [], d_in
    for _ in range(DEPTH):
        layers += [torch.nn.Linear(width, WIDTH), act()]
        width = WIDTH
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))


class TorchFlow:
    def __init__(self, d, data):
        torch.manual_seed(0)
        self.d, self.data = d, torch.tensor(np.asarray(data))
        self.U, self.phi = mlp(d + 1, torch.nn.Tanh), mlp(d, torch.nn.SiLU)
        self.opt_u = torch.optim.Adam(self.U.parameters(), lr=LR, betas=(0.5, 0.9))
        self.opt_c = torch.optim.Adam(self.phi.parameters(), lr=LR, betas=(0.5, 0.9))
        self.mean = torch.zeros(d)
        self.mean[0] = 4.0

    def velocity(self, x, t, create_graph):
        if not x.requires_grad:
            x = x.requires_grad_(True)
        tt = torch.full((x.shape[0], 1), t)
        u = self.U(torch.cat([x, tt], 1)).sum()
        (g,) = torch.autograd.grad(u, x, create_graph=create_graph)
        return -g

    def rollout(self, x, create_graph):
        dt, ke = 1.0 / N_EULER, torch.zeros(x.shape[0])
        for k in range(N_EULER):
            v = self.velocity(x, k * dt, create_graph)
            ke = ke + dt * 0.5 * (v**2).sum(1)
            x = x + dt * v
        return x, ke

    def batch(self):
        x0 = torch.randn(BATCH, self.d)
        real = self.data[torch.randint(0, self.data.shape[0], (BATCH,))]
        return x0, real

    def step(self):
        for _ in range(CRITIC_STEPS):
            x0, real = self.batch()
            fake = self.rollout(x0, create_graph=False)[0].detach()
            fx, fy = self.phi(fake)[:, 0], self.phi(real)[:, 0]
            dv = fx.mean() - (torch.logsumexp(fy, 0) - math.log(BATCH))
            u = torch.rand(BATCH, 1)
            xi = (u * fake + (1 - u) * real).requires_grad_(True)
            (g,) = torch.autograd.grad(self.phi(xi).sum(), xi, create_graph=True)
            gp = (torch.clamp(g.norm(dim=1) - LIP, min=0.0) ** 2).mean()
            self.opt_c.zero_grad()
            (PENALTY * gp - dv).backward()
            self.opt_c.step()
        x0, _ = self.batch()
        xT, ke = self.rollout(x0, create_graph=True)
        loss = self.phi(xT).mean() + LAM * ke.mean()
        self.opt_u.zero_grad()
        loss.backward()
        self.opt_u.step()


def time_sgmteach(d, data):
    source = sg.gaussian(jnp.zeros(d), jnp.eye(d))
    kw = dict(kinetic_weight=LAM, lipschitz=LIP, steps=STEPS, n_steps=N_EULER,
              critic_steps=CRITIC_STEPS, batch_size=BATCH, width=WIDTH, depth=DEPTH, lr=LR,
              critic_lr=LR, penalty=PENALTY, chunk_size=STEPS, progress=False)

    def run(seed):
        flow = flows.train_w1w2_flow(source, data, key=jr.key(seed), **kw)
        flow.potential.mlp.layers[0].weight.block_until_ready()
        return flow

    run(0)  # compiles; the timed calls reuse the chunk
    start = time.perf_counter()
    run(1)
    return (time.perf_counter() - start) / STEPS


def time_torch(d, data):
    return time_per_step(lambda: TorchFlow(d, data), STEPS)


def main():
    print(f"load average {os.getloadavg()}, jax backend {jax_backend()}, "
          f"{STEPS} steps x {ROUNDS} rounds{' (quick)' if QUICK else ''}")
    ratios = {}
    for d in (2, 7):
        mean = jnp.zeros(d).at[0].set(4.0)
        data = sg.gaussian(mean, jnp.eye(d)).sample(4000, key=jr.key(1))
        ours, theirs = [], []
        for _ in range(ROUNDS):
            ours.append(time_sgmteach(d, data))
            theirs.append(time_torch(d, data))
        a, b = float(np.median(ours)), float(np.median(theirs))
        ratios[d] = b / a
        print(f"d = {d}: sgmteach {1e3 * a:.2f} ms/step, PyTorch eager {1e3 * b:.2f} ms/step, "
              f"ratio {b / a:.2f}")
    print(f"speedup_at_d7={ratios[7]:.2f}")
    print(f"speedup_vs_pytorch_eager={ratios[2]:.2f}")


def jax_backend():
    import jax

    return jax.default_backend()


if __name__ == "__main__":
    main()
