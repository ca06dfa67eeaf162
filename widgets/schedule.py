"""`NoiseScheduleExplorer`: forward noising of a mixture, particles beside the exact density."""

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

from .base import AbstractExplorer, default_particles, drawn_count, to_numpy
from .plots import marker_style

__all__ = ["NoiseScheduleExplorer", "make_sde", "SDE_KINDS"]

SDE_KINDS = {
    "VP, linear β": "vp-linear",
    "VP, cosine": "vp-cosine",
    "sub-VP, linear β": "subvp-linear",
    "VE, geometric σ": "ve",
}
BETA_MIN, SIGMA_MIN = 0.1, 0.01


def make_sde(kind: str, noise):
    """The SDE a kind name stands for, with `noise` its beta_max (VP kinds) or sigma_max (VE).

    `noise` becomes an array, so under jit a new value is traced, never recompiled.
    """
    noise = jnp.asarray(noise, float)
    if kind == "vp-linear":
        return sg.VPSDE(BETA_MIN, noise)
    if kind == "vp-cosine":
        return sg.VPSDE(BETA_MIN, noise, "cosine")
    if kind == "subvp-linear":
        return sg.SubVPSDE(BETA_MIN, noise)
    if kind == "ve":
        return sg.VESDE(SIGMA_MIN, noise)
    raise ValueError(f"unknown SDE kind {kind!r}; choose one of {list(SDE_KINDS.values())}")


class _Frame(NamedTuple):
    t: float
    m: float
    s: float
    particles: np.ndarray  # (drawn, 2): the display subsample of x_t
    n: int  # particles computed
    axis: np.ndarray
    density: np.ndarray
    ts: np.ndarray
    curve_m: np.ndarray
    curve_s: np.ndarray


@eqx.filter_jit
def _frame(sde, target, x0, z, t, ts, grid_size: int, drawn: int):
    m, s = sde.marginal_mean_std(t)
    xt = m * x0[:drawn] + s * z[:drawn]
    radius = jnp.max(jnp.linalg.norm(target.means, axis=-1)) + 3 * jnp.sqrt(
        jnp.max(jnp.linalg.eigvalsh(target.covs)))
    half = m * radius + 3.5 * s
    axis = jnp.linspace(-half, half, grid_size)
    gx, gy = jnp.meshgrid(axis, axis)
    pts = jnp.stack([gx, gy], -1)
    density = jnp.exp(target.diffuse(sde, t).log_prob(pts))
    curve_m, curve_s = jax.vmap(sde.marginal_mean_std)(ts)
    return xt, axis, density, curve_m, curve_s, m, s


def _noise_label(kind: str) -> str:
    return "σ_max" if kind == "ve" else "β_max"


