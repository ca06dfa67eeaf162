"""Slider latency of every explorer, against the best `ipywidgets.interact` version of one.

For each explorer in `widgets.EXPLORERS` (built with its defaults), 50 random control moves: the
time from `update(...)` to the figure's data written (kernel side; the browser's redraw is not
included).

Then `NoiseScheduleExplorer` (VP SDE, linear β) against two `ipywidgets.interact` versions of
it, on the same 50 `(t, β_max)` moves, run in turn (one move of each, then the next move), so
that load from other processes falls on all three. Both draw what the explorer draws (the
particles over the exact density $p_t$ on a 60 x 60 grid, and the $m_t$, $s_t$ curves with the
current time marked), from the same computation:

- **interact, traced arrays** (the baseline): the best a user would write with `interact`: one
  jitted function of array arguments, so a new slider value never recompiles, and a new
  `FigureWidget` built on every change (what `interact` displays). Against the explorer, this
  isolates what the explorer's one figure, updated in place in `batch_update`, saves.
- **interact, static floats** (for reference): the same with the slider's Python floats passed
  as static arguments, so every new value recompiles: the way notebooks often write it. Its
  cost is mostly XLA compile time.

Each function is compiled once before timing (for the static one, at its starting values only:
every other value compiles when the slider reaches it, as it would for a user). The timing of an
`interact` move is the time of the slider assignments divided by the redraws they triggered.
The number of XLA compilations during the moves is printed for all three (0, 0 and about one per
redraw).

Prints a table, then as its last line `median_ms=<x> speedup_vs_interact=<y>`, where `median_ms`
is the largest per-explorer median (the slowest explorer) and the speedup is the median redraw
of **interact, traced arrays** over `NoiseScheduleExplorer`'s median on the same moves (the
static-float row's ratio is printed on the line before).

`--quick` (or `BENCH_QUICK=1`): 10 moves instead of 50, to check that the script runs.
"""

import contextlib
import io
import os
import sys
import time

import ipywidgets as W
import jax
import jax.monitoring
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
import sgmteach.widgets as widgets
from plotly.subplots import make_subplots

import sgmteach as sg

QUICK = "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK") == "1"
MOVES = 10 if QUICK else 50
GRID = 60
BETA_MIN = 0.1


class CompileCounter:
    """XLA compilations so far, from `jax.monitoring`."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


COMPILES = CompileCounter()


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


# ---------------------------------------------------------------- the interact versions
def frame_function(n: int):
    """What the explorer computes for one `(t, β_max)`, as a user would write it."""
    target = sg.ring()
    xk, zk = jr.split(jr.key(0))
    x0 = target.sample(n, key=xk)
    z = jr.normal(zk, x0.shape)
    ts = jnp.linspace(0.0, 1.0, 101)
    radius = float(jnp.max(jnp.linalg.norm(target.means, axis=-1))
                   + 3 * jnp.sqrt(jnp.max(jnp.linalg.eigvalsh(target.covs))))

    def frame(t, beta_max):
        sde = sg.VPSDE(BETA_MIN, beta_max)
        m, s = sde.marginal_mean_std(t)
        xt = m * x0 + s * z
        axis = jnp.linspace(-(m * radius + 3.5 * s), m * radius + 3.5 * s, GRID)
        pts = jnp.stack(jnp.meshgrid(axis, axis), -1)
        density = jnp.exp(target.diffuse(sde, t).log_prob(pts))
        curve_m, curve_s = jax.vmap(sde.marginal_mean_std)(ts)
        return xt, axis, density, ts, curve_m, curve_s, m, s

    return frame


def new_figure(xt, axis, density, ts, curve_m, curve_s, m, s, t):
    """A fresh `FigureWidget` with the explorer's traces and layout, filled."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42],
                        subplot_titles=("particles over the exact density p_t",
                                        "mean factor m_t and noise s_t"))
    fig.add_trace(go.Heatmap(x=axis, y=axis, z=density, colorscale="Blues", showscale=False,
                             hoverinfo="skip"), 1, 1)
    fig.add_trace(go.Scattergl(x=xt[:, 0], y=xt[:, 1], mode="markers", name="particles",
                               marker=dict(size=3, color="#d62728", opacity=0.5)), 1, 1)
    fig.add_trace(go.Scatter(x=ts, y=curve_m, name="m_t", line=dict(color="#1f77b4")), 1, 2)
    fig.add_trace(go.Scatter(x=ts, y=curve_s, name="s_t", line=dict(color="#ff7f0e")), 1, 2)
    fig.add_trace(go.Scatter(x=[t, t], y=[float(m), float(s)], mode="markers", name="now",
                             marker=dict(size=10, color="black"), showlegend=False), 1, 2)
    fig.update_xaxes(title_text="t", row=1, col=2)
    fig.update_yaxes(scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_layout(height=420, width=900, margin=dict(l=40, r=20, t=50, b=40),
                      legend=dict(x=1.0, y=1.0))
    return go.FigureWidget(fig)


class InteractVersion:
    """`ipywidgets.interactive` over a draw function; `move(t, b)` returns ms per redraw."""

    def __init__(self, n: int, *, static: bool):
        frame = frame_function(n)
        if static:  # the slider's floats as static arguments: every new value recompiles
            jitted = jax.jit(frame, static_argnums=(0, 1))
            self.compute = lambda t, b: jitted(float(t), float(b))
        else:  # arrays: traced, compiled once
            jitted = jax.jit(frame)
            self.compute = lambda t, b: jitted(jnp.asarray(t, float), jnp.asarray(b, float))
        self.redraws = 0

        def draw(t, beta_max):
            self.redraws += 1
            out = [np.asarray(a) for a in self.compute(t, beta_max)]
            return new_figure(*out, t)

        self.draw = draw
        with contextlib.redirect_stdout(io.StringIO()):  # no frontend here
            self.ui = W.interactive(
                draw, t=W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.01),
                beta_max=W.FloatSlider(value=20.0, min=0.5, max=50.0, step=0.01))
        self.t_slider, self.b_slider = self.ui.children[0], self.ui.children[1]

    def move(self, t: float, b: float) -> float | None:
        before = self.redraws
        with contextlib.redirect_stdout(io.StringIO()):  # interact's output area
            start = time.perf_counter()
            self.t_slider.value, self.b_slider.value = t, b  # each change reruns `draw`
            elapsed = time.perf_counter() - start
        redraws = self.redraws - before
        return 1e3 * elapsed / redraws if redraws else None


