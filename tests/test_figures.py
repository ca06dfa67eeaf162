"""Every figure reads on its own: what code can check of a figure a learner looks at.

For each explorer in `widgets.EXPLORERS`, at its default and after each control moves to each
end of its range (and to each option): every trace and every bar has a name or label, the
figure fits a 1000 px notebook column, markers of point clouds follow `marker_style` (so 32
points are as visible as 3000), and the axis and colour ranges that must stay put while a
control moves do, and log axes label their ticks in full. The static figure helpers of
`widgets.plots` are held to the same rules.
"""

import ipywidgets as W
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
import pytest
import sgmteach.widgets as widgets
from sgmteach.widgets.plots import (
    MAX_WIDTH,
    curves,
    log_axis,
    marker_style,
    particles_grid,
    trajectory_panels,
    vector_fields,
)

import sgmteach as sg

# A point cloud: a markers trace with at least this many points (fewer are annotations such
# as the modes of a mixture, or measured values, drawn at a fixed size on purpose).
CLOUD = 16

# Ranges that must not move while a control moves: (layout axis names, trace attributes),
# and the controls whose moves may change them (by design, said in the explorer's docstring).
FIXED = {
    widgets.NoiseScheduleExplorer: (("yaxis2",), (), ("sde", "noise")),  # VE's s_t follows σ_max
    widgets.SampleEvolution: (("xaxis", "yaxis"), (), ()),
    widgets.ScoreFieldExplorer: ((), (("heatmap", "zmin"), ("heatmap", "zmax")), ()),
    widgets.SymmetryExplorer: (("yaxis2",), (), ()),
    widgets.BoundExplorer: (("xaxis", "yaxis"), (), ()),
    widgets.LangevinExplorer: (("xaxis", "yaxis", "xaxis2", "yaxis2", "xaxis3", "yaxis3"), (), ()),
    # Each weighting has its own window: the loss's scale is lambda times the raw one.
    widgets.ControlVariateExplorer: (("xaxis", "yaxis", "xaxis2", "yaxis2"), (), ("weighting",)),
    widgets.ProximalFlowExplorer: (("xaxis", "yaxis", "xaxis2", "yaxis2"), (), ()),
    widgets.ParticleFlowExplorer: (("xaxis", "yaxis", "xaxis2", "yaxis2", "xaxis3", "yaxis3"),
                                   (), ()),
    widgets.TailsExplorer: (("xaxis", "yaxis", "xaxis2", "yaxis2"), (), ()),
}


def test_every_explorer_declares_its_fixed_ranges():
    assert set(FIXED) == set(widgets.EXPLORERS)


@pytest.fixture(scope="module", params=widgets.EXPLORERS, ids=lambda c: c.__name__)
def explorer(request):
    return request.param()


def _moves(control):
    """The default, then each end of the range (or each option), then the default again."""
    if isinstance(control, W.Dropdown):
        return [o[1] if isinstance(o, tuple) else o for o in control.options]
    if isinstance(control, W.FloatLogSlider):
        return [control.base**control.min, control.base**control.max]
    return [control.min, control.max]


def _ranges(fig, axes, attrs):
    out = {}
    for name in axes:
        axis = fig.layout[name]
        out[name] = (tuple(axis.range) if axis.range is not None else None, axis.autorange)
    for kind, attr in attrs:
        out[kind, attr] = tuple(getattr(t, attr) for t in fig.data if t.type == kind)
    return out


def _check_readable(fig, where):
    assert fig.layout.width is not None and fig.layout.width <= MAX_WIDTH, (
        f"{where}: width {fig.layout.width} overflows a {MAX_WIDTH} px column")
    for name in fig.layout:  # log axes label their ticks in full (log_axis), no bare minor digits
        axis = fig.layout[name]
        if isinstance(axis, go.layout.XAxis | go.layout.YAxis) and axis.type == "log":
            assert axis.tickvals is not None and axis.ticktext is not None, f"{where}: {name}"
    for trace in fig.data:
        assert trace.name, f"{where}: a {trace.type} trace has no name"
        if trace.type == "bar":
            labels = [] if trace.x is None else list(trace.x)
            assert labels and all(str(v).strip() for v in labels), f"{where}: unlabelled bars"
        if trace.type in ("scatter", "scattergl") and trace.mode == "markers":
            n = 0 if trace.x is None else len(trace.x)
            if n >= CLOUD:
                want = marker_style(n)
                assert trace.marker.size == pytest.approx(want["size"]), (
                    f"{where}: {n} points of '{trace.name}' drawn at size {trace.marker.size}, "
                    f"marker_style says {want['size']}")
                assert trace.marker.opacity == pytest.approx(want["opacity"]), where


