"""The explorer of tutorial 07: the exact W1+W2-proximal flow between translated Gaussians,
moved by its two proximal weights, beside flows learned once at construction."""

import functools
from typing import NamedTuple

import equinox as eqx
import ipywidgets as W
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import sgmteach as sg
from sgmteach import flows

from .base import AbstractExplorer
from .plots import MAX_WIDTH, marker_style

__all__ = ["ProximalFlowExplorer", "default_learned_flows"]

EXACT, LEARNED, DATA = "#1f77b4", "#ff7f0e", "#9e9e9e"
M = (4.0, 0.0)  # the target's mean; source N(0, I), target N(M, I), T = 1
N_SAVES = 20  # learned paths are saved at t = k / N_SAVES
LAMBDA_MAX = 2.0
DRAWN_PATHS = 12
DEFAULT_SETTINGS = ((0.5, 1.0), (0.1, 1.0), (0.5, None))


@functools.lru_cache(maxsize=4)
def default_learned_flows(steps: int = 300, seed: int = 0) -> tuple:
    """`((kinetic_weight, lipschitz, flow), ...)` for `DEFAULT_SETTINGS`: flows from N(0, I) to
    N((4, 0), I) trained with `sg.flows.train_w1w2_flow` (batch 128), once per process."""
    source = sg.gaussian(jnp.zeros(2), jnp.eye(2))
    data = sg.gaussian(jnp.asarray(M), jnp.eye(2)).sample(4000, key=jr.key(seed))
    out = []
    for i, (lam, L) in enumerate(DEFAULT_SETTINGS):
        flow = flows.train_w1w2_flow(source, data, kinetic_weight=lam, lipschitz=L,
                                     key=jr.key(seed + 1 + i), steps=steps, batch_size=128,
                                     progress=False)
        out.append((lam, L, flow))
    return tuple(out)


def _label(lam, L) -> str:
    return f"λ = {lam:g}, L = {'off' if L is None else f'{L:g}'}"


@eqx.filter_jit
def _exact(m, lam, L, t, x0, lam_grid):
    """Exact particles at t, the displacement, and s*(λ) over `lam_grid` at L (L = ∞: off)."""
    disp = flows.translated_gaussian_flow(m, 1.0, lam, L)
    curve = jax.vmap(lambda lg: flows.translated_gaussian_flow(m, 1.0, lg, L)[0])(lam_grid)
    return x0 + t * disp[None], disp, curve


class _Learned(NamedTuple):
    label: str
    lam: float
    L: float | None
    paths: np.ndarray  # (N_SAVES + 1, n, 2)
    mean: float  # mean displacement along m, and its standard error
    se: float
    exact: float  # the exact s* at the flow's own (lambda, L)


class _Frame(NamedTuple):
    t: float
    k: int
    lam: float
    L: float | None
    particles: np.ndarray
    disp: np.ndarray
    curve: np.ndarray
    learned: _Learned