def main():
    rng = np.random.default_rng(0)
    print(f"backend {jax.default_backend()}, {MOVES} random moves per explorer, "
          f"{widgets.default_particles()} particles, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}" + (" (--quick)" if QUICK else ""))
    print(f"{'explorer':<34}{'median ms':>10}{'p95 ms':>10}")
    medians = {}
    for cls in widgets.EXPLORERS:
        ms = time_explorer(cls, rng)
        medians[cls.__name__] = float(np.median(ms))
        print(f"{cls.__name__:<34}{np.median(ms):10.1f}{np.percentile(ms, 95):10.1f}")

    vrng = np.random.default_rng(1)
    ts = np.round(vrng.uniform(0, 1, MOVES), 2)
    betas = np.round(vrng.uniform(0.51, 50, MOVES), 2)  # the explorer's range is [10^-0.3, 50]
    n = widgets.default_particles()
    explorer = widgets.NoiseScheduleExplorer()
    rows = {
        "same moves, explorer": None,
        "interact, traced arrays": InteractVersion(n, static=False),
        "interact, static floats (ref.)": InteractVersion(n, static=True),
    }
    times = {name: [] for name in rows}
    compiles = dict.fromkeys(rows, 0)
    for t, b in zip(ts, betas, strict=True):
        for name, version in rows.items():
            before = COMPILES.count
            if version is None:
                start = time.perf_counter()
                ok = explorer.update(t=float(t), noise=float(b))
                times[name].append(1e3 * (time.perf_counter() - start))
                assert ok, explorer.status.value
            else:
                ms = version.move(float(t), float(b))
                if ms is not None:
                    times[name].append(ms)
            compiles[name] += COMPILES.count - before
    print(f"\nNoiseScheduleExplorer against interact, {MOVES} moves of (t, β_max), in turn")
    print(f"{'':<34}{'median ms':>10}{'p95 ms':>10}{'compiles':>10}")
    for name, ms in times.items():
        print(f"{name:<34}{np.median(ms):10.1f}{np.percentile(ms, 95):10.1f}"
              f"{compiles[name]:>10}")
    mine = np.median(times["same moves, explorer"])
    static = np.median(times["interact, static floats (ref.)"]) / mine
    print(f"load average now {os.getloadavg()[0]:.1f}; against the recompiling interact "
          f"(static floats): {static:.1f}x")
    worst = max(medians.values())
    fair = np.median(times["interact, traced arrays"]) / mine
    print(f"median_ms={worst:.1f} speedup_vs_interact={fair:.1f}")


if __name__ == "__main__":
    main()
