"""`SymmetryExplorer`: symmetry multiplies your data, measured with exact scores."""

from typing import NamedTuple

import ipywidgets as W
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import sgmteach as sg

from .base import AbstractExplorer, to_numpy
from .plots import log_axis, marker_style

__all__ = ["SymmetryExplorer"]

FIELDS = ("memorising  ∇log ρ_t[πᴺ]", "equivariant optimum  ∇log ρ_t[S_G πᴺ]",
          "naive average  S_G ∇log ρ_t[πᴺ]")
BAR_LABELS = ("memorising<br>∇log ρ_t[πⁿ]", "equivariant optimum<br>∇log ρ_t[S_G πⁿ]",
              "naive average<br>S_G ∇log ρ_t[πⁿ]")
# The relative errors span 1e-13 (t = 1, where every field is near the truth) to 2e5
# (t = 0.005, n = 4). One fixed log range, so a slider move never rescales the axis; a value
# below it is still printed on its bar.
ERROR_RANGE_LOG10 = (-4.0, 6.0)


class _Errors(NamedTuple):
    errors: np.ndarray  # (3,), in the order of FIELDS
    originals: np.ndarray  # (n, 2): the samples
    copies: np.ndarray  # ((|G| - 1) n, 2): their images under the rest of the group


class SymmetryExplorer(AbstractExplorer):
    r"""How much a symmetry is worth, with no training: exact scores from $n$ samples.

    Controls: the group order $m$ ($C_m$ rotations, $m$ dividing the target's symmetry), the
    number of samples $n$ and the time $t$. Left: the $n$ samples (red) and their orbit copies
    (grey), the symmetrised empirical measure $S_G\pi^n$. Right: the relative error of three
    fields against the population score $\nabla\log p_t$, computed by
    `sg.symmetry.symmetry_errors`. The claim to test: $(n, m)$ behaves like $(nm, 1)$.

    **Arguments (all optional):** `target` (default `sg.ring(8, 2.0, 0.3)`, invariant under
    $C_8$), `orders` (group orders offered, each compiled once at construction), `max_n`, `key`,
    `n_probe` (points $x_t$ the errors average over).

    **Attributes:** `data` (the `max_n` samples; the first `n` are used), `probe_x0`, `probe_z`
    (the probe points are $m_t x_0 + s_t z$), `sde`.
    """

    main_control = "n"

    def __init__(self, target=None, *, orders=(1, 2, 4, 8), max_n: int = 256, key=None,
                 n_probe: int = 2000):
        self.target = sg.ring(8, 2.0, 0.3) if target is None else target
        if self.target.dim != 2:
            raise ValueError(f"target must be 2-D to plot, got d={self.target.dim}.")
        self._orders = tuple(int(m) for m in orders)
        self._groups = {m: sg.symmetry.CyclicGroup(m) for m in self._orders}
        self._max_n = max_n
        self.sde = sg.VPSDE(0.1, 20.0)
        key = jr.key(0) if key is None else key
        dk, xk, zk = jr.split(key, 3)
        self.data = self.target.sample(max_n, key=dk)
        self.probe_x0 = self.target.sample(n_probe, key=xk)
        self.probe_z = jr.normal(zk, self.probe_x0.shape)
        super().__init__()

    def _controls(self):
        style = {"description_width": "initial"}
        return {
            "order": W.Dropdown(options=[(f"C{m}  (|G| = {m})", m) for m in self._orders],
                                value=self._orders[-1], description="group", style=style),
            "n": W.IntSlider(value=32, min=4, max=self._max_n, step=4, description="samples n",
                             style=style),
            "t": W.FloatLogSlider(value=0.15, base=10, min=-2.3, max=0, step=0.05,
                                  description="t", style=style),
        }

    def _figure(self):
        fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55],
                            subplot_titles=("samples (red) and their orbits (grey)",
                                            "relative error against the exact score"))
        fig.add_trace(go.Scatter(mode="markers", name="orbit copies",
                                 marker=dict(size=4, color="rgba(120,120,120,0.6)")), 1, 1)
        fig.add_trace(go.Scatter(mode="markers", name="samples",
                                 marker=dict(size=6, color="#d62728")), 1, 1)
        fig.add_trace(go.Bar(x=list(BAR_LABELS), name="relative error",
                             marker_color=["#7f7f7f", "#2ca02c", "#1f77b4"],
                             textposition="outside", cliponaxis=False), 1, 2)
        fig.update_yaxes(scaleanchor="x", row=1, col=1)
        lo, hi = ERROR_RANGE_LOG10
        fig.update_yaxes(**log_axis([10.0**lo, 10.0**hi]), range=[lo, hi], autorange=False,
                         title_text="E|u − ∇log p_t|² / E|∇log p_t|²", row=1, col=2)
        fig.update_xaxes(tickfont=dict(size=10), row=1, col=2)
        fig.update_layout(height=420, width=900, showlegend=False,
                          margin=dict(l=40, r=20, t=50, b=40))
        return go.FigureWidget(fig)

    def _variants(self):
        return [{"order": m} for m in self._orders]

    def _compute(self, v) -> _Errors:
        m, n = int(v["order"]), int(v["n"])
        errs, orbit = to_numpy(*sg.symmetry.symmetry_errors(
            self.target, self.sde, self._groups[m], self.data, jnp.asarray(n, self.data.dtype),
            jnp.asarray(v["t"], float), self.probe_x0, self.probe_z))
        if not np.isfinite(errs).all():
            raise FloatingPointError(f"the errors are not finite at t = {v['t']:.3g}")
        blocks = orbit.reshape(m, self._max_n, 2)[:, :n]  # group-major: block 0 is the data
        return _Errors(errs, blocks[0], blocks[1:].reshape(-1, 2))

    def _draw(self, r: _Errors):
        cp, og, bars = self.fig.data
        cp.x, cp.y = r.copies[:, 0], r.copies[:, 1]
        og.x, og.y = r.originals[:, 0], r.originals[:, 1]
        # Marker size and opacity follow the count: 4 samples must be as visible as 256.
        cp.marker.update(color="rgba(120,120,120,1)", **marker_style(len(r.copies)))
        og.marker.update(color="#d62728", **marker_style(len(r.originals)))
        bars.y = r.errors
        bars.text = [f"{e:.3g}" for e in r.errors]

    def _status_text(self, r: _Errors):
        e = r.errors
        return (f"relative error: memorising {e[0]:.3g}, equivariant optimum {e[1]:.3g}, "
                f"naive average {e[2]:.3g}")
