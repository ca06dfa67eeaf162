r"""PyTorch baselines shared by the benchmarks: one port of `ScoreMLP`, one reverse-SDE loop.

`sampling.py`, `train_to_quality.py` and `gpu_scale.py` import this module, so all three time
the same network. `TorchScoreMLP(model)` copies the weights of a `sgmteach.ScoreMLP` built with
`sde=VPSDE(..., "linear")` and checks that it computes the same score (`check_copy`);
`to_score_mlp` copies trained PyTorch weights back into a `ScoreMLP`, so that both frameworks'
models are judged by the same sgmteach code; `euler_maruyama` is the reverse-SDE loop. The
PyTorch code is written as a PyTorch user would write it: eager, `torch.no_grad()` for
sampling, scalars as Python floats. `thread_counts`, `with_threads` and `pick_threads` give a
CPU baseline the faster of one thread and PyTorch's default thread count.
"""

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

COPY_ATOL = 1e-4
DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's default: one per core


class TorchScoreMLP(torch.nn.Module):
    r"""`sgmteach.ScoreMLP(d, width, depth, sde=VPSDE(beta_min, beta_max))` in PyTorch.

    The same layers (input $[x, \mathrm{emb}(t)]$, SiLU hidden layers, a linear output) and the
    same noise parameterisation: the score is $-\text{out}/s_t$. The weights are copies of
    `model`'s, checked against it unless `check=False`.

    `forward(x, t)`: `x` of shape `(n, d)`; `t` a Python float (one time for the batch: the
    embedding and $s_t$ are computed once) or a tensor of shape `(n,)`.
    """

    def __init__(self, model: sg.ScoreMLP, *, device="cpu", check: bool = True):
        super().__init__()
        sde = model.sde
        if not isinstance(sde, sg.VPSDE) or sde.schedule != "linear":
            raise ValueError("TorchScoreMLP ports ScoreMLP(..., sde=VPSDE(...)) with the linear "
                             f"schedule only, got sde={sde!r}.")
        self.beta_min, self.beta_max = float(sde.beta_min), float(sde.beta_max)
        self.T, self.embed_T = float(sde.T), float(model.embed.T)
        self.register_buffer("freqs", torch.tensor(np.asarray(model.embed.freqs)))
        layers = []
        for i, lin in enumerate(model.mlp.layers):
            t_lin = torch.nn.Linear(lin.in_features, lin.out_features)
            with torch.no_grad():
                t_lin.weight.copy_(torch.tensor(np.asarray(lin.weight)))
                t_lin.bias.copy_(torch.tensor(np.asarray(lin.bias)))
            layers.append(t_lin)
            if i < len(model.mlp.layers) - 1:
                layers.append(torch.nn.SiLU())
        self.net = torch.nn.Sequential(*layers)
        self.to(device)
        if check:
            check_copy(self, model)

    def beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) * t / self.T

    def integral(self, t):
        """$B(t) = \\int_0^t \\beta$."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2 / self.T

    def marginal(self, t: torch.Tensor):
        """`(m_t, s_t)` for a tensor of times."""
        B = self.integral(t)
        return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))

    def forward(self, x: torch.Tensor, t):
        if isinstance(t, float):
            a = 2 * math.pi * self.freqs * (t / self.embed_T)
            emb = torch.cat([torch.sin(a), torch.cos(a)]).expand(x.shape[0], -1)
            std = math.sqrt(-math.expm1(-self.integral(t)))
            return -self.net(torch.cat([x, emb], -1)) / std
        a = 2 * math.pi * self.freqs * (t[:, None] / self.embed_T)
        h = self.net(torch.cat([x, torch.sin(a), torch.cos(a)], -1))
        return -h / self.marginal(t)[1][:, None]


def check_copy(net: TorchScoreMLP, model: sg.ScoreMLP, atol: float = COPY_ATOL) -> float:
    """Raise unless `net` and `model` give the same score (64 points, one time and many)."""
    dim = model.dim
    x = jr.normal(jr.key(12345), (64, dim))
    ts = jr.uniform(jr.key(54321), (64,), minval=0.01, maxval=1.0) * float(model.sde.T)
    device = net.freqs.device
    tx = torch.tensor(np.asarray(x), device=device)
    with torch.no_grad():
        ours_one = net(tx, 0.3).cpu().numpy()
        ours_many = net(tx, torch.tensor(np.asarray(ts), device=device)).cpu().numpy()
    ref_one = np.asarray(jax.vmap(model, in_axes=(0, None))(x, jnp.asarray(0.3)))
    ref_many = np.asarray(jax.vmap(model)(x, ts))
    gap = max(np.abs(ours_one - ref_one).max(), np.abs(ours_many - ref_many).max())
    if not gap <= atol:
        raise RuntimeError(f"the PyTorch copy of the ScoreMLP differs from sgmteach's by {gap:.2e}"
                           f" (tolerance {atol:g})")
    return float(gap)


def to_score_mlp(net: TorchScoreMLP, template: sg.ScoreMLP) -> sg.ScoreMLP:
    """`template` with `net`'s current weights (the inverse of `TorchScoreMLP(template)`)."""
    linears = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    arrays = []
    for lin in linears:
        arrays += [jnp.asarray(lin.weight.detach().cpu().numpy()),
                   jnp.asarray(lin.bias.detach().cpu().numpy())]
    where = lambda m: [a for layer in m.mlp.layers for a in (layer.weight, layer.bias)]
    return eqx.tree_at(where, template, arrays)


