r"""Wall time to sample quality: `sgmteach.train` with its defaults against a PyTorch eager loop.

Target `ring(8, 4.0, 0.3)`, forward SDE `VPSDE(0.1, 20.0)`, one fixed training set of 20,000
points, and the same network on both sides: `ScoreMLP(2, 128, 3)` (Fourier time embedding of
size 32, three hidden layers of 128 SiLU units, output divided by the marginal std $s_t$).

- **sgmteach**: `sgmteach.train(model, sde, data, key=..., steps=S)`, every other argument at
  its default. Its learning-rate schedule is fitted to the budget `S`, so each checkpoint `S`
  is a fresh call; its time is that call's wall time, compilation included.
- **PyTorch eager**, as Song's score-SDE tutorial writes it: batches of 512 drawn from the
  training set, $t \sim U[10^{-3}, 1]$, loss $\|s_t\,s_\theta(x_t, t) + z\|^2$ ($\lambda = s_t^2$),
  `Adam(lr=1e-3)` at a constant rate, no EMA, default threads. One run; its time is the training
  time accumulated up to the checkpoint (batches are indexed in memory; a `DataLoader` would only
  slow it down).

Checkpoints are the same step counts `LADDER` for both, run in alternation (a PyTorch segment,
then an sgmteach call), so that load from other processes falls on both. The clocks stop while
a checkpoint is evaluated.

**Quality.** A model's samples come from `sgmteach.sample` (reverse SDE, Euler–Maruyama, 500
steps, $t_0 = 10^{-3}$); PyTorch weights are copied into a `ScoreMLP` first, so both sides are
judged by the same code with the same keys. One sliced $W_1$ (256 fixed projections) at n = 4000
has a relative spread of about 30%, with a long right tail, so a single draw passes or fails by
luck. The score at a checkpoint is the mean over 8 groups of 4000 samples of the sliced $W_1$
from each group to its own fresh 4000-point target sample, divided by the Monte-Carlo floor (the
mean of `mc_floor` over 64 pairs of 4000-point target samples). To save time, evaluation stops
after 2 groups when their mean exceeds 2.5 (single groups of models scoring 1.1-1.3 reached at
most 2.7 in our runs, so a model near the threshold is not cut short this way). A side has
reached quality at checkpoint `S` when its score is <= 1.3 there and at the next checkpoint; its
time to quality is its time at `S`. A side that never gets there stops at `CAP` steps, or, once
sgmteach has reached quality, when its clock passes `TIME_CAP` times sgmteach's: the printed
speedup is then a lower bound, and says so.

The sgmteach time is the median of three timed calls `train(steps=S)` at the step count that
reached quality (the first, then two more run between later PyTorch segments).

The last line is `speedup_vs_pytorch_eager=<x>`: PyTorch's time to quality over sgmteach's.

Run: `.venv/bin/python benchmarks/train_to_quality.py` (or `make bench`).
"""

import functools
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

SEED = 0
N_DATA = 20_000
N_EVAL, GROUPS, SCREEN_GROUPS, SCREEN = 4000, 8, 2, 2.5
FLOOR_REPEATS = 64
THRESHOLD = 1.3
LADDER = (500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 14000,
          16000, 18000, 20000)
CAP = LADDER[-1]
TIME_CAP = 20.0
JAX_TIMINGS = 3
BATCH, TORCH_LR, T_MIN = 512, 1e-3, 1e-3


# ---------------------------------------------------------------- the PyTorch tutorial loop
class TorchScoreNet(torch.nn.Module):
    """`ScoreMLP(2, 128, 3, sde=VPSDE(0.1, 20))` in PyTorch: returns $h_\\theta(x, t)/s_t$."""

    def __init__(self, sde: sg.VPSDE, width: int = 128, depth: int = 3, embed: int = 32):
        super().__init__()
        self.beta_min, self.beta_max = float(sde.beta_min), float(sde.beta_max)
        freqs = np.geomspace(0.5, 32.0, embed // 2)  # as sgmteach.TimeEmbedding
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32))
        sizes = [2 + embed] + [width] * depth
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [torch.nn.Linear(a, b), torch.nn.SiLU()]
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2))

    def marginal(self, t):
        B = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))

    def forward(self, x, t):
        a = 2 * math.pi * self.freqs * t[:, None]
        h = self.net(torch.cat([x, torch.sin(a), torch.cos(a)], dim=-1))
        return h / self.marginal(t)[1][:, None]