class ProximalFlowExplorer(AbstractExplorer):
    r"""The W1+W2-proximal flow from $N(0, I)$ to $N(m, I)$, $m = (4, 0)$, $T = 1$.

    The exact flow (`sg.flows.translated_gaussian_flow`) translates every particle along a
    straight line by $s^*\hat m$: $s^* = |m|T/(T + \lambda)$ while the speed
    $|m|\lambda/(T + \lambda)$ stays under $L$, else $s^* = LT/\lambda$, the flow stops short at
    the speed limit. It is closed form in $\lambda$ = `kinetic_weight` and $L$ = `lipschitz`
    (traced values: a move never compiles, about a millisecond). `W1 proximal` = off is
    $L = \infty$ (KL, no Lipschitz bound).

    Left: the particles at `time` $t$, exact (blue) and of the learned flow chosen in `learned`
    (orange), with a dozen trajectories of each, over the target's samples (grey). Right:
    $s^*$ against $\lambda$ at the current $L$ and without the W1 proximal, the current setting
    (diamond) and every learned flow's measured mean displacement (± 2 s.e.) at its own
    $(\lambda, L)$. The learned flows are trained once, at construction
    (`default_learned_flows`: 300 steps each, about 10 s for three on a 2-core CPU; cached per
    process), or passed in as `learned=[(kinetic_weight, lipschitz, flow), ...]`, flows
    trained on the same source and target; their paths are saved at 21 times, so `time` only
    picks one.

    **Arguments (all optional):** `learned`, `n` (particles), `key`.
    """

    main_control = "kinetic_weight"

    def __init__(self, *, learned=None, n: int = 2000, key=None):
        key = jr.key(0) if key is None else key
        xk, dk = jr.split(key)
        self._m = jnp.asarray(M)
        self.x0 = jr.normal(xk, (int(n), 2))
        self.data = np.asarray(M) + np.asarray(jr.normal(dk, (int(n), 2)))
        self._lam_grid = jnp.linspace(0.0, LAMBDA_MAX, 201)
        # Fixed for every frame: computed once, not per move.
        self._grid_np = np.asarray(self._lam_grid)
        self._free = np.asarray(jax.vmap(lambda lg: flows.translated_gaussian_flow(
            self._m, 1.0, lg, None)[0])(self._lam_grid))  # the exact curve at L = ∞
        self._path_starts = np.asarray(self.x0[:DRAWN_PATHS])
        learned = default_learned_flows() if learned is None else tuple(learned)
        if not learned:
            raise ValueError("learned must hold at least one (kinetic_weight, lipschitz, flow).")
        ts = jnp.linspace(0.0, 1.0, N_SAVES + 1)
        self.learned = {}
        for lam, L, flow in learned:
            paths = np.asarray(flow.paths(self.x0, ts))
            along = (paths[-1] - paths[0]) @ (np.asarray(M) / np.linalg.norm(M))
            if not np.isfinite(paths).all():
                raise ValueError(f"the learned flow at {_label(lam, L)} has non-finite paths.")
            self.learned[_label(lam, L)] = _Learned(
                _label(lam, L), float(lam), None if L is None else float(L), paths,
                float(along.mean()), float(along.std(ddof=1) / np.sqrt(along.size)),
                float(flows.translated_gaussian_flow(self._m, 1.0, lam, L)[0]))
        super().__init__()

    def _controls(self):
        style = {"description_width": "initial"}
        first = next(iter(self.learned.values()))
        return {
            "kinetic_weight": W.FloatSlider(value=first.lam, min=0.0, max=LAMBDA_MAX, step=0.05,
                                            description="kinetic weight λ (W2)", style=style),
            "lipschitz": W.FloatLogSlider(value=first.L or 1.0, base=10, min=-1, max=1,
                                          step=0.05, description="Lipschitz bound L (W1)",
                                          style=style, readout_format=".2f"),
            "w1": W.Dropdown(options=["on", "off"], value="on" if first.L else "off",
                             description="W1 proximal", style=style),
            "time": W.FloatSlider(value=1.0, min=0.0, max=1.0, step=1.0 / N_SAVES,
                                  description="time t", style=style, readout_format=".2f"),
            "learned": W.Dropdown(options=list(self.learned), value=first.label,
                                  description="learned flow", style=style),
        }

    def _figure(self):
        fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                            subplot_titles=("particles at time t", "displacement s* against λ"))
        fig.add_trace(go.Scattergl(x=self.data[:, 0], y=self.data[:, 1], mode="markers",
                                   name="target samples N(m, I)",
                                   marker=dict(color=DATA, **marker_style(len(self.data)))), 1, 1)
        style = marker_style(len(self.x0))
        # the learned flow first, so the exact one is drawn over it where they coincide
        for name, colour, width in (("learned flow", LEARNED, 1.5), ("exact flow", EXACT, 2.5)):
            fig.add_trace(go.Scattergl(mode="markers", name=f"{name}: particles at t",
                                       marker=dict(color=colour, **style)), 1, 1)
            fig.add_trace(go.Scatter(mode="lines", name=f"{name}: trajectories",
                                     line=dict(color=colour, width=width)), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name="exact s*(λ) at this L",
                                 line=dict(color=EXACT, width=2.5)), 1, 2)
        fig.add_trace(go.Scatter(mode="lines", name="exact s*(λ), no W1 proximal (L = ∞)",
                                 line=dict(color=DATA, dash="dash")), 1, 2)
        fig.add_trace(go.Scatter(mode="markers", name="the current (λ, L)",
                                 marker=dict(symbol="diamond", size=12, color=EXACT)), 1, 2)
        err = dict(type="data", visible=True, thickness=1.2, width=4, color=LEARNED)
        fig.add_trace(go.Scatter(mode="markers+text", name="learned flows (± 2 s.e.)",
                                 error_y=err, textposition="top center",
                                 textfont=dict(size=10, color=LEARNED),
                                 marker=dict(size=9, color=LEARNED)), 1, 2)
        fig.update_xaxes(range=[-3.5, 7.5], title="x₁", row=1, col=1)
        fig.update_yaxes(range=[-4.0, 4.0], title="x₂", scaleanchor="x", row=1, col=1)
        fig.update_xaxes(range=[-0.05, LAMBDA_MAX + 0.05], title="kinetic weight λ", row=1,
                         col=2)
        fig.update_yaxes(range=[0.0, float(np.linalg.norm(M)) + 0.3],
                         title="displacement s* (|m| = 4)", row=1, col=2)
        fig.update_layout(height=430, width=min(990, MAX_WIDTH),
                          margin=dict(l=50, r=15, t=95, b=40),
                          legend=dict(orientation="h", y=-0.17, x=0.0),
                          title=dict(font=dict(size=14)))
        return go.FigureWidget(fig)

    def _compute(self, v) -> _Frame:
        lam = float(v["kinetic_weight"])
        L = float(v["lipschitz"]) if v["w1"] == "on" else None
        k = int(np.clip(round(float(v["time"]) * N_SAVES), 0, N_SAVES))
        t = k / N_SAVES
        out = _exact(self._m, jnp.asarray(lam), jnp.asarray(np.inf if L is None else L),
                     jnp.asarray(t), self.x0, self._lam_grid)
        particles, disp, curve = (np.asarray(a) for a in out)
        if not (np.isfinite(particles).all() and np.isfinite(curve).all()):
            raise FloatingPointError("the exact flow gave non-finite values")
        return _Frame(t, k, lam, L, particles, disp, curve, self.learned[v["learned"]])

    def _draw(self, r: _Frame):
        _, learned_pts, learned_lines, exact_pts, exact_lines, curve, free, now, marks = \
            self.fig.data
        exact_pts.x, exact_pts.y = r.particles[:, 0], r.particles[:, 1]
        x0 = self._path_starts
        seg = np.stack([x0, x0 + r.disp, np.full_like(x0, np.nan)], 1).reshape(-1, 2)
        exact_lines.x, exact_lines.y = seg[:, 0], seg[:, 1]
        lp = r.learned.paths
        learned_pts.x, learned_pts.y = lp[r.k, :, 0], lp[r.k, :, 1]
        lines = np.concatenate([lp[:, :DRAWN_PATHS], np.full((1, DRAWN_PATHS, 2), np.nan)])
        lines = lines.transpose(1, 0, 2).reshape(-1, 2)
        learned_lines.x, learned_lines.y = lines[:, 0], lines[:, 1]
        learned_pts.name = f"learned flow ({r.learned.label}): particles at t"
        grid = self._grid_np
        curve.x, curve.y = grid, r.curve
        curve.name = f"exact s*(λ) at L = {'∞ (off)' if r.L is None else f'{r.L:.2f}'}"
        free.x, free.y = grid, self._free
        now.x, now.y = [r.lam], [float(np.linalg.norm(r.disp))]
        items = list(self.learned.values())
        marks.x, marks.y = [it.lam for it in items], [it.mean for it in items]
        marks.error_y.array = [2 * it.se for it in items]
        marks.text = [("L = off" if it.L is None else f"L = {it.L:g}") for it in items]
        speed = "∞" if r.L is None else f"{r.L / r.lam:.2f}" if r.lam > 0 else "∞"
        self.fig.layout.title.text = (
            f"W1⊕W2 flow N(0, I) → N((4, 0), I): λ = {r.lam:.2f}, L = "
            f"{'off' if r.L is None else f'{r.L:.2f}'}, t = {r.t:.2f}<br><span style="
            f"'font-size:12px'>straight lines at constant speed s*/T; speed limit L/λ = {speed}"
            "; the orange flow was trained at its own (λ, L), shown in the legend</span>")

    def _status_text(self, r: _Frame):
        s = float(np.linalg.norm(r.disp))
        lr = r.learned
        binds = r.L is not None and r.lam > 0 and np.isclose(s, r.L / r.lam)
        return (f"exact s* = {s:.3f}{' (the speed limit LT/λ binds)' if binds else ''}; "
                f"learned flow at {lr.label}: mean displacement {lr.mean:.3f} ± {lr.se:.3f} "
                f"(s.e.) against its exact {lr.exact:.3f}")