@torch.no_grad()
def euler_maruyama(net: TorchScoreMLP, n: int, *, steps: int, t0: float = 1e-3, seed: int = 0):
    """Euler–Maruyama for the reverse VP SDE from `T` to `t0`, on `net`'s device.

    The same grid as `sgmteach.sample(..., steps=steps)`: $t_i = T - i\\,(T - t_0)/\\text{steps}$.
    Returns the particles at $t_0$, shape `(n, d)`; on CUDA it waits for the device.
    """
    device = net.freqs.device
    dim = net.net[0].in_features - net.freqs.shape[0] * 2
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, dim, device=device, generator=gen)
    dt = (net.T - t0) / steps
    for i in range(steps):
        t = net.T - i * dt
        beta = net.beta(t)
        drift = -0.5 * beta * x
        x = x + (beta * net(x, t) - drift) * dt
        x = x + math.sqrt(beta * dt) * torch.randn(n, dim, device=device, generator=gen)
    if x.is_cuda:
        torch.cuda.synchronize()
    return x


def thread_counts() -> list[int]:
    """The intra-op thread counts a CPU baseline is timed with: 1 and PyTorch's default.

    PyTorch's default (one OpenMP thread per core) slows down many times over once other
    processes load the machine, or right after JAX's own threads have worked, while one thread
    does not; on an idle machine the default can be faster. A user who noticed would pick the
    faster, so the baselines time both and keep the faster.
    """
    return sorted({1, DEFAULT_THREADS})


def time_per_step(make, steps: int, warm_up: int = 3) -> float:
    """Seconds per `step()` of a PyTorch loop, the faster over `thread_counts()`.

    `make()` builds a fresh object with a `step()` method (a training or transport loop); it is
    warmed up for `warm_up` steps, then timed over `steps`.
    """
    best = math.inf
    for k in thread_counts():
        torch.set_num_threads(k)
        loop = make()
        for _ in range(warm_up):
            loop.step()
        start = time.perf_counter()
        for _ in range(steps):
            loop.step()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def with_threads(k: int, fn):
    """`fn` with PyTorch's intra-op thread count set to `k` for each call."""
    def run(*args, **kwargs):
        torch.set_num_threads(k)
        return fn(*args, **kwargs)

    return run


def pick_threads(fn, *, pre=None, candidates=None) -> dict:
    """Set PyTorch's intra-op threads to whichever of `candidates` runs `fn()` fastest.

    For a benchmark whose PyTorch runs are too long to time twice (see `thread_counts`).
    Each candidate is timed as the benchmark will time it: `pre()` (untimed: the JAX work
    that precedes PyTorch in the benchmark's rounds), then `fn()`. Returns `{threads:
    seconds}` (the median of 3 timed calls each, after one untimed call).
    """
    candidates = sorted(thread_counts() if candidates is None else set(candidates))
    timings = {}
    for k in candidates:
        torch.set_num_threads(k)
        fn()
        times = []
        for _ in range(3):
            if pre is not None:
                pre()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        timings[k] = float(np.median(times))
    torch.set_num_threads(min(timings, key=timings.get))
    return timings


def describe_threads(timings: dict) -> str:
    """One line: the thread count chosen by `pick_threads` and what each candidate took."""
    tried = ", ".join(f"{k}: {1e3 * t:.1f} ms" for k, t in timings.items())
    return (f"PyTorch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s) "
            f"(calibration run, threads: time = {tried}; {os.cpu_count()} CPUs)")


def torch_device() -> str:
    """`"cuda"` when JAX runs on a GPU and PyTorch sees one, else `"cpu"`: the same device."""
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
