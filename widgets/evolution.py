"""`SampleEvolution`: particles carried from the prior to the data by the reverse process."""

from collections import OrderedDict
from typing import NamedTuple

import equinox as eqx
import ipywidgets as W
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go

import sgmteach as sg

from .base import AbstractExplorer, default_particles, drawn_count, to_numpy
from .plots import marker_style
from .schedule import BETA_MIN

__all__ = ["SampleEvolution"]


CACHED = 4  # parameter settings whose trajectories are kept, so toggling back is instant


class _Trajectories(NamedTuple):
    ts: np.ndarray  # (n_saves + 1,)
    xs: np.ndarray  # (n_saves + 1, drawn, 2): the display subsample of every particle path
    axis: np.ndarray
    density: np.ndarray  # (n_saves + 1, grid, grid): the exact p_t at each saved time


class _Frame(NamedTuple):
    title: str
    axis: np.ndarray
    density: np.ndarray
    paths: np.ndarray  # (points, 2), NaN-separated polylines
    particles: np.ndarray  # (drawn, 2)
    n: int
    drawn: int


@eqx.filter_jit
def _evolve(score, target, beta_max, t0, key, n, method, steps, n_saves, grid_size, half,
            drawn):
    sde = sg.VPSDE(BETA_MIN, beta_max) if score is None else score.sde
    fn = sg.ExactScore(target, sde) if score is None else score
    ts, xs = sg.trajectories(fn, sde, n, target.dim, key=key, method=method,
                             steps=steps, n_saves=n_saves, t0=t0)
    axis = jnp.linspace(-half, half, grid_size)
    pts = jnp.stack(jnp.meshgrid(axis, axis), -1)
    dens = jax.vmap(lambda t: jnp.exp(target.diffuse(sde, t).log_prob(pts)))(ts)
    return ts, xs[:, :drawn], axis, dens


