"""`ScoreFieldExplorer`: a learned score field beside the exact one, and its error, at time t."""

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

from .base import AbstractExplorer, to_numpy
from .plots import arrows

__all__ = ["ScoreFieldExplorer"]

# The error map's colour range, fixed for every t (s_t times the score error, in units of the
# noise scale): 0 is exact, 1 is an error as large as the exact field's typical size.
ERROR_MAX = 1.5
# The map is masked where p_t is below this fraction of its maximum: there are no data there,
# and the loss does not see the error.
DENSITY_MASK = 1e-2


@eqx.filter_jit
def _fields(model, exact, t, arrows, fine):
    _, s = exact.sde.marginal_mean_std(t)
    learned_a = jax.vmap(model, in_axes=(0, None))(arrows, t) * s
    exact_a = exact(arrows, t) * s
    learned_f = jax.vmap(model, in_axes=(0, None))(fine, t)
    err = s * jnp.linalg.norm(learned_f - exact(fine, t), axis=-1)
    pt = exact.target.diffuse(exact.sde, t)
    dens = jnp.exp(pt.log_prob(fine))
    modes = pt.means
    return learned_a, exact_a, err, dens, modes


class _Fields(NamedTuple):
    t: float
    exact_segments: np.ndarray  # arrows, NaN-separated
    learned_segments: np.ndarray
    error: np.ndarray  # (grid, grid), NaN where p_t is negligible
    modes: np.ndarray  # (k, 2): the means of p_t's components
    esm: float
    esm_se: float


class ScoreFieldExplorer(AbstractExplorer):
    r"""Learned score $s_\theta(x, t)$ against the exact $\nabla\log p_t(x)$, and their gap.

    Left: both fields on a grid as arrows scaled by $s_t$ (the noise scale, which keeps arrow
    lengths comparable across $t$): exact in black, learned in red, drawn side by side (the
    learned arrow starts a little to the right of the exact one), and the modes of $p_t$
    (crosses). Right: the error $s_t\|s_\theta - \nabla\log p_t\|$ where the data are
    ($p_t$ above 1% of its maximum; blank elsewhere, where the loss does not look), on one
    colour range for every $t$. The status line prints the $p_t$-weighted error
    $\mathbb{E}_{p_t} s_t^2\|s_\theta - \nabla\log p_t\|^2$, the explicit score-matching loss
    at $t$ (`sg.explicit_score_error`), with its standard error over the probe points.

    **Arguments (all optional):** `model` (score model `(x, t) -> s`, default an *untrained*
    `ScoreMLP`), `target` (2-D mixture, default `sg.ring()`), `sde` (default `model.sde` or
    `VPSDE(0.1, 20)`), `key`, `grid_size` (arrows per side), `n_probe` (points the loss
    averages over).

    **Attributes:** `model`, `target`, `sde`, `probe_x0`, `probe_z` (the loss's points are
    $m_t x_0 + s_t z$).
    """

    main_control = "t"

    def __init__(self, model=None, target=None, sde=None, *, key=None, grid_size: int = 17,
                 n_probe: int = 2000):
        self.target = sg.ring() if target is None else target
        if self.target.dim != 2:
            raise ValueError(f"target must be 2-D to plot, got d={self.target.dim}.")
        key = jr.key(0) if key is None else key
        mk, xk, zk = jr.split(key, 3)
        if sde is None:
            sde = getattr(model, "sde", None) or sg.VPSDE(0.1, 20.0)
        self.sde = sde
        self.untrained = model is None
        self.model = sg.ScoreMLP(2, 64, 2, key=mk, sde=sde) if model is None else model
        self._exact = sg.ExactScore(self.target, sde)
        half = float(jnp.max(jnp.linalg.norm(self.target.means, axis=-1))) + 2.0
        a = np.linspace(-half, half, grid_size)
        self._arrows = np.stack(np.meshgrid(a, a), -1).reshape(-1, 2).astype(np.float32)
        self._cell = a[1] - a[0]
        f = np.linspace(-half, half, 60)
        self._fine_axis = f
        self._fine = np.stack(np.meshgrid(f, f), -1).reshape(-1, 2).astype(np.float32)
        self.probe_x0 = self.target.sample(n_probe, key=xk)
        self.probe_z = jr.normal(zk, self.probe_x0.shape)
        super().__init__()

    def _controls(self):
        return {"t": W.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.05,
                                      description="t")}

    def _figure(self):
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
            "s_t × score: exact (black), learned (red)",
            "error s_t‖s_θ − ∇log p_t‖ where p_t > 1% of its max"))
        fig.add_trace(go.Scatter(mode="lines", name="exact s_t ∇log p_t",
                                 line=dict(color="black", width=1)), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name="learned s_t s_θ",
                                 line=dict(color="#d62728", width=1)), 1, 1)
        fig.add_trace(go.Heatmap(name="error", colorscale="Reds", zmin=0.0, zmax=ERROR_MAX,
                                 colorbar=dict(len=0.8, title=dict(text="error"))), 1, 2)
        for col in (1, 2):
            fig.add_trace(go.Scatter(mode="markers", name="modes of p_t", showlegend=col == 1,
                                     marker=dict(symbol="x", size=8, color="#1f77b4")), 1, col)
        fig.update_yaxes(scaleanchor="x", row=1, col=1)
        fig.update_yaxes(scaleanchor="x2", row=1, col=2)
        fig.update_layout(height=430, width=960, margin=dict(l=40, r=20, t=50, b=40),
                          legend=dict(orientation="h", y=-0.12), showlegend=True)
        return go.FigureWidget(fig)

    def _compute(self, v) -> _Fields:
        t = jnp.asarray(v["t"], float)
        la, ea, err, dens, modes = to_numpy(*_fields(self.model, self._exact, t, self._arrows,
                                                     self._fine))
        esm, esm_se = to_numpy(*sg.explicit_score_error(self.model, self.target, self.sde, t,
                                                     self.probe_x0, self.probe_z))
        if not (np.isfinite(la).all() and np.isfinite(err).all() and np.isfinite(esm)):
            raise FloatingPointError(f"the score is not finite at t = {float(v['t']):.3g}")
        # The median exact arrow is 0.6 of a grid cell; none is drawn longer than one cell.
        scale = 0.6 * self._cell / max(float(np.median(np.linalg.norm(ea, axis=-1))), 1e-12)
        shift = np.array([0.2 * self._cell, 0.0], np.float32)  # learned beside exact
        err = np.where(dens >= DENSITY_MASK * dens.max(), err, np.nan)
        return _Fields(float(v["t"]), arrows(self._arrows, ea, scale, self._cell),
                       arrows(self._arrows + shift, la, scale, self._cell),
                       err.reshape(len(self._fine_axis), -1), modes, float(esm), float(esm_se))

    def _draw(self, r: _Fields):
        ex, le, heat, modes_l, modes_r = self.fig.data
        ex.x, ex.y = r.exact_segments[:, 0], r.exact_segments[:, 1]
        le.x, le.y = r.learned_segments[:, 0], r.learned_segments[:, 1]
        heat.x = heat.y = self._fine_axis
        heat.z = r.error
        for m in (modes_l, modes_r):
            m.x, m.y = r.modes[:, 0], r.modes[:, 1]

    def _status_text(self, r: _Fields):
        note = "  (untrained model: pass model=...)" if self.untrained else ""
        return (f"t = {r.t:.3g}:  E_p_t s_t²‖s_θ − ∇log p_t‖² = {r.esm:.4f} ± {r.esm_se:.4f} "
                f"(s.e.){note}")
