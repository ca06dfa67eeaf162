"""Explorers for tutorial 05 (nonlinear DSM): a drift that carries structure, and the variance
problem of the one-step target with its control variates."""

from collections import OrderedDict
from typing import NamedTuple

import equinox as eqx
import ipywidgets as W
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import sgmteach as sg
from sgmteach import nonlinear as nl
from sgmteach.nonlinear import fokker_planck

from .base import AbstractExplorer, default_particles, drawn_count, to_numpy
from .plots import MAX_WIDTH, log_axis, marker_style

__all__ = ["ControlVariateExplorer", "LangevinExplorer"]

RAW, CONTROLLED, THEORY = "#d62728", "#1f77b4", "#7f7f7f"


def imbalanced_mixture(std: float = 0.4) -> sg.GaussianMixture:
    """Two modes at $(\\mp 2, 0)$ with weights 0.9 / 0.1 and isotropic `std`: tutorial 05's
    mode-imbalanced mixture."""
    return sg.GaussianMixture.isotropic(jnp.array([0.9, 0.1]),
                                        jnp.array([[-2.0, 0.0], [2.0, 0.0]]), std)


def _g3(x) -> str:
    """`x` to 3 significant digits, positional from 0.001 to 10^6 (`1998.9` -> `2000`)."""
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        text = np.format_float_positional(x, precision=3, unique=False, fractional=False,
                                          trim="k")
        return text.rstrip(".")
    return f"{x:.2e}"


def _spread(losses: np.ndarray) -> tuple[float, float]:
    """Standard deviation and its standard error, $\\sqrt{m_4 - s^4}/(2s\\sqrt n)$ (delta
    method; $m_4$ the fourth central moment)."""
    v = np.asarray(losses, np.float64)
    dev = v - v.mean()
    s2 = float(np.mean(dev**2))
    m4 = float(np.mean(dev**4))
    s = np.sqrt(s2)
    return float(s), float(np.sqrt(max(m4 - s2**2, 0.0)) / (2 * max(s, 1e-300) * np.sqrt(v.size)))


# --- ControlVariateExplorer --------------------------------------------------------------------


@eqx.filter_jit
def _ndsm_pair(model, sde, x, t, h, z, weighting, control_variate, cv_model):
    """Raw and controlled per-sample losses (the same normals) and the dropped constant."""
    raw = nl.ndsm_losses(model, sde, x, t, h, z=z, weighting=weighting)
    const = nl.ndsm_constant(sde, t, h, x.shape[1], weighting=weighting)
    if control_variate == "none":
        return raw, None, const
    cv = nl.ndsm_losses(model, sde, x, t, h, z=z, weighting=weighting,
                        control_variate=control_variate,
                        cv_model=cv_model if control_variate == "neural" else None)
    return raw, cv, const


class _Curves(NamedTuple):
    raw: np.ndarray  # (len(H_GRID), 2): spread and its s.e. at each h of the grid
    cv: np.ndarray | None
    peak: float  # largest share of samples in one histogram bin, over the grid of h


class _CVFrame(NamedTuple):
    h: float
    cv: str
    weighting: str
    raw: np.ndarray  # (n,) per-sample losses
    controlled: np.ndarray | None
    const: float
    curves: _Curves
    theory: np.ndarray  # sqrt(2d) lambda / (sigma^2 h) on H_GRID


H_GRID = np.logspace(-4, -1, 13)
BIN = 0.1  # histogram bins of |loss - mean| are 0.1 decade wide, whatever the range


def _log_deviations(values):
    r"""$\log_{10}|\ell - \bar\ell|$ of each sample (an exact 0 goes far left, off the axis)."""
    v = np.asarray(values, np.float64)
    return np.log10(np.maximum(np.abs(v - v.mean()), 1e-300))