class SampleEvolution(AbstractExplorer):
    r"""Reverse-time evolution of particles, with a play button and a time scrubber.

    Trajectories are computed once per parameter change (`method`, `beta_max`, `t0`, whose
    events are debounced); moving the scrubber (`frame`) or pressing play only redraws. Beneath
    the particles lies the exact marginal $p_t$ of the forward process at the frame's time,
    which the particles should match. All `n` particles are integrated; at most `MAX_DRAWN`
    are drawn.

    **Arguments (all optional):** `score` (a score model with an `sde` attribute, e.g. a trained
    `ScoreMLP(..., sde=sde)`; default: the exact score, and then `beta_max` is a control),
    `target` (2-D `GaussianMixture`, default `sg.ring()`), `n`, `key`, `steps`, `n_saves`.
    """

    main_control = "frame"

    debounced = ("method", "beta_max", "t0")

    def __init__(self, score=None, target=None, *, n: int | None = None, key=None,
                 steps: int = 400, n_saves: int = 40, grid_size: int = 50, n_paths: int = 24):
        self.target = sg.ring() if target is None else target
        if self.target.dim != 2:
            raise ValueError(f"target must be 2-D to plot, got d={self.target.dim}.")
        if score is not None and getattr(score, "sde", None) is None:
            raise ValueError("score must carry its SDE (e.g. ScoreMLP(..., sde=sde)).")
        if n_saves < 1 or steps % n_saves:
            raise ValueError(f"steps ({steps}) must be a multiple of n_saves ({n_saves}).")
        self.score = score
        self._key = jr.key(0) if key is None else key
        self._n = default_particles() if n is None else int(n)
        self._drawn = drawn_count(self._n)
        self._steps, self._n_saves, self._grid = steps, n_saves, grid_size
        self._n_paths = min(n_paths, self._drawn)
        radius = float(jnp.max(jnp.linalg.norm(self.target.means, axis=-1)))
        self._half = max(radius + 1.5, 3.5)
        self._cache: OrderedDict = OrderedDict()
        # Play starts at the last frame, like the scrubber: jslink copies Play's value to the
        # scrubber in the browser, so a Play at 0 would show frame 0 while the kernel drew the
        # last. Pressed at the last frame, Play restarts from frame 0.
        self.play = W.Play(value=n_saves, min=0, max=n_saves, step=1, interval=120,
                           description="play")
        super().__init__()

    def _controls(self):
        style = {"description_width": "initial"}
        learned = self.score is not None
        return {
            "method": W.Dropdown(options=[("reverse SDE", "sde"), ("probability-flow ODE", "ode")],
                                 value="sde", description="sampler", style=style),
            "beta_max": W.FloatLogSlider(value=20.0, base=10, min=0.0, max=1.6, step=0.01,
                                         description="β_max", disabled=learned, style=style,
                                         tooltip="set by the score model's SDE" if learned
                                         else None,
                                         continuous_update=False),
            "t0": W.FloatLogSlider(value=1e-3, base=10, min=-4, max=-1, step=0.1,
                                   description="t0 (stop)", style=style,
                                   continuous_update=False),
            "frame": W.IntSlider(value=self._n_saves, min=0, max=self._n_saves,
                                 description="frame", style=style),
        }

    def _layout_controls(self):
        W.jslink((self.play, "value"), (self.sliders["frame"], "value"))
        return W.HBox([self.play, super()._layout_controls()])

    def _figure(self):
        fig = go.Figure()
        fig.add_trace(go.Heatmap(colorscale="Blues", showscale=False, hoverinfo="skip",
                                 zsmooth="best", name="exact p_t"))
        fig.add_trace(go.Scattergl(mode="lines", name=f"{self._n_paths} paths so far",
                                   line=dict(width=1, color="rgba(80,80,80,0.5)")))
        fig.add_trace(go.Scattergl(mode="markers", name="particles",
                                   marker=dict(color="#d62728", **marker_style(self._drawn))))
        fig.update_layout(height=480, width=520, margin=dict(l=40, r=20, t=50, b=40),
                          xaxis=dict(range=[-self._half, self._half]),
                          yaxis=dict(range=[-self._half, self._half], scaleanchor="x"),
                          showlegend=False)
        return go.FigureWidget(fig)

    def _variants(self):
        return [{"method": "sde"}, {"method": "ode"}]

    def _trajectories(self, method, beta_max, t0) -> _Trajectories:
        """The saved states of the reverse process, memoised on its parameters."""
        cache_key = (method, float(beta_max), float(t0))
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        out = _Trajectories(*to_numpy(*_evolve(
            self.score, self.target, jnp.asarray(beta_max, float), jnp.asarray(t0, float),
            self._key, self._n, method, self._steps, self._n_saves, self._grid, self._half,
            self._drawn)))
        if not np.isfinite(out.xs).all():
            raise FloatingPointError(f"the {method} sampler diverged (non-finite particles)")
        self._cache[cache_key] = out
        while len(self._cache) > CACHED:
            self._cache.popitem(last=False)
        return out

    def _compute(self, v) -> _Frame:
        tr = self._trajectories(v["method"], v["beta_max"], v["t0"])
        k = int(v["frame"])
        seg = tr.xs[: k + 1, : self._n_paths]  # (k+1, paths, 2)
        sep = np.full((1, self._n_paths, 2), np.nan)
        paths = np.concatenate([seg, sep]).transpose(1, 0, 2).reshape(-1, 2)
        title = f"t = {tr.ts[k]:.3f}  (frame {k}/{self._n_saves})"
        return _Frame(title, tr.axis, tr.density[k], paths, tr.xs[k], self._n, self._drawn)

    def _draw(self, r: _Frame):
        heat, paths, parts = self.fig.data
        heat.x, heat.y, heat.z = r.axis, r.axis, r.density
        paths.x, paths.y = r.paths[:, 0], r.paths[:, 1]
        parts.x, parts.y = r.particles[:, 0], r.particles[:, 1]
        self.fig.layout.title = r.title

    def _status_text(self, r: _Frame):
        drawn = f" ({r.drawn} drawn)" if r.drawn < r.n else ""
        # Frame 0 is the prior at t = T whatever the settings: say so, or a move of t0 there
        # looks like a broken control.
        return (f"{r.n} particles{drawn}, {self._steps} steps. Frame 0 is t = T (the prior, the "
                f"same for every setting); t0 is where the last frame stops")