def torch_loss(model: TorchScoreNet, x):
    t = torch.rand(x.shape[0]) * (1.0 - T_MIN) + T_MIN
    z = torch.randn_like(x)
    mean, std = model.marginal(t)
    xt = mean[:, None] * x + std[:, None] * z
    score = model(xt, t)
    return torch.mean(torch.sum((score * std[:, None] + z) ** 2, dim=1))


def torch_train(model, optimizer, data, steps: int):
    for _ in range(steps):
        x = data[torch.randint(0, data.shape[0], (BATCH,))]
        loss = torch_loss(model, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def to_score_mlp(net: TorchScoreNet, template: sg.ScoreMLP) -> sg.ScoreMLP:
    """Copy PyTorch weights into a `ScoreMLP` (whose score is $-\\text{out}/s_t$)."""
    linears = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    model = template
    for i, lin in enumerate(linears):
        sign = -1.0 if i == len(linears) - 1 else 1.0
        w = jnp.asarray(sign * lin.weight.detach().numpy())
        b = jnp.asarray(sign * lin.bias.detach().numpy())
        model = eqx.tree_at(
            lambda m, i=i: (m.mlp.layers[i].weight, m.mlp.layers[i].bias), model, (w, b)
        )
    return model


# ---------------------------------------------------------------- the quality criterion
def quality(model, sde, target, metric, floor: float, idx: int, *, key) -> tuple[float, int]:
    """Mean over groups of sliced W1(group of samples, fresh target sample) / floor."""
    ratios = []
    for g in range(GROUPS):
        sk, rk = jr.split(jr.fold_in(jr.fold_in(key, idx), g))
        x = sg.sample(model, sde, N_EVAL, 2, key=sk)
        ratios.append(metric(x, target.sample(N_EVAL, key=rk)) / floor)
        if g + 1 == SCREEN_GROUPS and np.mean(ratios) > SCREEN:
            break
    return float(np.mean(ratios)), len(ratios)


class Side:
    """One contender's checkpoints: (steps, score, time) and when it reached quality."""

    def __init__(self, name: str):
        self.name, self.history, self.stopped = name, [], False

    def reached(self):
        """`(steps, time)` of the first checkpoint that passes twice running, or None."""
        for (s, q, t), (_, q_next, _) in zip(self.history[:-1], self.history[1:], strict=True):
            if q <= THRESHOLD and q_next <= THRESHOLD:
                return s, t
        return None

    @property
    def done(self) -> bool:
        return self.stopped or self.reached() is not None


def main() -> None:
    print(
        f"JAX {jax.__version__} ({jax.default_backend()}), PyTorch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    data_key, init_key, train_key, floor_key, eval_key, proj_key = jr.split(jr.key(SEED), 6)
    target, sde = sg.ring(8, 4.0, 0.3), sg.VPSDE(0.1, 20.0)
    data = target.sample(N_DATA, key=data_key)
    metric = functools.partial(sg.sliced_wasserstein, key=proj_key)
    floor = sg.mc_floor(metric, target, N_EVAL, key=floor_key, repeats=FLOOR_REPEATS)
    print(f"sliced W1 floor at n={N_EVAL}: {floor}; quality: mean of {GROUPS} groups "
          f"<= {THRESHOLD} x floor at two checkpoints running")
    model0 = sg.ScoreMLP(2, 128, 3, key=init_key, sde=sde)
    judge = functools.partial(quality, sde=sde, target=target, metric=metric, floor=floor.mean,
                              key=eval_key)

    torch.manual_seed(SEED)
    torch_data = torch.tensor(np.asarray(data))
    net = TorchScoreNet(sde)
    optimizer = torch.optim.Adam(net.parameters(), lr=TORCH_LR)
    # Warm-ups (untimed): JAX's eager ops and PyTorch's first allocations.
    sg.train(model0, sde, data, key=train_key, steps=2, progress=False)
    scratch = TorchScoreNet(sde)
    torch_train(scratch, torch.optim.Adam(scratch.parameters()), torch_data, 5)

    ours, theirs = Side("sgmteach.train (defaults)"), Side("PyTorch eager (tutorial)")
    jax_times: list[float] = []
    torch_clock, torch_steps = 0.0, 0
    print(f"{'steps':>6} | {'sgmteach: W1/floor':>19} {'time s':>7} | "
          f"{'PyTorch: W1/floor':>18} {'time s':>7}")
    for idx, steps in enumerate(LADDER):
        row = f"{steps:>6} |"
        if not theirs.done:
            start = time.perf_counter()
            torch_train(net, optimizer, torch_data, steps - torch_steps)
            torch_clock += time.perf_counter() - start
            torch_steps = steps
        if not ours.done:
            start = time.perf_counter()
            model, _ = sg.train(model0, sde, data, key=train_key, steps=steps, progress=False)
            jax.block_until_ready(model)
            elapsed = time.perf_counter() - start
            q, g = judge(model, idx=idx)
            ours.history.append((steps, q, elapsed))
            row += f" {q:>13.2f} ({g}g) {elapsed:>7.2f} |"
        else:
            if len(jax_times) < JAX_TIMINGS:  # re-time the winning budget between segments
                start = time.perf_counter()
                jax.block_until_ready(sg.train(model0, sde, data, key=train_key,
                                               steps=ours.reached()[0], progress=False))
                jax_times.append(time.perf_counter() - start)
            row += f" {'(done)':>19} {'':>7} |"
        if ours.reached() and not jax_times:
            jax_times.append(ours.reached()[1])
        if not theirs.done:
            q, g = judge(to_score_mlp(net, model0), idx=idx)
            theirs.history.append((steps, q, torch_clock))
            row += f" {q:>12.2f} ({g}g) {torch_clock:>7.2f}"
        else:
            row += f" {'(done)':>18}"
        print(row, flush=True)
        if ours.reached() and not theirs.done and torch_clock > TIME_CAP * np.median(jax_times):
            theirs.stopped = True
            print(f"PyTorch stopped: its clock passed {TIME_CAP:g}x sgmteach's time to quality.")
        if ours.done and theirs.done:
            break
    while ours.reached() and len(jax_times) < JAX_TIMINGS:
        start = time.perf_counter()
        jax.block_until_ready(sg.train(model0, sde, data, key=train_key,
                                       steps=ours.reached()[0], progress=False))
        jax_times.append(time.perf_counter() - start)

    def summary(side: Side, t_override=None):
        hit = side.reached()
        if hit is not None:
            t = hit[1] if t_override is None else t_override
            print(f"{side.name}: quality at {hit[0]} steps, {t:.2f} s of training")
            return t, True
        steps, _, t = side.history[-1]
        print(f"{side.name}: NOT at quality after {steps} steps ({t:.2f} s of training)")
        return t, False

    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
          + (" (oversubscribed: PyTorch's default OpenMP threads slow down sharply)"
             if os.getloadavg()[0] > (os.cpu_count() or 1) else ""))
    if jax_times:
        print(f"sgmteach timings at that budget: {', '.join(f'{t:.2f}' for t in jax_times)} s "
              "(median used)")
    t_ours, ok_ours = summary(ours, float(np.median(jax_times)) if jax_times else None)
    t_theirs, ok_theirs = summary(theirs)
    speedup = t_theirs / t_ours
    if ok_ours and not ok_theirs:
        print(f"PyTorch never reached quality: the speedup {speedup:.2f} is a lower bound")
    elif not ok_ours:
        print("sgmteach never reached quality: the speedup compares times to the cap")
    print(f"speedup_vs_pytorch_eager={speedup:.2f}")


if __name__ == "__main__":
    main()