class NoiseScheduleExplorer(AbstractExplorer):
    r"""Forward SDE on a 2-D mixture: particles $x_t = m_t x_0 + s_t z$ over the exact $p_t$.

    Controls: the SDE (`sde`), its largest noise level `noise` ($\beta_{\max}$ for the VP kinds,
    $\sigma_{\max}$ for VE; the label follows the SDE) and the time `t`.
    Particles keep their $x_0$ and $z$, so moving `t` moves the same cloud; at most
    `MAX_DRAWN` of them are drawn. The right panel shows $m_t$ and $s_t$ over $[0, T]$ with
    the current time marked.

    **Arguments (all optional):** `target` (a 2-D `GaussianMixture`, default `sg.ring()`),
    `n` (particles, default by backend), `key`, `grid_size` (density grid).
    """

    main_control = "t"

    def __init__(self, target=None, *, n: int | None = None, key=None, grid_size: int = 60):
        self.target = sg.ring() if target is None else target
        if self.target.dim != 2:
            raise ValueError(f"target must be 2-D to plot, got d={self.target.dim}.")
        key = jr.key(0) if key is None else key
        self.n = default_particles() if n is None else int(n)
        xk, zk = jr.split(key)
        self._x0 = self.target.sample(self.n, key=xk)
        self._z = jr.normal(zk, self._x0.shape)
        self._ts = jnp.linspace(0.0, 1.0, 101)
        self._grid_size = grid_size
        super().__init__()

    def _controls(self):
        style = {"description_width": "initial"}
        sde = W.Dropdown(options=list(SDE_KINDS.items()), value="vp-linear", description="SDE",
                         style=style)
        noise = W.FloatLogSlider(value=20.0, base=10, min=-0.3, max=1.7, step=0.01,
                                 description=_noise_label(sde.value), style=style)
        sde.observe(lambda change: setattr(noise, "description", _noise_label(change["new"])),
                    names="value")
        return {
            "sde": sde,
            "noise": noise,
            "t": W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.01, description="t",
                               style=style),
        }

    def _figure(self):
        fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42],
                            subplot_titles=("particles over the exact density p_t",
                                            "mean factor m_t and noise s_t"))
        fig.add_trace(go.Heatmap(colorscale="Blues", showscale=False, hoverinfo="skip",
                                 zsmooth="best", name="exact density p_t"), 1, 1)
        # The left panel's title names its particles; the legend is the right panel's alone.
        fig.add_trace(go.Scattergl(mode="markers", name="particles x_t", showlegend=False,
                                   marker=dict(color="#d62728",
                                               **marker_style(drawn_count(self.n)))), 1, 1)
        fig.add_trace(go.Scatter(name="m_t", line=dict(color="#1f77b4")), 1, 2)
        fig.add_trace(go.Scatter(name="s_t", line=dict(color="#ff7f0e")), 1, 2)
        fig.add_trace(go.Scatter(mode="markers", name="now", marker=dict(size=10, color="black"),
                                 showlegend=False), 1, 2)
        fig.update_xaxes(title_text="t", row=1, col=2)
        fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain", row=1, col=1)
        fig.update_xaxes(constrain="domain", row=1, col=1)
        # The legend sits inside the right panel, next to the curves it names.
        fig.update_layout(height=420, width=900, margin=dict(l=40, r=20, t=50, b=40),
                          legend=dict(x=0.98, y=0.55, xanchor="right",
                                      bgcolor="rgba(255,255,255,0.8)"))
        return go.FigureWidget(fig)

    def _variants(self):
        return [{"sde": kind} for kind in SDE_KINDS.values()]

    def _compute(self, v) -> _Frame:
        sde = make_sde(v["sde"], v["noise"])
        t = float(v["t"])
        xt, axis, density, cm, cs, m, s = to_numpy(*_frame(
            sde, self.target, self._x0, self._z, jnp.asarray(t, float), self._ts * sde.T,
            self._grid_size, drawn_count(self.n)))
        return _Frame(t, float(m), float(s), xt, self.n, axis, density, np.asarray(self._ts),
                      cm, cs)

    def _draw(self, r: _Frame):
        heat, parts, mline, sline, now = self.fig.data
        heat.x, heat.y, heat.z = r.axis, r.axis, r.density
        parts.x, parts.y = r.particles[:, 0], r.particles[:, 1]
        mline.x, mline.y = r.ts, r.curve_m
        sline.x, sline.y = r.ts, r.curve_s
        now.x, now.y = [r.t, r.t], [r.m, r.s]
        # VP kinds live in [0, 1]: a fixed range, so moving t or β_max never rescales. VE's s_t
        # grows to σ_max, so its range follows σ_max.
        top = max(1.0, float(np.max(r.curve_s)))
        self.fig.layout.yaxis2.range = [-0.05 * top, 1.05 * top]

    def _status_text(self, r: _Frame):
        k = len(r.particles)
        drawn = f";  {k} of {r.n} particles drawn" if k < r.n else ""
        return f"t = {r.t:.2f}:  m_t = {r.m:.4f},  s_t = {r.s:.4f}{drawn}"