def _histogram(values, lo: float, hi: float):
    """Bin edges `10**u` and the share of samples per bin (repeated last, for a step line)."""
    edges = np.arange(lo, hi + BIN / 2, BIN)
    counts = np.histogram(_log_deviations(values), edges)[0] / np.size(values)
    return 10.0**edges, np.append(counts, counts[-1])


_CV_NAMES = {"plugin": "plug-in CV", "neural": "neural CV", "none": "no CV"}


THEORY_NAME = "√(2d)·λ/(σ²h): the ‖Z‖² term alone"


class ControlVariateExplorer(AbstractExplorer):
    r"""The variance problem of NDSM's one-step target, and what a control variate removes.

    The raw per-sample loss $\lambda\|s_\theta(X_{k+1}) + Z_k/(\sigma_k\sqrt h)\|^2$ of one Euler
    step carries two zero-mean terms whose spread explodes as $h \to 0$: with $\lambda = 1$
    (weighting `"none"`, the default here) its standard deviation is at least
    $\sqrt{2d}/(\sigma^2 h)$, the notes' $2/h$ in $d = 2$ with $\sigma = 1$. The control
    variates (`sg.nonlinear.ndsm_losses(..., control_variate=...)`) subtract them: their
    spread stays flat in $h$. With $\lambda = \sigma^2 h$ (`"sigma2h"`) the raw spread stays
    near $\sqrt{2d}$ and the controlled one shrinks like $h$ instead. The status line checks
    $\mathbb E\,\ell_{\text{raw}} - \mathbb E\,\ell_{\text{CV}} = \lambda d/(\sigma^2 h)$
    (`ndsm_constant`) on the same normals $Z_k$.

    Left: the spread (± its standard error) against $h$ on a fixed grid, for the raw loss, the
    selected control variate and the $\|Z\|^2$ term alone; the diamonds are the current $h$.
    Right: how far each sample's loss lies from its mean, $|\ell - \bar\ell|$ on a log axis
    (the losses span orders of magnitude across $h$): moving $h$ slides the raw histogram a
    decade per decade while the controlled one stays put. Both panels' axes are fixed for
    each weighting.

    The model is fixed and smooth, the exact score of the reference $\rho$: the variance is in
    the target, not the model. The states are $X_0$, draws of a mixture off the reference, so
    $t_k = 0$ and $\sigma^2 = \beta(0) = 0.1$. `"neural"` is the residual network of
    `init_control_variate`, untrained, so it equals the plug-in one (pass `cv_model=` a
    trained one). The six (control variate, weighting) pairs compile at construction; a move
    of `h` only evaluates, in about 25 ms for 4000 samples on a 2-core CPU.

    **Arguments (all optional):** `model` (`(x, t) -> s`, default the exact score of $\rho$),
    `cv_model` (the residual network for `"neural"`), `n` (samples), `key`.

    **Attributes:** `sde`, `model`, `cv_model`, `x` (the states $X_k$), `t`, `z` (the normals).
    """

    main_control = "h"

    def __init__(self, model=None, cv_model=None, *, n: int | None = None, key=None):
        key = jr.key(0) if key is None else key
        xk, zk, ck = jr.split(key, 3)
        self.sde = nl.LangevinSDE(imbalanced_mixture(0.4), 0.1, 10.0)
        self.untrained_cv = cv_model is None
        self.model = nl.ReferenceScore(self.sde.rho()) if model is None else model
        self.cv_model = nl.init_control_variate(2, key=ck) if cv_model is None else cv_model
        self.n = default_particles(cpu=4000) if n is None else int(n)
        data = sg.GaussianMixture.isotropic(jnp.array([0.5, 0.5]),
                                            jnp.array([[-1.0, 1.0], [1.5, -0.5]]), 0.5)
        self.x = data.sample(self.n, key=xk)
        self.t = jnp.asarray(0.0)
        self.z = jr.normal(zk, self.x.shape)
        self._sigma2 = float(self.sde.diffusion(self.t)) ** 2
        self._curves: dict = {}
        for weighting in nl.NDSM_WEIGHTINGS:  # every variant compiles here, once
            for cv in nl.CONTROL_VARIATES:
                self._curves[cv, weighting] = self._spread_curves(cv, weighting)
        self._window = {w: self._window_for(w) for w in nl.NDSM_WEIGHTINGS}
        super().__init__()

    # -- precomputation -----------------------------------------------------------------------
    def _losses(self, h, cv, weighting):
        raw, controlled, const = _ndsm_pair(self.model, self.sde, self.x, self.t,
                                            jnp.asarray(h, float), self.z, weighting, cv,
                                            self.cv_model)
        raw, const = to_numpy(raw, const)
        controlled = None if controlled is None else np.asarray(controlled)
        if not (np.isfinite(raw).all() and (controlled is None or np.isfinite(controlled).all())):
            raise FloatingPointError(f"the NDSM loss is not finite at h = {float(h):.3g}")
        return raw, controlled, float(const)

    def _spread_curves(self, cv, weighting) -> _Curves:
        raw, ctl, peak = [], [], 0.0
        for h in H_GRID:
            r, c, _ = self._losses(h, cv, weighting)
            raw.append(_spread(r))
            if c is not None:
                ctl.append(_spread(c))
            for v in (r,) if c is None else (r, c):
                peak = max(peak, _histogram(v, -30.0, 30.0)[1].max())
        return _Curves(np.array(raw), np.array(ctl) if ctl else None, float(peak))

    def _window_for(self, weighting):
        """`(lo, hi, top, spreads)` per weighting: the histogram's decades `[lo, hi]` (2 below
        the smallest spread, 1 above the largest), the top of its y axis, and every spread
        drawn; both panels' axes cover every control variate, so choosing one moves nothing."""
        curves = [c for (_, w), c in self._curves.items() if w == weighting]
        spreads = np.concatenate([np.ravel(c.raw[:, 0]) for c in curves]
                                 + [np.ravel(c.cv[:, 0]) for c in curves if c.cv is not None]
                                 + [self._theory(weighting)])
        lo = float(np.floor(np.log10(spreads.min()))) - 2.0
        hi = float(np.ceil(np.log10(spreads.max()))) + 1.0
        return lo, hi, 1.2 * max(c.peak for c in curves), spreads

    def _theory(self, weighting):
        lam = self._sigma2 * H_GRID if weighting == "sigma2h" else np.ones_like(H_GRID)
        return np.sqrt(2 * self.x.shape[1]) * lam / (self._sigma2 * H_GRID)

    # -- the explorer -------------------------------------------------------------------------
    def _controls(self):
        style = {"description_width": "initial"}
        neural = "neural r_φ (untrained: = plug-in)" if self.untrained_cv else "neural r_φ"
        return {
            "h": W.FloatLogSlider(value=1e-3, base=10, min=-4, max=-1, step=0.05,
                                  description="step h", style=style, readout_format=".1e"),
            "control_variate": W.Dropdown(options=[("plug-in s_θ(μ)", "plugin"),
                                                   (neural, "neural"),
                                                   ("none (raw only)", "none")],
                                          value="plugin", description="control variate",
                                          style=style),
            "weighting": W.Dropdown(options=[("λ = 1", "none"), ("λ = σ²h", "sigma2h")],
                                    value="none", description="weighting", style=style),
        }

    def _variants(self):
        return [{"control_variate": cv, "weighting": w}
                for w in nl.NDSM_WEIGHTINGS for cv in nl.CONTROL_VARIATES]

    def _figure(self):
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
            "spread of the per-sample loss against the step h",
            "|loss − mean| of each sample, at the current h"))
        err = dict(type="data", visible=True, thickness=1.0, width=2)
        fig.add_trace(go.Scatter(mode="lines+markers", name="raw loss", error_y=err,
                                 line=dict(color=RAW), marker=dict(size=5), legendgroup="raw"),
                      1, 1)
        fig.add_trace(go.Scatter(mode="lines+markers", name="controlled loss", error_y=err,
                                 line=dict(color=CONTROLLED), marker=dict(size=5),
                                 legendgroup="cv"), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name=THEORY_NAME,
                                 line=dict(color=THEORY, dash="dash")), 1, 1)
        fig.add_trace(go.Scatter(mode="markers", name="at the current h", showlegend=False,
                                 marker=dict(size=11, symbol="diamond", color=[RAW, CONTROLLED],
                                             line=dict(width=1, color="black"))), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name="raw loss", line_shape="hv",
                                 line=dict(color=RAW, width=1.5), legendgroup="raw",
                                 showlegend=False), 1, 2)
        fig.add_trace(go.Scatter(mode="lines", name="controlled loss", line_shape="hv",
                                 line=dict(color=CONTROLLED, width=1.5), legendgroup="cv",
                                 showlegend=False), 1, 2)
        fig.update_xaxes(log_axis(H_GRID, title="step h"), row=1, col=1)
        lo, hi = np.log10(H_GRID[0]) - 0.1, np.log10(H_GRID[-1]) + 0.1
        fig.update_xaxes(range=[lo, hi], row=1, col=1)
        fig.update_yaxes(title="share of samples per 0.1 decade", row=1, col=2)
        fig.add_annotation(xref="x2 domain", yref="y2 domain", x=0.98, y=0.97, xanchor="right",
                           yanchor="top", align="right", showarrow=False, text="",
                           bgcolor="rgba(255,255,255,0.8)", font=dict(size=12))
        fig.update_layout(height=460, width=min(980, MAX_WIDTH),
                          margin=dict(l=60, r=20, t=95, b=50),
                          legend=dict(orientation="h", y=-0.17, x=0.0),
                          title=dict(font=dict(size=14)))
        return go.FigureWidget(fig)

    def _compute(self, v) -> _CVFrame:
        cv, weighting, h = v["control_variate"], v["weighting"], float(v["h"])
        raw, controlled, const = self._losses(h, cv, weighting)
        return _CVFrame(h, cv, weighting, raw, controlled, const, self._curves[cv, weighting],
                        self._theory(weighting))

    def _draw(self, r: _CVFrame):
        raw_c, cv_c, theory, now, raw_h, cv_h = self.fig.data
        lo, hi, top, spreads = self._window[r.weighting]
        name = _CV_NAMES[r.cv]
        # The fixed coordinates are set here, not only at construction: in the browser the
        # construction-time values of these traces did not reach the figure (tests/browser
        # screenshots). Names need no such care: AbstractExplorer sets them after the first draw.
        raw_c.x, raw_c.y = H_GRID, r.curves.raw[:, 0]
        raw_c.error_y.array = r.curves.raw[:, 1]
        theory.x, theory.y = H_GRID, r.theory
        raw_s = _spread(r.raw)[0]
        raw_h.x, raw_h.y = _histogram(r.raw, lo, hi)
        notes = [f"<span style='color:{RAW}'>raw: spread {_g3(raw_s)}</span>"]
        if r.controlled is None:
            cv_c.x = cv_c.y = cv_h.x = cv_h.y = []
            cv_c.error_y.array = []
            cv_c.name = cv_h.name = "controlled loss (none selected)"
            now.x, now.y = [r.h], [raw_s]
            now.marker.color = [RAW]
        else:
            cv_c.x, cv_c.y = H_GRID, r.curves.cv[:, 0]
            cv_c.error_y.array = r.curves.cv[:, 1]
            cv_c.name = name
            cv_s = _spread(r.controlled)[0]
            cv_h.x, cv_h.y = _histogram(r.controlled, lo, hi)
            cv_h.name = name
            notes.append(f"<span style='color:{CONTROLLED}'>{name}: spread {_g3(cv_s)}</span>")
            now.x, now.y = [r.h, r.h], [raw_s, cv_s]
            now.marker.color = [RAW, CONTROLLED]
        self.fig.layout.annotations[2].text = "<br>".join(notes)
        self.fig.update_yaxes(log_axis(spreads, title="std of the per-sample loss"),
                              range=[np.log10(spreads.min()) - 0.15,
                                     np.log10(spreads.max()) + 0.15], row=1, col=1)
        self.fig.update_xaxes(log_axis([10.0**lo, 10.0**hi], title="|loss − mean loss|"),
                              range=[lo, hi], row=1, col=2)
        self.fig.update_yaxes(range=[0, top], row=1, col=2)
        lam = ("λ = 1: the raw spread grows like √(2d)/(σ²h), the notes' 2/h at σ = 1"
               if r.weighting == "none" else
               "λ = σ²h: the raw spread stays near √(2d), a controlled one shrinks like h")
        lam += "; the model is fixed: the exact score of ρ"
        vs = "raw only" if r.controlled is None else f"raw vs {name}"
        self.fig.layout.title.text = (
            f"NDSM loss of one Euler step from X₀ (t = 0, σ² = {self._sigma2:g}), "
            f"{self.n} samples: {vs}<br><span style='font-size:12px'>{lam}</span>")

    def _status_text(self, r: _CVFrame):
        n = r.raw.size
        m_raw, se_raw = r.raw.mean(), r.raw.std() / np.sqrt(n)
        s_raw = _spread(r.raw)[0]
        head = f"h = {r.h:.3g}:  raw {_g3(m_raw)} ± {_g3(se_raw)}"
        if r.controlled is None:
            d = self.x.shape[1]
            return (f"{head} (mean ± s.e., n = {n}), spread {_g3(s_raw)}; the ‖Z‖² term alone "
                    f"has spread {_g3(np.sqrt(2 * d) * r.const / d)}. "
                    "Pick a control variate to compare.")
        diff = np.asarray(r.raw, np.float64) - r.controlled
        s_cv = _spread(r.controlled)[0]
        # Short enough for one line of a 1000 px column (the browser test's screenshots).
        return (f"{head}, CV {_g3(r.controlled.mean())} ± "
                f"{_g3(r.controlled.std() / np.sqrt(n))};  raw − CV = {_g3(diff.mean())} ± "
                f"{_g3(diff.std() / np.sqrt(n))} vs λd/(σ²h) = {_g3(r.const)};  spreads "
                f"{_g3(s_raw)} / {_g3(s_cv)} = {_g3(s_raw / s_cv)}")


