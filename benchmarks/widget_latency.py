"""Slider latency of every explorer, against a naive `ipywidgets.interact` baseline.

For each explorer in `widgets.__all__` (built with its defaults), 50 random control moves: the
time from `update(...)` to the figure's data written (kernel side; the browser's redraw is not
included). The baseline is the way notebooks often write it: `ipywidgets.interact` over a function
that passes the slider's Python floats into a jitted function as static arguments (so every new
value recompiles) and builds a new figure on every call. Both draw the same thing (the noise
schedule explorer's particles over the exact density), both measured in this run.

Prints a table, then as its last line `median_ms=<x> speedup_vs_interact=<y>`, where `median_ms`
is the largest per-explorer median (the slowest explorer) and the speedup compares the naive
baseline's median with `NoiseScheduleExplorer`'s on the same 50 values.
"""

import contextlib
import functools
import io
import time

import ipywidgets as W
import jax
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
import sgmteach.widgets as widgets
from sgmteach.widgets.plots import density_grid

import sgmteach as sg

MOVES = 50


def random_value(control, rng):
    if isinstance(control, W.Dropdown):
        opts = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return opts[rng.integers(len(opts))]
    if isinstance(control, W.FloatLogSlider):
        return float(control.base ** rng.uniform(control.min, control.max))
    if isinstance(control, W.IntSlider):
        return int(rng.integers(control.min, control.max + 1))
    return float(rng.uniform(control.min, control.max))


def time_explorer(cls, rng):
    explorer = cls()
    names = list(explorer.sliders)
    times = []
    for _ in range(MOVES):
        name = names[rng.integers(len(names))]
        value = random_value(explorer.sliders[name], rng)
        start = time.perf_counter()
        ok = explorer.update(**{name: value})
        times.append(time.perf_counter() - start)
        assert ok, explorer.status.value
    return np.asarray(times) * 1e3


def naive_baseline(ts, betas, n):
    """`interact` + Python floats as static arguments + a new figure per call."""
    target = sg.ring()
    x0 = target.sample(n, key=jr.key(0))
    z = jr.normal(jr.key(1), x0.shape)

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def particles(t, beta_max):
        m, s = sg.VPSDE(0.1, beta_max).marginal_mean_std(t)
        return m * x0 + s * z

    def draw(t, beta_max):
        xt = np.asarray(particles(t, beta_max))
        mix = target.diffuse(sg.VPSDE(0.1, beta_max), t)
        axis, dens = density_grid(mix, 6.0, 60)
        fig = go.FigureWidget([go.Heatmap(x=axis, y=axis, z=dens, showscale=False),
                               go.Scattergl(x=xt[:, 0], y=xt[:, 1], mode="markers")])
        return fig

    ui = W.interactive(draw, t=W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.01),
                       beta_max=W.FloatSlider(value=20.0, min=0.5, max=50.0, step=0.01))
    t_slider, b_slider = ui.children[0], ui.children[1]
    times = []
    for t, b in zip(ts, betas, strict=True):
        start = time.perf_counter()
        t_slider.value, b_slider.value = float(t), float(b)  # each assignment reruns `draw`
        times.append((time.perf_counter() - start) / 2)
    return np.asarray(times) * 1e3


def main():
    rng = np.random.default_rng(0)
    print(f"backend {jax.default_backend()}, {MOVES} random moves per explorer, "
          f"{widgets.default_particles()} particles")
    print(f"{'explorer':<24}{'median ms':>10}{'p95 ms':>10}")
    medians = {}
    for name in widgets.__all__:
        ms = time_explorer(getattr(widgets, name), rng)
        medians[name] = float(np.median(ms))
        print(f"{name:<24}{np.median(ms):10.1f}{np.percentile(ms, 95):10.1f}")

    vrng = np.random.default_rng(1)
    ts = np.round(vrng.uniform(0, 1, MOVES), 2)
    betas = np.round(vrng.uniform(0.5, 50, MOVES), 2)
    explorer = widgets.NoiseScheduleExplorer()
    mine = []
    for t, b in zip(ts, betas, strict=True):
        start = time.perf_counter()
        explorer.update(t=float(t), noise=float(b))
        mine.append(time.perf_counter() - start)
    mine = np.asarray(mine) * 1e3
    with contextlib.redirect_stdout(io.StringIO()):  # interact's output area, no frontend here
        naive = naive_baseline(ts, betas, widgets.default_particles())
    print(f"{'same moves, explorer':<24}{np.median(mine):10.1f}{np.percentile(mine, 95):10.1f}")
    print(f"{'same moves, interact':<24}{np.median(naive):10.1f}{np.percentile(naive, 95):10.1f}")
    worst = max(medians.values())
    print(f"median_ms={worst:.1f} speedup_vs_interact={np.median(naive) / np.median(mine):.1f}")


if __name__ == "__main__":
    main()
