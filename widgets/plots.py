"""Static plotly figures shared by the tutorials (plots, not printed arrays)."""

import jax.numpy as jnp
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["particles_grid", "marker_style", "density_grid", "curves", "arrow_segments",
           "vector_fields"]


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
            fig.add_trace(go.Heatmap(x=axis, y=axis, z=dens, colorscale="Blues",
                                     showscale=False, hoverinfo="skip"), 1, i)
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


def curves(x, ys: dict, *, xlabel: str = "", ylabel: str = "", log_x: bool = False,
           log_y: bool = False, title: str | None = None, height: int = 330, width: int = 600):
    """Line plot of several named curves over a shared x; `None`-free dict name -> values."""
    fig = go.Figure([go.Scatter(x=np.asarray(x), y=np.asarray(y), name=name, mode="lines")
                     for name, y in ys.items()])
    fig.update_layout(height=height, width=width, title=title,
                      xaxis=dict(title=xlabel, type="log" if log_x else "linear"),
                      yaxis=dict(title=ylabel, type="log" if log_y else "linear"),
                      margin=dict(l=50, r=20, t=50 if title else 20, b=40))
    return fig


def arrow_segments(points, vectors, scale: float):
    """Line segments `points -> points + scale * vectors`, NaN-separated, for one trace."""
    points, vectors = np.asarray(points), np.asarray(vectors)
    ends = points + scale * vectors
    sep = np.full_like(points, np.nan)
    return np.stack([points, ends, sep], 1).reshape(-1, 2)


def vector_fields(points, panels, *, height: int = 360):
    """One row of arrow plots on shared `points` `(n, 2)`; `panels`: `(title, vectors)` pairs.

    Arrows in every panel share one scale, so lengths compare across panels.
    """
    points = np.asarray(points)
    span = np.ptp(points[:, 0]) / max(np.sqrt(len(points)) - 1, 1)
    vmax = max(float(np.linalg.norm(np.asarray(v), axis=-1).max()) for _, v in panels)
    scale = 0.9 * span / max(vmax, 1e-12)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for i, (_, v) in enumerate(panels, start=1):
        seg = arrow_segments(points, v, scale)
        fig.add_trace(go.Scatter(x=seg[:, 0], y=seg[:, 1], mode="lines", showlegend=False,
                                 line=dict(width=1.2, color="#1f77b4")), 1, i)
        fig.add_trace(go.Scatter(x=points[:, 0], y=points[:, 1], mode="markers", showlegend=False,
                                 marker=dict(size=2, color="black")), 1, i)
        fig.update_yaxes(scaleanchor=f"x{i}", row=1, col=i)
    fig.update_layout(height=height, width=max(330 * len(panels), 500),
                      margin=dict(l=20, r=20, t=40, b=20))
    return fig


def trajectory_panels(panels, *, height: int = 380, width: int = 800):
    """One row of particle paths; `panels`: `(title, paths)` pairs, `paths` of shape `(s, n, 2)`.

    Each of the `n` particles is a thin line through its `s` snapshots (time along the first
    axis, as `sg.trajectories` returns them); the last snapshot is a black dot.
    """
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for i, (_, paths) in enumerate(panels, start=1):
        paths = np.asarray(paths)
        for j in range(paths.shape[1]):
            fig.add_trace(go.Scatter(x=paths[:, j, 0], y=paths[:, j, 1], mode="lines",
                                     line=dict(width=1), showlegend=False), 1, i)
        fig.add_trace(go.Scatter(x=paths[-1, :, 0], y=paths[-1, :, 1], mode="markers",
                                 showlegend=False, marker=dict(color="black", size=5)), 1, i)
        fig.update_yaxes(scaleanchor=f"x{i}" if i > 1 else "x", row=1, col=i)
    fig.update_layout(height=height, width=width)
    return fig


__all__ += ["trajectory_panels"]