# --- LangevinExplorer --------------------------------------------------------------------------

CACHED = 4  # (strength, width) settings kept, so toggling back is instant
HALF_X = 5.0  # the grid: 72 points on [-5, 5], the same spacing on y (51 points, |y| <= 3.52)
GRID_X, GRID_Y = 72, 51


class _Run(NamedTuple):
    ts: np.ndarray  # (s,) snapshot times
    xs: np.ndarray  # (s, drawn, 2) the display subsample of the particles
    share: np.ndarray  # (s,) fraction of all particles with x_1 > 0
    density: np.ndarray | None  # (s, GRID_X, GRID_Y), or None when the grid was refused
    grid_share: np.ndarray | None  # (s,)
    zmax: float
    density_error: str | None


class _LangevinFrame(NamedTuple):
    t: float
    k: int
    run: _Run
    n: int


@eqx.filter_jit
def _chain(sde, x0, key, steps: int, every: int, drawn: int):
    xs, _ = nl.euler_paths(sde, x0, steps, key=key)
    snaps = xs[::every]
    return snaps[:, :drawn], jnp.mean(snaps[..., 0] > 0, axis=-1)


class LangevinExplorer(AbstractExplorer):
    r"""Particles of a mode-imbalanced mixture under the Langevin drift towards a fitted mixture.

    The forward SDE is `sg.nonlinear.LangevinSDE(reference, 0.1, 10, strength=λ, width=κ)`:
    $dX = \tfrac12\beta\nabla\log\rho(X)\,dt + \sqrt\beta\,dW$ with
    $\rho = (1-\lambda)N(0, I) + \lambda\rho_{\text{ref}}^{(\kappa)}$, and the reference is
    `fit_reference(data, 2)`, the paper's preprocessing step. The data have weights 0.9 / 0.1
    (modes at $(\mp 2, 0)$, std 0.35). At $\lambda = 0$ it is the VP SDE: everything collapses
    into one Gaussian and the right mode's share of the mass drifts towards 1/2. At
    $\lambda = 1$ the particles relax to the reference widened by $\kappa$ and keep the
    0.9 / 0.1 weights (the modes are too far apart to hop).

    Left: the particles of the forward Euler chain (`euler_paths`, 200 steps) at the slider's
    $t$. Middle: the exact density $p_t$ (`fokker_planck` on a 72 × 51 grid; colour
    $\sqrt{p_t}$ on one scale for every $t$ of a setting). Right: the share of the mass at
    $x_1 > 0$ against $t$, of the particles (± 2 s.e.) and of the grid, beside the data's 0.1.
    `strength` and `width` recompute both (debounced; about 0.3 s on a 2-core CPU, 0.22 s of
    it the Fokker–Planck solve; the last 4 settings are kept), `t` only picks one of the 41
    saved times (3 ms). Below a width of about 0.85 the reference's components are narrower
    than the grid resolves: the density panel is then left blank and the status line says
    why, while the particles are still drawn.

    **Arguments (all optional):** `n` (particles), `key`, `steps` (Euler steps), `n_saves`
    (saved times after $t = 0$; must divide `steps`).

    **Attributes:** `data` (the data mixture), `x0`, `reference`, `axes` (the grid).
    """

    main_control = "t"
    debounced = ("strength", "width")

    def __init__(self, *, n: int | None = None, key=None, steps: int = 200, n_saves: int = 40):
        if n_saves < 1 or steps % n_saves:
            raise ValueError(f"steps ({steps}) must be a multiple of n_saves ({n_saves}).")
        key = jr.key(0) if key is None else key
        dk, fk, self._key = jr.split(key, 3)
        self.data = imbalanced_mixture(0.35)
        self.n = default_particles() if n is None else int(n)
        self._drawn = drawn_count(self.n)
        self.x0 = self.data.sample(self.n, key=dk)
        self.reference = nl.fit_reference(self.x0[:4000], 2, key=fk)
        self._steps, self._n_saves = steps, n_saves
        self._ts = np.linspace(0.0, 1.0, n_saves + 1)
        ax = np.linspace(-HALF_X, HALF_X, GRID_X)
        dx = ax[1] - ax[0]
        ay = dx * (np.arange(GRID_Y) - (GRID_Y - 1) / 2)
        self.axes = (jnp.asarray(ax, jnp.float32), jnp.asarray(ay, jnp.float32))
        self._plot_axes = (np.asarray(ax, np.float64), np.asarray(ay, np.float64))
        self._cell = float(dx * dx)
        self._right = ax > 0
        pts = jnp.stack(jnp.meshgrid(*self.axes, indexing="ij"), -1)
        self._density0 = jnp.exp(self.data.log_prob(pts))
        self._cache: OrderedDict = OrderedDict()
        super().__init__()

    def _controls(self):
        style = {"description_width": "initial"}
        return {
            "strength": W.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05,
                                      description="strength λ", style=style,
                                      continuous_update=False),
            "width": W.FloatSlider(value=2.0, min=0.5, max=3.0, step=0.05,
                                   description="width κ", style=style, continuous_update=False),
            "t": W.FloatSlider(value=1.0, min=0.0, max=1.0, step=1.0 / self._n_saves,
                               description="time t", style=style, readout_format=".3f"),
        }

    def _figure(self):
        ax, ay = (np.asarray(a) for a in self.axes)
        fig = make_subplots(rows=1, cols=3, column_widths=[0.36, 0.36, 0.28],
                            horizontal_spacing=0.07, subplot_titles=(
                                "particles of the Euler chain at t",
                                "exact density p_t (Fokker–Planck, grid)",
                                "share of the mass at x₁ > 0"))
        fig.add_trace(go.Scattergl(mode="markers", name="particles", showlegend=False,
                                   marker=dict(color="#d62728", **marker_style(self._drawn))),
                      1, 1)
        right_edge = fig.layout.xaxis2.domain[1]
        fig.add_trace(go.Heatmap(x=ax, y=ay, colorscale="Blues", zmin=0.0, zmax=1.0,
                                 zsmooth="best", hoverinfo="skip", name="exact p_t (√ colour)",
                                 colorbar=dict(title=dict(text="p_t"), len=0.7, thickness=10,
                                               x=right_edge + 0.005, xanchor="left")), 1, 2)
        means = np.asarray(self.reference.means)
        for col in (1, 2):
            fig.add_trace(go.Scatter(x=means[:, 0], y=means[:, 1], mode="markers",
                                     name="means of the fitted reference", showlegend=col == 1,
                                     marker=dict(symbol="x", size=9, color="black")), 1, col)
        err = dict(type="data", visible=True, thickness=0.8, width=0, color="#d62728")
        fig.add_trace(go.Scatter(mode="lines+markers", name="share of the particles (± 2 s.e.)",
                                 error_y=err, marker=dict(size=3, color="#d62728"),
                                 line=dict(width=1, color="#d62728")), 1, 3)
        fig.add_trace(go.Scatter(mode="lines", name="share of the exact p_t (grid)",
                                 line=dict(width=2, color="#1f77b4")), 1, 3)
        fig.add_trace(go.Scatter(x=[0.0, 1.0], y=[0.1, 0.1], mode="lines",
                                 name="the data's weight, 0.1",
                                 line=dict(dash="dot", color="#7f7f7f")), 1, 3)
        fig.add_trace(go.Scatter(mode="markers", name="at the current t", showlegend=False,
                                 marker=dict(size=10, symbol="diamond", color="black")), 1, 3)
        half_y = float(ay[-1]) + 0.1
        for col in (1, 2):
            fig.update_xaxes(range=[-HALF_X - 0.1, HALF_X + 0.1], constrain="domain", nticks=6,
                             title="x₁", row=1, col=col)
            fig.update_yaxes(range=[-half_y, half_y], constrain="domain", nticks=5,
                             scaleanchor="x" if col == 1 else "x2", row=1, col=col)
        fig.update_yaxes(title="x₂", row=1, col=1)
        fig.update_xaxes(range=[-0.03, 1.03], title="t", row=1, col=3)
        fig.update_yaxes(range=[0.0, 0.6], title="share", side="right", row=1, col=3)
        fig.update_layout(height=400, width=min(990, MAX_WIDTH),
                          margin=dict(l=45, r=15, t=100, b=40),
                          legend=dict(orientation="h", y=-0.16, x=0.0),
                          title=dict(font=dict(size=14)))
        return go.FigureWidget(fig)

    def _run(self, strength, width) -> _Run:
        """The chain's snapshots and the grid's density, memoised on (strength, width)."""
        cache_key = (float(strength), float(width))
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        sde = nl.LangevinSDE(self.reference, 0.1, 10.0, strength=jnp.asarray(strength, float),
                             width=jnp.asarray(width, float))
        xs, share = to_numpy(*_chain(sde, self.x0, self._key, self._steps,
                                     self._steps // self._n_saves, self._drawn))
        if not np.isfinite(xs).all():
            raise FloatingPointError("the Euler chain diverged (non-finite particles)")
        try:
            p, _ = fokker_planck(sde, self._density0, self.axes, jnp.asarray(self._ts,
                                                                             jnp.float32))
            density = np.asarray(p)
            if not np.isfinite(density).all():
                raise FloatingPointError("the Fokker–Planck solve gave non-finite values")
            grid_share = density[:, self._right, :].sum((1, 2)) * self._cell
            zmax, error = float(density.max()), None
        except ValueError as err:  # the grid rule (too coarse for rho): particles only
            density = grid_share = None
            zmax, error = 1.0, str(err).strip().splitlines()[0]
        out = _Run(self._ts, xs, share, density, grid_share, zmax, error)
        self._cache[cache_key] = out
        while len(self._cache) > CACHED:
            self._cache.popitem(last=False)
        return out

    def _compute(self, v) -> _LangevinFrame:
        run = self._run(v["strength"], v["width"])
        k = int(np.clip(round(float(v["t"]) * self._n_saves), 0, self._n_saves))
        return _LangevinFrame(float(v["t"]), k, run, self.n)

    def _draw(self, r: _LangevinFrame):
        parts, heat, _, _, share, grid_share, _, now = self.fig.data
        run, k = r.run, r.k
        parts.x, parts.y = run.xs[k, :, 0], run.xs[k, :, 1]
        # The grid is set at every draw, in float64: set only at construction (float32), it did
        # not reach the browser's figure, which then drew the density at index coordinates.
        heat.x, heat.y = self._plot_axes
        se = np.sqrt(run.share * (1 - run.share) / r.n)
        share.x, share.y = run.ts, run.share
        share.error_y.array = 2 * se
        if run.density is None:
            heat.z = np.full((len(self.axes[1]), len(self.axes[0])), np.nan)
            grid_share.x = grid_share.y = []
            now.x, now.y = [run.ts[k]], [run.share[k]]
            self.fig.layout.annotations[1].text = "exact p_t: not computed (see the status line)"
        else:
            heat.z = np.sqrt(np.maximum(run.density[k].T, 0.0))  # rows are y; colour: sqrt(p)
            heat.zmax = np.sqrt(run.zmax)
            ticks = [v for v in (0.05, 0.2, 0.5, 1.0, 2.0) if v <= run.zmax]
            heat.colorbar.tickvals = np.sqrt([0.0, *ticks])
            heat.colorbar.ticktext = ["0", *(f"{v:g}" for v in ticks)]
            grid_share.x, grid_share.y = run.ts, run.grid_share
            now.x, now.y = [run.ts[k]] * 2, [run.share[k], run.grid_share[k]]
            self.fig.layout.annotations[1].text = "exact density p_t (Fokker–Planck, grid)"
        lam, kappa = self.values["strength"], self.values["width"]
        snapped = "" if np.isclose(r.t, run.ts[k]) else f" (nearest saved time {run.ts[k]:.3f})"
        self.fig.layout.title.text = (
            f"Forward Langevin SDE towards the fitted reference: λ = {lam:.2f}, κ = {kappa:.2f}, "
            f"t = {r.t:.3f}{snapped}<br><span style='font-size:12px'>λ = 0 is the VP SDE (one "
            "Gaussian); λ = 1 keeps the data's 0.9 / 0.1 mode weights. Colour: √p_t, one scale "
            "for every t</span>")

    def _status_text(self, r: _LangevinFrame):
        run, k = r.run, r.k
        p = run.share[k]
        se = np.sqrt(p * (1 - p) / r.n)
        head = (f"t = {run.ts[k]:.3f}: share of the mass at x₁ > 0: particles {_g3(p)} ± "
                f"{_g3(se)} (s.e., n = {r.n})")
        if run.density is None:
            return f"{head}, data 0.1. ⚠ exact density not computed: {run.density_error}"
        return f"{head}, exact (grid) {_g3(run.grid_share[k])}, data 0.1"
