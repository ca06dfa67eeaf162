"""Static plotly figures shared by the tutorials (plots, not printed arrays)."""

import jax.numpy as jnp
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["particles_grid", "marker_style", "density_grid", "curves", "log_axis", "arrows",
           "vector_fields", "trajectory_panels", "MAX_WIDTH"]


def density_grid(mixture, half: float, size: int = 80):
    """`(axis, density)` of a 2-D `GaussianMixture` on a square grid of half-width `half`."""
    axis = np.linspace(-half, half, size)
    pts = jnp.stack(jnp.meshgrid(axis, axis), -1)
    return axis, np.asarray(jnp.exp(mixture.log_prob(pts)))


MAX_WIDTH = 1000  # a JupyterLab notebook column with the file browser open


def marker_style(n: int) -> dict:
    """Marker size and opacity for `n` points: small and faint for thousands, larger and
    opaque (with a white edge, to stand out on a dark density) for a few dozen."""
    f = float(np.sqrt(2000 / max(int(n), 1)))
    size = float(np.clip(2.5 * f, 2.5, 9.0))
    opacity = float(np.clip(0.5 * f, 0.5, 0.95))
    edge = dict(width=1, color="white") if n <= 200 else dict(width=0)
    return dict(size=size, opacity=opacity, line=edge)


def particles_grid(panels, *, half: float = 6.0, max_points: int = 3000, height: int = 330,
                   title: str | None = None):
    """One row of panels, each particles over an optional exact density.

    `panels`: list of `(title, particles (n, 2) or None, mixture or None)`. The row fits a
    1000 px column; markers grow with fewer points (`marker_style`).
    """
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.03)
    for i, (_, x, mix) in enumerate(panels, start=1):
        if mix is not None:
            axis, dens = density_grid(mix, half)
            # zsmooth: interpolated, not 80x80 visible pixels
            fig.add_trace(go.Heatmap(x=axis, y=axis, z=dens, colorscale="Blues", zsmooth="best",
                                     showscale=False, hoverinfo="skip", name="exact density"),
                          1, i)
        if x is not None:
            x = np.asarray(x)[:max_points]
            fig.add_trace(go.Scattergl(x=x[:, 0], y=x[:, 1], mode="markers",
                                       marker=dict(color="#d62728", **marker_style(len(x))),
                                       name=f"{len(x)} points", showlegend=False), 1, i)
        # constrain="domain": the locked aspect shrinks the axis, not the range (no grey bands)
        fig.update_xaxes(range=[-half, half], constrain="domain", nticks=5, row=1, col=i)
        fig.update_yaxes(range=[-half, half], constrain="domain", scaleanchor=f"x{i}",
                         nticks=5, row=1, col=i)
    width = min(max(260 * len(panels), 500), MAX_WIDTH)
    fig.update_layout(height=height, width=width, title=title,
                      margin=dict(l=30, r=10, t=60 if title else 40, b=25))
    return fig


def log_axis(values, *, title: str = "") -> dict:
    """A plotly log axis whose every tick label is a whole number, never a bare minor digit.

    Plotly's default log ticks label the minor ticks "2", "5" between decades, which read like
    data labels. Here the ticks are 1, 2, 5 times each power of ten when the data span at most
    two decades, and the powers of ten alone beyond that, each labelled in full ("0.02").
    """
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    named = dict(title=title) if title else {}
    if v.size == 0:
        return dict(type="log", **named)
    lo, hi = np.floor(np.log10(v.min())), np.ceil(np.log10(v.max()))
    mantissas = (1, 2, 5) if hi - lo <= 2 else (1,)
    ticks = [m * 10.0**e for e in np.arange(lo, hi + 1) for m in mantissas]
    near = [x for x in ticks if v.min() / 1.5 <= x <= v.max() * 1.5]
    ticks = near if len(near) >= 2 else ticks  # a single value still gets two ticks around it
    return dict(type="log", **named, tickvals=ticks, ticktext=[_tick_text(x) for x in ticks],
                minor=dict(showgrid=False, ticks=""))


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _tick_text(x: float) -> str:
    """`0.02`, `500`; a power of ten outside [0.001, 10^4] as `10⁻⁵`."""
    if 1e-3 <= x < 1e4:
        return f"{x:g}"
    exponent = int(round(np.log10(x)))
    if np.isclose(x, 10.0**exponent):
        return "10" + str(exponent).translate(_SUPERSCRIPT)
    return f"{x:.0e}"


def curves(x, ys: dict, *, xlabel: str = "", ylabel: str = "", log_x: bool = False,
           log_y: bool = False, title: str | None = None, height: int = 330, width: int = 600,
           errors: dict | None = None):
    """Line plot of several named curves over a shared x (dict name -> values).

    `errors`: optional dict name -> standard errors (same length as the curve); those curves get
    error bars and markers, so a reader sees which differences the data resolve.
    """
    errors = {} if errors is None else errors
    unknown = set(errors) - set(ys)
    if unknown:
        raise ValueError(f"errors given for curves that are not drawn: {sorted(unknown)}")
    traces = []
    for name, y in ys.items():
        err = errors.get(name)
        traces.append(go.Scatter(
            x=np.asarray(x), y=np.asarray(y), name=name,
            mode="lines" if err is None else "lines+markers",
            error_y=None if err is None else dict(type="data", array=np.asarray(err),
                                                  visible=True, thickness=1.2)))
    fig = go.Figure(traces)
    x_all = np.asarray(x, float)
    y_all = np.concatenate([np.asarray(y, float).ravel() for y in ys.values()])
    x_axis = dict(title=xlabel)
    if log_x:
        x_axis = log_axis(x_all, title=xlabel)
        if len(np.unique(x_all)) <= 8:  # a few measured x (step counts, group orders): tick each
            x_axis.update(tickvals=list(x_all), ticktext=[_tick_text(float(v)) for v in x_all])
    fig.update_layout(
        height=height, width=min(width, MAX_WIDTH), title=title,
        xaxis=x_axis,
        yaxis=log_axis(y_all, title=ylabel) if log_y else dict(title=ylabel),
        margin=dict(l=60, r=20, t=50 if title else 20, b=45))
    return fig


