"""Explorers for tutorials 08 and 09: the generative particle algorithm (GPA) under a
Lipschitz speed limit, and α-GPA on heavy-tailed Student-t targets."""

import re
import warnings
from collections import OrderedDict
from typing import NamedTuple

import ipywidgets as W
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import sgmteach as sg
from sgmteach import tails

from .base import AbstractExplorer, default_particles, drawn_count
from .plots import MAX_WIDTH, log_axis, marker_style

__all__ = ["ParticleFlowExplorer", "TailsExplorer", "run_gpa"]

PARTICLES, DATA, BOUND, STOP = "#1f77b4", "#9e9e9e", "#2b2b2b", "#d62728"
GENERATED = "#ff7f0e"
ALPHAS = (1.5, 2.0, 5.0, 10.0)
DIVERGENCES = [("KL", "kl")] + [(f"α = {a:g}", a) for a in ALPHAS]
CACHE = 16  # runs kept per explorer (a move back to a setting seen is a lookup)


def _divergence(value):
    """The control's value as `gpa`'s `divergence`: `"kl"` or `("alpha", a)`."""
    return "kl" if value == "kl" else ("alpha", float(value))


def _divergence_label(value) -> str:
    return "KL" if value == "kl" else f"α = {float(value):g}"


def _gpa_label(value) -> str:
    """`KL-GPA` or `α-GPA (α = 2)`."""
    return "KL-GPA" if value == "kl" else f"α-GPA (α = {float(value):g})"


def run_gpa(y0, data, **kw):
    """`(run, message)`: `sg.particles.gpa(y0, data, progress=False, **kw)` with the warning of
    a stopped run caught and returned as one line (`None` for a run that went to the end).
    Any other warning is shown as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = sg.particles.gpa(y0, data, progress=False, **kw)
    message = None
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, RuntimeWarning) and text.startswith("GPA stopped"):
            # "GPA stopped at step 7 of 200: the particles left ... (lipschitz=..., ...); ..."
            if run.diverged and text.startswith(f"GPA stopped at step {run.diverged_at} "):
                message = re.sub(r"\s*\(lipschitz=[^)]*\)", "", text.split(";")[0])
                message = message.replace("GPA stopped", "stopped", 1)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if run.diverged and message is None:
        message = (f"stopped at step {run.diverged_at}: the particles left the escape radius "
                   "or became non-finite")
    return run, message


def _lookup(cache: OrderedDict, key, make):
    """`cache[key]`, made by `make()` on a miss; the least recently used entry goes first."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = make()
    cache[key] = value
    while len(cache) > CACHE:
        cache.popitem(last=False)
    return value


def _fmt(x) -> str:
    """A number for a status line: 3 significant digits, `nan` as is."""
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def _mark_stop(trace, stopped_at, values, fallback: float) -> None:
    """Put the "run stopped" marker at the stop step, at the last finite value of `values`."""
    if stopped_at is None:
        trace.x, trace.y = [], []
        return
    finite = values[np.isfinite(values)]
    trace.x, trace.y = [stopped_at], [float(finite[-1]) if finite.size else fallback]


def _fate(stopped_at, bounded: bool, bounded_text: str, free_text: str) -> str:
    """The title's second line: where a run stopped, or what its bound means."""
    if stopped_at is not None:
        return f"stopped at step {stopped_at}: the particles left the escape radius"
    return bounded_text if bounded else free_text


def _log_range(lo: float, hi: float) -> list:
    return [float(np.log10(lo)), float(np.log10(hi))]


# --- ParticleFlowExplorer ----------------------------------------------------------------------

STEPS = 200
SAVE_EVERY = 8  # 26 frames: steps 0, 8, ..., 200
HALF = 8.0  # the particle panel shows [-HALF, HALF]^2
KE_RANGE = (1e-7, 1e4)
SPEED_RANGE = (1e-3, 1e3)
BOUNDS = [("spectral (exact)", "spectral"), ("Frobenius (authors')", "frobenius"),
          ("off (L = ∞)", "off")]


class _FlowRun(NamedTuple):
    frames: np.ndarray  # (F, M, 2)
    frame_steps: np.ndarray  # (F,)
    kinetic: np.ndarray  # (STEPS,), NaN after a stop
    max_grad: np.ndarray
    stopped_at: int | None
    message: str | None


