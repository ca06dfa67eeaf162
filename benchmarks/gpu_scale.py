"""Sample evolution at scale: 10^4, 10^5 and 10^6 particles through a 3x128 MLP score.

Reverse-SDE sampling (`sgmteach.sample`, 500 Euler–Maruyama steps) with `ScoreMLP(2, 128, 3)`.
The weights are a fixed random initialisation: the cost of a step does not depend on their
values, so this measures what a trained model costs. Where torch is installed, the same loop in
PyTorch eager on the same device is timed too. Compile time is excluded (one warm-up run);
each figure is the median of 3 runs.

On a CPU only 10^4 particles run by default (10^6 x 500 steps is about 37 TFLOP); pass `--all`
to force every size. Target on one H100: 10^6 particles x 500 steps in <= 0.6 s.
Last line: `seconds_at_1e6=<x>` (or `seconds_at_1e4=<x>` when the largest size was skipped).
"""

import sys
import time

import jax
import jax.random as jr
import numpy as np

import sgmteach as sg

STEPS = 500


def time_jax(model, sde, n):
    run = lambda k: sg.sample(model, sde, n, 2, key=k, steps=STEPS).block_until_ready()
    run(jr.key(0))
    times = []
    for i in range(3):
        start = time.perf_counter()
        run(jr.key(i + 1))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_torch(model, sde, n):
    try:
        import torch
    except ImportError:
        return None
    device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    lin = [layer for layer in model.mlp.layers]
    layers = []
    for i, layer in enumerate(lin):
        tl = torch.nn.Linear(layer.in_features, layer.out_features)
        tl.weight.data = torch.tensor(np.asarray(layer.weight))
        tl.bias.data = torch.tensor(np.asarray(layer.bias))
        layers.append(tl)
        if i < len(lin) - 1:
            layers.append(torch.nn.SiLU())
    net = torch.nn.Sequential(*layers).to(device)
    freqs = torch.tensor(np.asarray(model.embed.freqs), device=device)
    bmin, bmax = float(sde.beta_min), float(sde.beta_max)

    @torch.no_grad()
    def run(seed):
        g = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(n, 2, device=device, generator=g)
        dt = (1.0 - 1e-3) / STEPS
        for i in range(STEPS):
            t = 1.0 - i * dt
            beta = bmin + (bmax - bmin) * t
            big_b = bmin * t + 0.5 * (bmax - bmin) * t**2
            s = (1 - np.exp(-big_b)) ** 0.5
            a = 2 * np.pi * freqs * t
            emb = torch.cat([torch.sin(a), torch.cos(a)]).expand(n, -1)
            score = -net(torch.cat([x, emb], 1)) / s
            x = x + (beta * score + 0.5 * beta * x) * dt + (beta * dt) ** 0.5 * torch.randn(
                n, 2, device=device, generator=g)
        if device == "cuda":
            torch.cuda.synchronize()
        return x

    run(0)
    times = []
    for i in range(3):
        start = time.perf_counter()
        run(i + 1)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    backend = jax.default_backend()
    sde = sg.VPSDE(0.1, 20.0)
    model = sg.ScoreMLP(2, 128, 3, key=jr.key(0), sde=sde)
    sizes = [10_000, 100_000, 1_000_000]
    if backend == "cpu" and "--all" not in sys.argv:
        sizes = sizes[:1]
        print("CPU backend: 10^5 and 10^6 particles skipped (pass --all to force them)")
    print(f"backend {backend}; {STEPS} reverse-SDE steps; ScoreMLP(2, 128, 3)")
    print(f"{'particles':>10}{'sgmteach s':>12}{'torch s':>10}{'ratio':>8}")
    last = None
    for n in sizes:
        mine = time_jax(model, sde, n)
        theirs = time_torch(model, sde, n)
        ratio = "" if theirs is None else f"{theirs / mine:8.1f}"
        theirs_txt = "n/a" if theirs is None else f"{theirs:.3f}"
        print(f"{n:>10}{mine:12.3f}{theirs_txt:>10}{ratio}")
        last = (n, mine)
    exp = int(np.log10(last[0]))
    print(f"seconds_at_1e{exp}={last[1]:.3f}")


if __name__ == "__main__":
    main()