def test_explorer_figures_read_on_their_own(explorer):
    cls = type(explorer)
    axes, attrs, movers = FIXED[cls]
    for name in axes:
        assert explorer.fig.layout[name].range is not None, f"{cls.__name__}.{name}: no range"
    default = explorer.values
    _check_readable(explorer.fig, f"{cls.__name__} at its default")
    before = _ranges(explorer.fig, axes, attrs)
    try:
        for name, control in explorer.sliders.items():
            if control.disabled:
                continue
            for value in _moves(control):
                assert explorer.update(**{name: value}), explorer.status.value
                where = f"{cls.__name__} after {name} = {value!r}"
                _check_readable(explorer.fig, where)
                if name not in movers:
                    assert _ranges(explorer.fig, axes, attrs) == before, (
                        f"{where}: a range that must stay put moved")
            assert explorer.update(**{name: default[name]})
    finally:
        explorer.update(**default)


def test_marker_style_grows_for_few_points():
    sizes = [marker_style(n)["size"] for n in (8, 32, 256, 3000, 100_000)]
    opacities = [marker_style(n)["opacity"] for n in (8, 32, 256, 3000, 100_000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[1] > 2 * sizes[3]
    assert opacities == sorted(opacities, reverse=True)


def test_static_figures_fit_and_name_their_traces():
    target = sg.ring()
    x = target.sample(500, key=jr.key(0))
    paths = np.cumsum(np.asarray(jr.normal(jr.key(1), (20, 16, 2))), 0)
    pts = np.stack(np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-2, 2, 5)), -1).reshape(-1, 2)
    figures = {
        "particles_grid, 5 panels": particles_grid([("a", x, target)] * 5),
        "curves": curves([1, 10, 100], {"a": [1.0, 0.5, 0.2], "b": [0.3, 0.3, 0.3]},
                         errors={"a": [0.1, 0.05, 0.02]}, log_x=True, log_y=True, width=1400),
        "trajectory_panels": trajectory_panels([("sde", paths), ("ode", paths)]),
        "vector_fields": vector_fields(pts, [("b", pts), ("small", 1e-3 * pts)],
                                       shared_scale=False),
    }
    for where, fig in figures.items():
        _check_readable(fig, where)


def test_curves_draw_error_bars_and_refuse_unknown_ones():
    fig = curves([1, 2], {"a": [1.0, 2.0], "floor": [1.0, 1.0]}, errors={"a": [0.1, 0.2]})
    a, floor = fig.data
    assert list(a.error_y.array) == [0.1, 0.2] and a.error_y.visible
    assert floor.error_y.array is None
    with pytest.raises(ValueError, match="not drawn"):
        curves([1, 2], {"a": [1.0, 2.0]}, errors={"b": [0.1, 0.2]})


@pytest.mark.parametrize("lo, hi", [(0.03, 0.9), (0.09, 0.2), (1e-4, 1e6), (2.0, 2.0)])
def test_log_axis_labels_every_tick_in_full(lo, hi):
    axis = log_axis([lo, hi])
    ticks = np.asarray(axis["tickvals"], float)
    assert len(ticks) >= 2
    # Every tick within reach of the data, and every label a whole number, not a bare "2".
    assert ticks.min() <= lo * 1.5 and ticks.max() >= hi / 1.5
    for value, text in zip(ticks, axis["ticktext"], strict=True):
        assert text not in {"2", "5"} or value in (2.0, 5.0)
    if np.log10(hi / lo) > 2:  # a wide range gets its decades only
        assert np.allclose(np.log10(ticks), np.round(np.log10(ticks)))


def test_vector_fields_scale_each_panel_to_be_seen():
    pts = np.stack(np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-2, 2, 5)), -1).reshape(-1, 2)

    def longest(fig, i):
        seg = np.stack([fig.data[i].x, fig.data[i].y], -1)
        seg = seg.reshape(-1, 7, 2)  # shaft start, tip, gap, two head strokes
        return np.linalg.norm(seg[:, 1] - seg[:, 0], axis=-1).max()

    shared = vector_fields(pts, [("big", pts), ("small", 1e-3 * pts)])
    own = vector_fields(pts, [("big", pts), ("small", 1e-3 * pts)], shared_scale=False)
    assert longest(shared, 1) == pytest.approx(1e-3 * longest(shared, 0))
    assert longest(own, 1) == pytest.approx(longest(own, 0))
    assert "×" in own.layout.annotations[1].text  # the title says it was magnified


def test_bound_explorer_colours_each_group():
    e = widgets.BoundExplorer(points=([10, 100, 1000] * 2, [1.0, 0.3, 0.1, 0.5, 0.16, 0.05]),
                              groups=["|G| = 1"] * 3 + ["|G| = 4"] * 3)
    point_traces = [t for t in e.fig.data if t.mode == "markers"]
    assert [t.name for t in point_traces] == ["|G| = 1", "|G| = 4"]
    assert point_traces[0].marker.color != point_traces[1].marker.color
    assert "|G| = 1" in e.status.value and "|G| = 4" in e.status.value
    with pytest.raises(ValueError, match="one label per point"):
        widgets.BoundExplorer(points=([10, 100], [1.0, 0.3]), groups=["a"])
