"""`BoundExplorer`: a rate or bound curve against measured points, on log-log axes."""

import functools
from typing import NamedTuple

import ipywidgets as W
import jax.random as jr
import numpy as np
import plotly.graph_objects as go

import sgmteach as sg

from .base import AbstractExplorer

__all__ = ["BoundExplorer", "power_law"]


# Slider labels are words, not Python names; other parameters get their name with spaces.
LABELS = {"c": "constant C", "rate": "rate (slope)",
          "group_order": "|G| (sample multiplier)"}


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def power_law(n, c=1.0, rate=0.5):
    r"""$c\,n^{-\text{rate}}$."""
    return c * np.asarray(n, float) ** (-rate)


def _default_points(key):
    # The Monte-Carlo floor of sliced W1 on the ring target, measured at five sample sizes.
    target = sg.ring()
    metric = functools.partial(sg.sliced_wasserstein, key=jr.fold_in(key, 1))
    ns = np.array([250, 500, 1000, 2000, 4000])
    floors = [sg.mc_floor(metric, target, int(n), key=jr.fold_in(key, int(n)), repeats=6)
              for n in ns]
    return ns, np.array([f.mean for f in floors]), np.array([f.std for f in floors])


class _Curve(NamedTuple):
    curve: np.ndarray  # the bound on the drawing grid of n
    slope: float  # its least-squares log-log slope over the measured n
    above: int  # measured points on or under the curve


class BoundExplorer(AbstractExplorer):
    r"""A bound $b(n; \theta)$ drawn against measured values $y(n)$, with $\theta$ on sliders.

    The status line prints the least-squares log-log slope of the measured points beside the
    curve's own slope over the same range, so a learner compares rates, not just pictures.

    **Arguments (all optional):** `bound` (callable `(n, **params) -> values`, default
    `power_law`), `points` (`(n, y)` or `(n, y, yerr)`; default: the measured Monte-Carlo floor of
    sliced $W_1$ on the ring at five sizes), `params` (dict name -> `(min, max, value)`), `key`,
    `labels` (`(x_label, y_label)`).
    """

    def __init__(self, bound=None, points=None, params=None, *, key=None,
                 labels=("n", "value")):
        self.bound = power_law if bound is None else bound
        if points is None:
            points = _default_points(jr.key(0) if key is None else key)
            labels = ("sample size n", "sliced W1 floor")
        n, y, *err = points
        self._n, self._y = np.asarray(n, float), np.asarray(y, float)
        self._err = np.asarray(err[0], float) if err else None
        if self._n.shape != self._y.shape or self._n.ndim != 1 or len(self._n) < 2:
            raise ValueError("points must hold at least two (n, y) pairs of equal length.")
        if (self._n <= 0).any() or (self._y <= 0).any():
            raise ValueError("points must be positive to draw on log-log axes.")
        if params is None:
            c0 = float(self._y[0] * self._n[0] ** 0.5)
            params = {"c": (c0 / 10, c0 * 10, c0), "rate": (0.05, 1.5, 0.5)}
        self._params = params
        self._labels = labels
        self._curve_n = np.geomspace(self._n.min() / 2, self._n.max() * 2, 100)
        self._slope = float(np.polyfit(np.log(self._n), np.log(self._y), 1)[0])
        super().__init__()

    def _controls(self):
        out, style = {}, {"description_width": "initial"}
        for name, (lo, hi, value) in self._params.items():
            if not lo < hi or not lo <= value <= hi:
                raise ValueError(f"param {name!r} needs min < max and value in range.")
            if lo > 0 and hi / lo > 20:
                out[name] = W.FloatLogSlider(value=value, base=10, min=np.log10(lo),
                                             max=np.log10(hi), step=0.01,
                                             description=_label(name), style=style)
            else:
                out[name] = W.FloatSlider(value=value, min=lo, max=hi, step=(hi - lo) / 200,
                                          description=_label(name), style=style)
        return out

    def _figure(self):
        err = None if self._err is None else dict(type="data", array=self._err)
        fig = go.Figure([
            go.Scatter(x=self._n, y=self._y, mode="markers", name="measured", error_y=err,
                       marker=dict(size=9, color="#1f77b4")),
            go.Scatter(mode="lines", name="bound", line=dict(color="#d62728")),
        ])
        fig.update_layout(height=400, width=620, margin=dict(l=50, r=20, t=40, b=50),
                          xaxis=dict(type="log", title=self._labels[0]),
                          yaxis=dict(type="log", title=self._labels[1]))
        return go.FigureWidget(fig)

    def _compute(self, v) -> _Curve:
        curve = np.asarray(self.bound(self._curve_n, **v), float)
        if curve.shape != self._curve_n.shape or not np.isfinite(curve).all():
            raise ValueError("the bound returned non-finite values or the wrong shape")
        if (curve <= 0).any():
            raise ValueError("the bound is not positive here; log axes cannot show it")
        at = np.asarray(self.bound(self._n, **v), float)
        if at.shape != self._n.shape or not (np.isfinite(at).all() and (at > 0).all()):
            raise ValueError("the bound is not positive and finite at the measured n")
        slope = float(np.polyfit(np.log(self._n), np.log(at), 1)[0])
        return _Curve(curve, slope, int((at >= self._y).sum()))

    def _draw(self, r: _Curve):
        self.fig.data[1].x, self.fig.data[1].y = self._curve_n, r.curve

    def _status_text(self, r: _Curve):
        return (f"measured log-log slope {self._slope:+.3f}, curve slope "
                f"{r.slope:+.3f}; curve ≥ data at {r.above}/{len(self._n)} points")