class _FlowFrame(NamedTuple):
    L: float | None  # None: no bound
    bound: str
    step: float
    divergence: object
    k: int  # the frame shown
    run: _FlowRun


class ParticleFlowExplorer(AbstractExplorer):
    r"""GPA (`sg.particles.gpa`) from $N(0, 0.5^2I)$ to four Gaussians on a circle of radius 4
    (`sg.ring(4, radius=4.0, std=0.5)`, the authors' 2-D example), 200 data points and 200
    particles on a CPU (1000 on a GPU), 200 steps, `critic_steps=5`, `lr=2e-2`.

    Each step trains the discriminator $\phi$ (an MLP projected to Lipschitz constant $\le L$)
    and moves every particle by $-\Delta t\,\nabla\phi$: with the bound a particle moves at
    most $L\Delta t$ per step, the speed limit. `bound` off is $L = \infty$: where the
    particles and the data do not overlap the discriminator's slope is unbounded and at
    $\Delta t = 1$ the run leaves the escape radius within a few steps (it is stopped there;
    the status line says when). The Frobenius projection is the authors' code: a looser bound,
    so slower particles at the same $L$.

    Left: the particles at the chosen `frame` (26 saved, every 8 steps) over the data. Right,
    per step: the kinetic energy $\mathrm{KE} = I/2$ (the authors' log, $I$ the regularised
    Fisher information) with the chosen frame marked, and the largest particle speed
    $\max_i|\nabla\phi|$ against the line $L$. Every axis is fixed.

    `L`, $\Delta t$ and $\alpha$ are traced values: a move reruns GPA (about 0.4 s on a 2-core
    CPU) without compiling; the six (bound, KL or α) variants compile at construction (about
    20 s). The last runs are cached, so `frame`, and a move back to a setting already seen,
    only redraw.

    **Arguments (all optional):** `n` (particles and data points), `key`.
    """

    main_control = "lipschitz"
    debounced = ("lipschitz", "step")

    def __init__(self, *, n: int | None = None, key=None):
        key = jr.key(0) if key is None else key
        dk, yk, self._key = jr.split(key, 3)
        self.n = default_particles(cpu=200, gpu=1000) if n is None else int(n)
        self.target = sg.ring(4, radius=4.0, std=0.5)
        self.data = self.target.sample(self.n, key=dk)
        self.y0 = 0.5 * jr.normal(yk, (self.n, 2))
        self._data_np = np.asarray(self.data)
        self._drawn = drawn_count(self.n)
        self._runs: OrderedDict = OrderedDict()
        self.gpa_calls = 0  # runs made (not looked up): a frame move makes none
        super().__init__()

    def _controls(self):
        style = {"description_width": "initial"}
        n_frames = STEPS // SAVE_EVERY + 1
        return {
            "lipschitz": W.FloatLogSlider(value=10.0, base=10, min=-0.3, max=2.0,
                                          step=0.05, description="Lipschitz bound L",
                                          style=style, readout_format=".3g"),
            "bound": W.Dropdown(options=BOUNDS, value="spectral", description="bound",
                                style=style),
            "step": W.FloatLogSlider(value=1.0, base=10, min=-1.0, max=0.5, step=0.05,
                                     description="step Δt", style=style, readout_format=".3g"),
            "divergence": W.Dropdown(options=DIVERGENCES, value="kl", description="divergence",
                                     style=style),
            "frame": W.IntSlider(value=n_frames - 1, min=0, max=n_frames - 1,
                                 description="frame", style=style),
        }

    def _variants(self):
        return [{"bound": b, "divergence": d} for _, b in BOUNDS for d in ("kl", ALPHAS[1])]

    def _figure(self):
        fig = make_subplots(
            rows=2, cols=2, column_widths=[0.48, 0.52], horizontal_spacing=0.1,
            vertical_spacing=0.16, specs=[[{"rowspan": 2}, {}], [None, {}]],
            subplot_titles=("particles over the data", "kinetic energy KE = I/2",
                            "largest particle speed max|∇φ|"))
        style = marker_style(self._drawn)
        fig.add_trace(go.Scattergl(mode="markers", name=f"data: 4 Gaussians ({self.n} points)",
                                   marker=dict(color=DATA, **style)), 1, 1)
        fig.add_trace(go.Scattergl(mode="markers", name="particles",
                                   marker=dict(color=PARTICLES, **style)), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name="KE per step",
                                 line=dict(color=PARTICLES, width=1.5)), 1, 2)
        fig.add_trace(go.Scatter(mode="markers", name="the frame shown",
                                 marker=dict(symbol="diamond", size=11, color=PARTICLES,
                                             line=dict(width=1, color="black"))), 1, 2)
        fig.add_trace(go.Scatter(mode="lines", name="max|∇φ| per step",
                                 line=dict(color=GENERATED, width=1.5)), 2, 2)
        fig.add_trace(go.Scatter(mode="lines", name="speed limit L",
                                 line=dict(color=BOUND, dash="dash")), 2, 2)
        fig.add_trace(go.Scatter(mode="markers", name="run stopped (left the escape radius)",
                                 marker=dict(symbol="x", size=12, color=STOP)), 2, 2)
        fig.update_xaxes(range=[-HALF, HALF], title="x₁", constrain="domain", row=1, col=1)
        fig.update_yaxes(range=[-HALF, HALF], title="x₂", scaleanchor="x", constrain="domain",
                         row=1, col=1)
        for row in (1, 2):
            fig.update_xaxes(range=[0, STEPS], row=row, col=2,
                             title="step n" if row == 2 else None)
        fig.update_yaxes(log_axis(KE_RANGE, title="KE"), range=_log_range(*KE_RANGE), row=1,
                         col=2)
        fig.update_yaxes(log_axis(SPEED_RANGE, title="max|∇φ|"),
                         range=_log_range(*SPEED_RANGE), row=2, col=2)
        fig.update_layout(height=520, width=min(990, MAX_WIDTH),
                          margin=dict(l=55, r=15, t=95, b=40),
                          legend=dict(orientation="h", y=-0.12, x=0.0),
                          title=dict(font=dict(size=14)))
        return go.FigureWidget(fig)

    def _run(self, L, bound, step, divergence) -> _FlowRun:
        def make():
            self.gpa_calls += 1
            run, message = run_gpa(
                self.y0, self.data, divergence=_divergence(divergence), lipschitz=L,
                step=step, steps=STEPS, key=self._key,
                norm="spectral" if bound == "off" else bound, critic_steps=5, lr=2e-2,
                save_every=SAVE_EVERY)
            if not np.isfinite(run.frames).all():
                raise FloatingPointError("GPA returned non-finite particle positions")
            return _FlowRun(run.frames, run.frame_steps, np.asarray(run.history["kinetic"]),
                            np.asarray(run.history["max_grad"]), run.diverged_at, message)

        # without the bound, L plays no part: every L is the same run
        return _lookup(self._runs, (L, bound, step, divergence), make)

    def _compute(self, v) -> _FlowFrame:
        bound, step, div = v["bound"], float(v["step"]), v["divergence"]
        L = None if bound == "off" else float(v["lipschitz"])
        run = self._run(L, bound, step, div)
        k = int(np.clip(v["frame"], 0, len(run.frame_steps) - 1))
        return _FlowFrame(L, bound, step, div, k, run)

    def _draw(self, r: _FlowFrame):
        data, particles, ke, now, speed, limit, stop = self.fig.data
        run, m = r.run, self._drawn
        data.x, data.y = self._data_np[:m, 0], self._data_np[:m, 1]
        pts = run.frames[r.k]
        particles.x, particles.y = pts[:m, 0], pts[:m, 1]
        s = int(run.frame_steps[r.k])
        particles.name = f"particles at step {s}"
        steps = np.arange(STEPS)
        ke.x, ke.y = steps, run.kinetic
        # the history at step n is measured before that step's move, at the frame's positions
        i = min(s, STEPS - 1)
        shown = run.kinetic[i] if s < STEPS else np.nan
        now.x, now.y = ([s], [shown]) if np.isfinite(shown) else ([], [])
        speed.x, speed.y = steps, run.max_grad
        if r.L is None:
            limit.x, limit.y = [], []
            limit.name = "speed limit L: off (L = ∞)"
        else:
            limit.x, limit.y = [0, STEPS], [r.L, r.L]
            limit.name = f"speed limit L = {r.L:.3g}"
        _mark_stop(stop, run.stopped_at, run.max_grad, SPEED_RANGE[1])
        L = "off" if r.L is None else f"{r.L:.3g}"
        norm = "" if r.L is None else f" ({'Frobenius' if r.bound == 'frobenius' else r.bound})"
        fate = _fate(run.stopped_at, r.L is not None, "a particle moves at most L·Δt per step",
                     "no bound: the discriminator's slope is unbounded, so is the step")
        self.fig.layout.title.text = (
            f"GPA to four Gaussians, {_divergence_label(r.divergence)}: L = {L}{norm}, "
            f"Δt = {r.step:.3g}, step {s} of {STEPS}<br><span style='font-size:12px'>{fate}"
            "</span>")

    def _status_text(self, r: _FlowFrame):
        run = r.run
        n_frames = len(run.frame_steps)
        s = int(run.frame_steps[r.k])
        L = "off" if r.L is None else f"{r.L:.3g}"
        head = (f"L = {L}, Δt = {r.step:.3g}, {_divergence_label(r.divergence)}: "
                f"frame {r.k}/{n_frames - 1} (step {s})")
        if run.message is not None:  # one line of a 1000 px column: the stop, no numbers
            return f"{head}; {run.message}"
        i = min(s, STEPS - 1)
        head += f", KE {_fmt(run.kinetic[i])}, max|∇φ| {_fmt(run.max_grad[i])}"
        return f"{head}; stable to step {STEPS}"


