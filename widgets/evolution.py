"""`SampleEvolution`: particles carried from the prior to the data by the reverse process."""

import equinox as eqx
import ipywidgets as W
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go

import sgmteach as sg

from .base import Explorer, default_particles, to_numpy
from .schedule import BETA_MIN

__all__ = ["SampleEvolution"]


@eqx.filter_jit
def _evolve(score, target, beta_max, t0, key, n, method, steps, n_saves, grid_size, half):
    sde = sg.VPSDE(BETA_MIN, beta_max) if score is None else score.sde
    fn = sg.ExactScore(target, sde) if score is None else score
    ts, xs = sg.trajectories(fn, sde, n, target.dim, key=key, method=method,
                             steps=steps, n_saves=n_saves, t0=t0)
    axis = jnp.linspace(-half, half, grid_size)
    pts = jnp.stack(jnp.meshgrid(axis, axis), -1)
    dens = jax.vmap(lambda t: jnp.exp(target.diffuse(sde, t).log_prob(pts)))(ts)
    return ts, xs, axis, dens


class SampleEvolution(Explorer):
    r"""Reverse-time evolution of particles, with a play button and a time scrubber.

    Trajectories are computed once per parameter change (`method`, `beta_max`, `t0`); moving
    the scrubber (`frame`) or pressing play only redraws. Beneath the particles lies the exact
    marginal $p_t$ of the forward process at the frame's time, which the particles should match.

    **Arguments (all optional):** `score` (a score model with an `sde` attribute, e.g. a trained
    `ScoreMLP(..., sde=sde)`; default: the exact score, and then `beta_max` is a control),
    `target` (2-D `GaussianMixture`, default `sg.ring()`), `n`, `key`, `steps`, `n_saves`.
    """

    debounce_s = 0.15

    def __init__(self, score=None, target=None, *, n: int | None = None, key=None,
                 steps: int = 400, n_saves: int = 40, grid_size: int = 50, n_paths: int = 24):
        self.target = sg.ring() if target is None else target
        if self.target.dim != 2:
            raise ValueError(f"target must be 2-D to plot, got d={self.target.dim}.")
        if score is not None and getattr(score, "sde", None) is None:
            raise ValueError("score must carry its SDE (e.g. ScoreMLP(..., sde=sde)).")
        self.score = score
        self._key = jr.key(0) if key is None else key
        self._n = default_particles() if n is None else n
        self._steps, self._n_saves, self._grid = steps, n_saves, grid_size
        self._n_paths = min(n_paths, self._n)
        radius = float(jnp.max(jnp.linalg.norm(self.target.means, axis=-1)))
        self._half = max(radius + 1.5, 3.5)
        self._cache_key = None
        self.play = W.Play(value=0, min=0, max=n_saves, step=1, interval=120,
                           description="play")
        super().__init__()
        W.jslink((self.play, "value"), (self.sliders["frame"], "value"))
        self.children = (W.HBox([self.play, self.children[0]]), *self.children[1:])
        other = "ode" if self.sliders["method"].value == "sde" else "sde"
        self._trajectories(other, self.sliders["beta_max"].value, self.sliders["t0"].value)

    def _controls(self):
        style = {"description_width": "initial"}
        learned = self.score is not None
        return {
            "method": W.Dropdown(options=[("reverse SDE", "sde"), ("probability-flow ODE", "ode")],
                                 value="sde", description="sampler", style=style),
            "beta_max": W.FloatLogSlider(value=20.0, base=10, min=0.0, max=1.6, step=0.01,
                                         description="β_max", disabled=learned, style=style,
                                         continuous_update=False),
            "t0": W.FloatLogSlider(value=1e-3, base=10, min=-4, max=-1, step=0.1,
                                   description="t0 (stop)", style=style,
                                   continuous_update=False),
            "frame": W.IntSlider(value=self._n_saves, min=0, max=self._n_saves,
                                 description="frame", style=style),
        }

    def _figure(self):
        fig = go.Figure()
        fig.add_trace(go.Heatmap(colorscale="Blues", showscale=False, hoverinfo="skip"))
        fig.add_trace(go.Scattergl(mode="lines", name="paths",
                                   line=dict(width=1, color="rgba(80,80,80,0.5)")))
        fig.add_trace(go.Scattergl(mode="markers", name="particles",
                                   marker=dict(size=3, color="#d62728", opacity=0.5)))
        fig.update_layout(height=480, width=520, margin=dict(l=40, r=20, t=50, b=40),
                          xaxis=dict(range=[-self._half, self._half]),
                          yaxis=dict(range=[-self._half, self._half], scaleanchor="x"),
                          showlegend=False)
        return go.FigureWidget(fig)

    def _trajectories(self, method, beta_max, t0):
        cache_key = (method, float(beta_max), float(t0))
        if cache_key != self._cache_key:
            out = _evolve(self.score, self.target, jnp.asarray(beta_max, float),
                          jnp.asarray(t0, float), self._key, self._n, method, self._steps,
                          self._n_saves, self._grid, self._half)
            self._traj = to_numpy(*out)
            self._cache_key = cache_key
        return self._traj

    def _render(self, v):
        ts, xs, axis, dens = self._trajectories(v["method"], v["beta_max"], v["t0"])
        k = int(v["frame"])
        heat, paths, parts = self.fig.data
        heat.x, heat.y, heat.z = axis, axis, dens[k]
        seg = xs[: k + 1, : self._n_paths]  # (k+1, paths, 2)
        sep = np.full((1, self._n_paths, 2), np.nan)
        lines = np.concatenate([seg, sep]).transpose(1, 0, 2).reshape(-1, 2)
        paths.x, paths.y = lines[:, 0], lines[:, 1]
        parts.x, parts.y = xs[k, :, 0], xs[k, :, 1]
        self.fig.layout.title = f"t = {ts[k]:.3f}  (frame {k}/{self._n_saves})"

    def _status_text(self):
        return f"{self._n} particles, {self._steps} steps; trajectories cached for scrubbing"