HEAD = 0.3  # arrow-head length, as a fraction of the arrow
HEAD_ANGLE = np.deg2rad(25.0)


def arrows(points, vectors, scale: float = 1.0, longest: float | None = None):
    """Arrows with heads, NaN-separated for one line trace: a shaft and two head strokes each.

    Vectors are multiplied by `scale`; with `longest`, any arrow longer than that is shortened
    to it (direction kept), so a few large arrows far from the data do not shrink the rest.
    """
    points, vectors = np.asarray(points, float), np.asarray(vectors, float) * scale
    if longest is not None:
        norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors * np.minimum(1.0, longest / np.maximum(norm, 1e-12))
    tips = points + vectors
    c, s = np.cos(HEAD_ANGLE), np.sin(HEAD_ANGLE)
    back = -HEAD * vectors
    left = tips + np.stack([c * back[:, 0] - s * back[:, 1], s * back[:, 0] + c * back[:, 1]], -1)
    right = tips + np.stack([c * back[:, 0] + s * back[:, 1], -s * back[:, 0] + c * back[:, 1]],
                            -1)
    sep = np.full_like(points, np.nan)
    return np.stack([points, tips, sep, left, tips, right, sep], 1).reshape(-1, 2)


def vector_fields(points, panels, *, height: int = 360, shared_scale: bool = True):
    """One row of arrow plots on shared `points` `(n, 2)`; `panels`: `(title, vectors)` pairs.

    With `shared_scale` the arrows of every panel share one scale, so lengths compare across
    panels. Without it each panel is scaled to its own longest arrow (so a field much smaller
    than its neighbour is still readable), and each title says by how much it was magnified
    relative to the first panel.
    """
    points = np.asarray(points, float)
    # The arrows' room: the median distance to the nearest other point (the spacing, on a grid;
    # also right for a grid with the empty parts left out).
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    span = float(np.median(dist.min(axis=1))) if len(points) > 1 else 1.0
    vmaxes = [max(float(np.linalg.norm(np.asarray(v), axis=-1).max()), 1e-12) for _, v in panels]
    scales = [0.9 * span / (max(vmaxes) if shared_scale else vm) for vm in vmaxes]
    titles = [t if shared_scale or i == 0 or np.isclose(scales[i], scales[0])
              else f"{t}  (arrows ×{scales[i] / scales[0]:.2g})"
              for i, (t, _) in enumerate(panels)]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles)
    for i, ((_, v), scale) in enumerate(zip(panels, scales, strict=True), start=1):
        seg = arrows(points, v, scale)
        fig.add_trace(go.Scatter(x=seg[:, 0], y=seg[:, 1], mode="lines", showlegend=False,
                                 name="field", line=dict(width=1.2, color="#1f77b4")), 1, i)
        fig.update_yaxes(scaleanchor=f"x{i}", constrain="domain", row=1, col=i)
        fig.update_xaxes(constrain="domain", row=1, col=i)
    fig.update_layout(height=height, width=min(max(330 * len(panels), 500), MAX_WIDTH),
                      margin=dict(l=20, r=20, t=40, b=20))
    return fig


PATH_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#17becf")


def trajectory_panels(panels, *, height: int = 400, width: int = 900, max_paths: int = 8,
                      start: str = "start", end: str = "end"):
    """One row of particle paths; `panels`: `(title, paths)` pairs, `paths` of shape `(s, n, 2)`.

    Each particle is a thin line through its `s` snapshots (time along the first axis, as
    `sg.trajectories` returns them), in the same colour in every panel, so paths from the same
    starting point can be compared. The first snapshot is an open circle (legend: `start`),
    the last a black dot (`end`). At most `max_paths` paths are drawn: more are a tangle.
    """
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.06)
    # One range for every panel, so the same starting point sits at the same place in each.
    half = 1.05 * max(float(np.abs(np.asarray(p)[:, :max_paths]).max()) for _, p in panels)
    for i, (_, paths) in enumerate(panels, start=1):
        paths = np.asarray(paths)[:, :max_paths]
        for j in range(paths.shape[1]):
            fig.add_trace(go.Scatter(x=paths[:, j, 0], y=paths[:, j, 1], mode="lines",
                                     name=f"path {j + 1}", showlegend=False, opacity=0.8,
                                     line=dict(width=1.2,
                                               color=PATH_COLOURS[j % len(PATH_COLOURS)])),
                          1, i)
        fig.add_trace(go.Scatter(x=paths[0, :, 0], y=paths[0, :, 1], mode="markers", name=start,
                                 showlegend=i == 1, legendgroup="start",
                                 marker=dict(symbol="circle-open", color="black", size=8)), 1, i)
        fig.add_trace(go.Scatter(x=paths[-1, :, 0], y=paths[-1, :, 1], mode="markers", name=end,
                                 showlegend=i == 1, legendgroup="end",
                                 marker=dict(color="black", size=7)), 1, i)
        fig.update_yaxes(scaleanchor=f"x{i}" if i > 1 else "x", constrain="domain",
                         range=[-half, half], row=1, col=i)
        fig.update_xaxes(constrain="domain", range=[-half, half], row=1, col=i)
    fig.update_layout(height=height, width=min(width, MAX_WIDTH),
                      legend=dict(orientation="h", y=-0.08),
                      margin=dict(l=30, r=10, t=40, b=30))
    return fig
