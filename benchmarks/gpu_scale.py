"""Sample evolution at scale: 10^4, 10^5 and 10^6 particles through a 3x128 MLP score.

Reverse-SDE sampling (`sgmteach.sample`, its default backend, 500 Euler–Maruyama steps) with
`ScoreMLP(2, 128, 3)`. The weights are a fixed random initialisation: the cost of a step does
not depend on their values, so this measures what a trained model costs. The same loop in
PyTorch eager (`benchmarks/_torch.py`, the same weights) runs on the same device: CUDA when JAX
runs on a GPU and PyTorch has CUDA, else the CPU, where it runs with one thread and with its
default thread count, and the faster counts (under load the default is many times slower). A
PyTorch without CUDA beside a JAX GPU runs only the smallest size, on the CPU (10^6 particles
there would take hours), and the ratio at the larger sizes is `n/a`. Compile time is excluded
(one warm-up run of each); then they run in turn, 3 times, and each figure is the median.

On a CPU only 10^4 particles run by default (10^6 x 500 steps is about 37 TFLOP); pass `--all`
to force every size. Target on one H100: 10^6 particles x 500 steps in <= 0.6 s.

Last line: `seconds_at_1e6=<x> speedup_vs_pytorch_eager=<y>` (`seconds_at_1e4` when the larger
sizes were skipped). The seconds are absolute on purpose: the target above is a time budget
(what makes a 10^6-particle widget frame interactive), which no ratio can check. The ratio is
PyTorch's median over sgmteach's at that size, measured in the same run.

`--quick` (or `BENCH_QUICK=1`): 10^3 particles x 50 steps only, to check that the script runs.
"""

import os
import sys
import time

import jax
import jax.random as jr
import numpy as np

import sgmteach as sg

QUICK = "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK") == "1"
STEPS = 50 if QUICK else 500
T0 = 1e-3
REPEATS = 3


def torch_runners(model) -> tuple[dict, str | None, str]:
    """`({label: run(n, seed)}, device, note)` for the PyTorch loop, or `({}, None, why)`.

    On the CPU there are two runners, one thread and PyTorch's default thread count; the
    faster counts.
    """
    try:
        import torch
        from _torch import TorchScoreMLP, euler_maruyama, thread_counts, torch_device, with_threads
    except ImportError as err:
        return {}, None, f"PyTorch not installed ({err}): no baseline"
    device = torch_device()
    net = TorchScoreMLP(model, device=device)  # checks the copied weights
    run = lambda n, seed: euler_maruyama(net, n, steps=STEPS, t0=T0, seed=seed)
    note = f"PyTorch {torch.__version__} eager on {device}"
    if device != "cpu":
        return {device: run}, device, note
    return {f"{k} thread(s)": with_threads(k, run) for k in thread_counts()}, device, note


def time_pair(fns: dict) -> dict:
    """Median wall time of each `fn(i)`, after one untimed call, the functions in turn."""
    for fn in fns.values():
        fn(0)
    times = {name: [] for name in fns}
    for i in range(REPEATS):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(i + 1)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def main():
    backend = jax.default_backend()
    sde = sg.VPSDE(0.1, 20.0)
    model = sg.ScoreMLP(2, 128, 3, key=jr.key(0), sde=sde)
    sizes = [1_000] if QUICK else [10_000, 100_000, 1_000_000]
    if backend == "cpu" and "--all" not in sys.argv and not QUICK:
        sizes = sizes[:1]
        print("CPU backend: 10^5 and 10^6 particles skipped (pass --all to force them)")
    runners, torch_dev, note = torch_runners(model)
    print(f"backend {backend}; {STEPS} reverse-SDE steps; ScoreMLP(2, 128, 3); {note}")
    print(f"{'particles':>10}{'sgmteach s':>12}{'torch s':>10}{'ratio':>8}   PyTorch runs (s)")
    last = None
    for n in sizes:
        fns = {"jax": lambda i, n=n: sg.sample(model, sde, n, 2, key=jr.key(i), steps=STEPS,
                                               t0=T0).block_until_ready()}
        # A CPU PyTorch beside a JAX GPU runs the smallest size only.
        if backend == "cpu" or torch_dev != "cpu" or n <= 10_000:
            for label, run in runners.items():
                fns[label] = lambda i, n=n, run=run: run(n, i)
        med = time_pair(fns)
        jax_s = med.pop("jax")
        theirs = min(med.values()) if med else None
        ratio = None if theirs is None else theirs / jax_s
        runs = ", ".join(f"{label}: {t:.3f}" for label, t in med.items())
        print(f"{n:>10}{jax_s:12.3f}{'n/a' if theirs is None else f'{theirs:.3f}':>10}"
              f"{'n/a' if ratio is None else f'{ratio:.1f}':>8}   {runs}")
        last = (n, jax_s, ratio)
    n, seconds, ratio = last
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"seconds_at_1e{int(np.log10(n))}={seconds:.3f} "
          f"speedup_vs_pytorch_eager={'n/a' if ratio is None else f'{ratio:.2f}'}")


if __name__ == "__main__":
    main()