# --- TailsExplorer ------------------------------------------------------------------------------

TAIL_STEPS = 200
R_MAX = 300.0  # radial_ccdf_l1's range: the authors' value for nu = 1
R_AXIS = (0.1, 1e5)
RADIUS_RANGE = (1.0, 1e5)
LIPSCHITZ = [("0.5", 0.5), ("1", 1.0), ("2", 2.0), ("off (L = ∞)", "off")]


class _TailFrame(NamedTuple):
    nu: float
    divergence: object
    L: float | None
    step: float
    grid: np.ndarray  # r on a log grid, and the exact P(|X| > r) there
    exact: np.ndarray
    data_r: np.ndarray  # sorted radii
    gen_r: np.ndarray
    radius: np.ndarray  # (TAIL_STEPS,) max_i |Y_n|, NaN after a stop
    y0_max: float
    l1: float
    l1_data: float
    tail: float
    tail_data: float
    moment: bool
    stopped_at: int | None
    message: str | None


class TailsExplorer(AbstractExplorer):
    r"""α-GPA (`sg.particles.gpa(..., divergence=("alpha", a))`) from $N(0, I)$ towards a 2-D
    Student-t with $\nu$ degrees of freedom (`sg.tails.StudentT(nu, 2)`), 400 data points and
    400 particles on a CPU (2000 on a GPU), 200 steps.

    Left, on log-log axes: the radial survival function $P(|X| > r)$, exact
    (`StudentT.radial_ccdf`), of the data, and of the generated particles after the run; the
    vertical lines are the largest radius generated, the data's, and the speed bound
    $\max_i|Y_0^{(i)}| + L\Delta t\,n$ no particle can pass. Right: the largest particle
    radius per step against that bound and the data's largest radius: with $L = 1$ the tail
    fills at most $L\Delta t$ per step, so a heavy tail ($\nu \le 1$) stays short of the data
    whatever the divergence. The status line gives the authors' rCCDF-L1 error
    (`radial_ccdf_l1`, $r \le 300$) and the follow-up's tail error (`tail_log_error`), each
    beside the data's own (the floor of $n$ exact samples), and the notes' finiteness verdict
    (`divergence_finite(2, α, ν).moment`: $\mathbb E_Q f_\alpha^*(\phi) < \infty$ for every
    Lipschitz $\phi$ iff $\alpha/(\alpha - 1) < \nu$; never for KL).

    The data are drawn with a fixed key, so a move of $\nu$ changes the target only. $\nu$,
    $\alpha$, $L$ and $\Delta t$ are traced: a move reruns GPA (about 0.5 s on a 2-core CPU)
    without compiling; the four (KL or α, bound or not) variants compile at construction.

    **Arguments (all optional):** `n` (particles and data points), `key`.
    """

    main_control = "nu"
    debounced = ("nu", "step")

    def __init__(self, *, n: int | None = None, key=None):
        key = jr.key(0) if key is None else key
        self._data_key, yk, self._key = jr.split(key, 3)
        self.n = default_particles(cpu=400, gpu=2000) if n is None else int(n)
        self.y0 = jr.normal(yk, (self.n, 2))
        self._y0_max = float(jnp.max(jnp.linalg.norm(self.y0, axis=-1)))
        self._grid = np.logspace(np.log10(R_AXIS[0]), np.log10(R_AXIS[1]), 300)
        self._runs: OrderedDict = OrderedDict()
        self.gpa_calls = 0
        super().__init__()

    def target(self, nu: float) -> tails.StudentT:
        return tails.StudentT(float(nu), 2)

    def data(self, nu: float) -> jax.Array:
        """The `n` data points at this `nu`: always drawn with the same key."""
        return self.target(nu).sample(self.n, key=self._data_key)

    def _controls(self):
        style = {"description_width": "initial"}
        return {
            "nu": W.FloatSlider(value=1.0, min=0.5, max=5.0, step=0.1,
                                description="tail index ν", style=style, readout_format=".1f"),
            "divergence": W.Dropdown(options=DIVERGENCES, value=2.0, description="divergence",
                                     style=style),
            "lipschitz": W.Dropdown(options=LIPSCHITZ, value=1.0,
                                    description="Lipschitz bound L", style=style),
            "step": W.FloatLogSlider(value=5.0, base=10, min=np.log10(0.5), max=np.log10(5.0),
                                     step=0.05, description="step Δt", style=style,
                                     readout_format=".3g"),
        }

    def _variants(self):
        return [{"divergence": d, "lipschitz": L} for d in ("kl", ALPHAS[1])
                for L in (1.0, "off")]

    def _figure(self):
        fig = make_subplots(rows=1, cols=2, column_widths=[0.56, 0.44], horizontal_spacing=0.1,
                            subplot_titles=("radial survival function P(|X| > r)",
                                            "largest particle radius per step"))
        fig.add_trace(go.Scatter(mode="lines", name="exact Student-t",
                                 line=dict(color=BOUND, width=2.5)), 1, 1)
        # the data drawn wide under the generated line, so both show where they coincide
        fig.add_trace(go.Scatter(mode="lines", name="data", line_shape="hv",
                                 line=dict(color=DATA, width=4)), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name="generated (α-GPA)", line_shape="hv",
                                 line=dict(color=GENERATED, width=1.8)), 1, 1)
        for name, colour, dash in (("largest radius: generated", GENERATED, "dot"),
                                   ("largest radius: data", DATA, "dot"),
                                   ("speed bound max|Y₀| + LΔt·n", BOUND, "dash")):
            fig.add_trace(go.Scatter(mode="lines", name=name,
                                     line=dict(color=colour, dash=dash, width=1.5)), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name="max|Yₙ|", showlegend=False,
                                 line=dict(color=GENERATED, width=2)), 1, 2)
        fig.add_trace(go.Scatter(mode="lines", name="speed bound", showlegend=False,
                                 line=dict(color=BOUND, dash="dash", width=1.5)), 1, 2)
        fig.add_trace(go.Scatter(mode="lines", name="data's largest radius", showlegend=False,
                                 line=dict(color=DATA, dash="dot", width=1.5)), 1, 2)
        fig.add_trace(go.Scatter(mode="markers", name="run stopped (left the escape radius)",
                                 marker=dict(symbol="x", size=12, color=STOP)), 1, 2)
        self._ylo = 0.5 / self.n
        fig.update_xaxes(log_axis(R_AXIS, title="radius r"), range=_log_range(*R_AXIS),
                         row=1, col=1)
        fig.update_yaxes(log_axis([self._ylo, 1.0], title="P(|X| > r)"),
                         range=_log_range(self._ylo, 1.3), row=1, col=1)
        fig.update_xaxes(range=[0, TAIL_STEPS], title="step n", row=1, col=2)
        fig.update_yaxes(log_axis(RADIUS_RANGE, title="radius"),
                         range=_log_range(*RADIUS_RANGE), row=1, col=2)
        fig.update_layout(height=470, width=min(990, MAX_WIDTH),
                          margin=dict(l=60, r=15, t=95, b=40),
                          legend=dict(orientation="h", y=-0.16, x=0.0),
                          title=dict(font=dict(size=14)))
        return go.FigureWidget(fig)

    def _run(self, nu, divergence, L, step):
        def make():
            self.gpa_calls += 1
            data = self.data(nu)
            run, message = run_gpa(self.y0, data, divergence=_divergence(divergence),
                                   lipschitz=L, step=step, steps=TAIL_STEPS, key=self._key,
                                   chunk_size=TAIL_STEPS)
            return np.asarray(data), run, message

        return _lookup(self._runs, (nu, divergence, L, step), make)

    def _compute(self, v) -> _TailFrame:
        nu, div, step = float(v["nu"]), v["divergence"], float(v["step"])
        L = None if v["lipschitz"] == "off" else float(v["lipschitz"])
        data, run, message = self._run(nu, div, L, step)
        gen = np.asarray(run.particles, np.float64)
        if not np.isfinite(gen).all():
            raise FloatingPointError("GPA returned non-finite particles")
        target = self.target(nu)
        exact = np.asarray(target.radial_ccdf(self._grid), np.float64)
        l1 = tails.radial_ccdf_l1(gen, target, r_max=R_MAX)
        l1_data = tails.radial_ccdf_l1(data, target, r_max=R_MAX)
        tail = tails.tail_log_error(gen, target)
        tail_data = tails.tail_log_error(data, target)
        moment = bool(tails.divergence_finite(2, 1.0 if div == "kl" else float(div), nu).moment)
        return _TailFrame(nu, div, L, step, self._grid, exact,
                          np.sort(np.linalg.norm(data.astype(np.float64), axis=1)),
                          np.sort(np.linalg.norm(gen, axis=1)),
                          np.asarray(run.history["radius"], np.float64), self._y0_max, l1,
                          l1_data, tail, tail_data, moment, run.diverged_at, message)

    def _draw(self, r: _TailFrame):
        exact, data, gen, gen_max, data_max, bound, radius, bound_n, data_n, stop = \
            self.fig.data
        exact.x, exact.y = r.grid, r.exact
        for trace, radii in ((data, r.data_r), (gen, r.gen_r)):
            n = radii.size
            trace.x, trace.y = radii, (n - np.arange(n)) / n  # P(R >= r_(i)), a step down
        top = 1.3
        gen_max.x, gen_max.y = [r.gen_r[-1]] * 2, [self._ylo, top]
        gen_max.name = f"largest radius: generated {r.gen_r[-1]:.3g}"
        data_max.x, data_max.y = [r.data_r[-1]] * 2, [self._ylo, top]
        data_max.name = f"largest radius: data {r.data_r[-1]:.3g}"
        steps = np.arange(TAIL_STEPS)
        radius.x, radius.y = steps, r.radius
        data_n.x, data_n.y = [0, TAIL_STEPS], [r.data_r[-1]] * 2
        if r.L is None:
            bound.x = bound.y = bound_n.x = bound_n.y = []
            bound.name = "speed bound: none (L = ∞)"
        else:
            reach = r.y0_max + r.L * r.step * TAIL_STEPS
            bound.x, bound.y = [reach] * 2, [self._ylo, top]
            bound.name = f"speed bound max|Y₀| + LΔt·n = {reach:.4g}"
            bound_n.x, bound_n.y = steps, r.y0_max + r.L * r.step * steps
        _mark_stop(stop, r.stopped_at, r.radius, 1.0)
        gen.name = f"generated ({_gpa_label(r.divergence)})"
        L = "off" if r.L is None else f"{r.L:g}"
        fate = _fate(r.stopped_at, r.L is not None, "the tail fills at most L·Δt per step",
                     "no bound: no speed limit")
        self.fig.layout.title.text = (
            f"{_gpa_label(r.divergence)} to a 2-D Student-t, ν = {r.nu:.2g}: L = {L},"
            f" Δt = {r.step:.3g}, {TAIL_STEPS} steps<br><span style='font-size:12px'>{fate}; "
            f"{self.n} particles from N(0, I), {self.n} data points</span>")

    def _status_text(self, r: _TailFrame):
        if r.divergence == "kl":
            verdict = "KL: E_Q e^φ finite? no (no exponential moments)"
        else:
            a = float(r.divergence)
            verdict = (f"E_Q f*(φ) finite: α/(α−1) = {a / (a - 1):.3g} < ν = {r.nu:.2g}? "
                       f"{'yes' if r.moment else 'no'}")
        head = (f"rCCDF-L1 (r ≤ {R_MAX:g}) {_fmt(r.l1)} (data {_fmt(r.l1_data)}), "
                f"tail error {_fmt(r.tail)} (data {_fmt(r.tail_data)}); {verdict}")
        if r.stopped_at is not None:  # the title says why; one line of a 1000 px column
            return f"stopped at step {r.stopped_at} of {TAIL_STEPS}; {head}"
        return head
