"""`BoundExplorer`: a rate or bound curve against measured points, on log-log axes."""

import functools
from typing import NamedTuple

import ipywidgets as W
import jax.random as jr
import numpy as np
import plotly.graph_objects as go

import sgmteach as sg

from .base import AbstractExplorer
from .plots import log_axis

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


GROUP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


class _Curve(NamedTuple):
    curve: np.ndarray  # the bound on the drawing grid of n
    slope: float  # its least-squares log-log slope over the measured n
    above: int  # measured points on or under the curve


class BoundExplorer(AbstractExplorer):
    r"""A bound $b(n; \theta)$ drawn against measured values $y(n)$, with $\theta$ on sliders.

    The status line prints the least-squares log-log slope of the measured points (of each
    group, when there are groups) beside the curve's own slope over the same range, so a
    learner compares rates, not just pictures.

    **Arguments (all optional):** `bound` (callable `(n, **params) -> values`, default
    `power_law`), `points` (`(n, y)` or `(n, y, yerr)`; default: the measured Monte-Carlo floor of
    sliced $W_1$ on the ring at five sizes), `params` (dict name -> `(min, max, value)`), `key`,
    `labels` (`(x_label, y_label)`), `groups` (one label per point, e.g. `"|G| = 4"`: each group
    is drawn in its own colour, with a legend, so the curves a text asks to compare can be told
    apart).
    """

    def __init__(self, bound=None, points=None, params=None, *, key=None,
                 labels=("n", "value"), groups=None):
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
        groups = ["measured"] * len(self._n) if groups is None else [str(g) for g in groups]
        if len(groups) != len(self._n):
            raise ValueError(f"groups must give one label per point: {len(groups)} labels for "
                             f"{len(self._n)} points.")
        self._groups = np.asarray(groups)
        self._group_names = list(dict.fromkeys(groups))  # in order of first appearance
        if params is None:
            c0 = float(self._y[0] * self._n[0] ** 0.5)
            params = {"c": (c0 / 10, c0 * 10, c0), "rate": (0.05, 1.5, 0.5)}
        self._params = params
        self._labels = labels
        self._curve_n = np.geomspace(self._n.min() / 2, self._n.max() * 2, 100)
        self._slopes = {g: _slope(self._n[self._groups == g], self._y[self._groups == g])
                        for g in self._group_names}
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
        traces = [go.Scatter(mode="lines", name="bound (sliders)", line=dict(color="#d62728"))]
        for i, g in enumerate(self._group_names):
            sel = self._groups == g
            err = None if self._err is None else dict(type="data", array=self._err[sel])
            traces.append(go.Scatter(x=self._n[sel], y=self._y[sel], mode="markers", name=g,
                                     error_y=err, marker=dict(
                                         size=9, color=GROUP_COLOURS[i % len(GROUP_COLOURS)])))
        fig = go.Figure(traces)
        # Fixed ranges: the points and every curve the sliders can draw stay on screen, and the
        # axes never rescale under a drag.
        x_range = np.log10([self._curve_n.min(), self._curve_n.max()])
        y_lo, y_hi = self._y.min(), self._y.max()
        fig.update_layout(height=400, width=700, margin=dict(l=60, r=20, t=40, b=50),
                          xaxis={**log_axis(self._curve_n, title=self._labels[0]),
                                 "range": list(x_range), "autorange": False},
                          yaxis={**log_axis([y_lo / 10, y_hi * 10], title=self._labels[1]),
                                 "range": [np.log10(y_lo) - 1, np.log10(y_hi) + 1],
                                 "autorange": False},
                          legend=dict(x=1.02, y=1.0))
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
        return _Curve(curve, _slope(self._n, at), int((at >= self._y).sum()))

    def _draw(self, r: _Curve):
        self.fig.data[0].x, self.fig.data[0].y = self._curve_n, r.curve

    def _status_text(self, r: _Curve):
        measured = ", ".join(f"{g} {s:+.3f}" for g, s in self._slopes.items() if np.isfinite(s))
        return (f"log-log slope: measured {measured}; curve {r.slope:+.3f}.  "
                f"Curve ≥ data at {r.above}/{len(self._n)} points")


def _slope(n, y) -> float:
    """Least-squares slope of log y against log n (NaN for fewer than two distinct n)."""
    if len(np.unique(n)) < 2:
        return float("nan")
    return float(np.polyfit(np.log(n), np.log(y), 1)[0])
