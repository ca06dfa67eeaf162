"""Every explorer in `widgets.EXPLORERS` honours the contract and never recompiles on a move.

For each explorer: build it with no arguments, then move every control to both ends and to 20
random values. Each move must change the figure's data, leave no traceback in `status`, and
compile nothing: all compilation happens at construction (one per shape / static variant).
Every count of compilations has a positive control beside it (something that must compile
once is seen to compile once), so a change in JAX's log text cannot make it pass vacuously.
Where it is cheap, what is drawn is checked against the library's own computation.
"""

import asyncio
import functools
import logging
import re

import equinox as eqx
import ipywidgets as W
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import plotly.graph_objects as go
import pytest
import sgmteach.widgets as widgets
from sgmteach.widgets.schedule import SDE_KINDS

import sgmteach as sg

N_RANDOM = 20
MAX_POINTS = 4000  # points sent to the browser per scatter trace, whatever the backend


class _CompileCounter(logging.Handler):
    def __init__(self):
        super().__init__()
        self.names = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.names.append(msg.split(" with ")[0])


@pytest.fixture
def compiles():
    counter = _CompileCounter()
    logger = logging.getLogger("jax")
    logger.addHandler(counter)
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with jax.log_compiles():
            yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old)


def _assert_counter_sees_one_compile(compiles):
    """Positive control: a function never compiled before compiles exactly once, and is seen."""

    @eqx.filter_jit
    def _fresh_control(x):  # a new function object per call: nothing of it is cached
        return x + 1

    before = len(compiles.names)
    _fresh_control(np.zeros(3, np.float32))
    _fresh_control(np.ones(3, np.float32))  # same shape: no second compilation
    assert compiles.names[before:] == ["Compiling jit(_fresh_control)"], compiles.names[before:]


def _snapshot(fig):
    out = []
    for trace in fig.data:
        for attr in ("x", "y", "z"):
            if attr in trace and trace[attr] is not None:
                out.append(np.asarray(trace[attr], dtype=object).ravel())
    out.append(str(fig.layout.title.text))
    return out


def _same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, str) or isinstance(y, str):
            if x != y:
                return False
        elif x.shape != y.shape or not all(
            (u is None and v is None) or (u == v) or (u != u and v != v)  # NaN == NaN here
            for u, v in zip(x, y, strict=True)
        ):
            return False
    return True


def _options(control):
    return [o[1] if isinstance(o, tuple) else o for o in control.options]


def _ends_and_random(control, rng):
    if isinstance(control, W.Dropdown):
        values = _options(control)
        picks = rng.integers(len(values), size=N_RANDOM)
        return [values[0], values[-1]] + [values[i] for i in picks]
    if isinstance(control, W.FloatLogSlider):
        lo, hi = control.min, control.max
        return [control.base**lo, control.base**hi] + list(
            control.base ** rng.uniform(lo, hi, N_RANDOM))
    if isinstance(control, W.IntSlider):
        return [control.min, control.max] + list(
            int(v) for v in rng.integers(control.min, control.max + 1, N_RANDOM))
    if isinstance(control, W.FloatSlider):
        return [control.min, control.max] + list(rng.uniform(control.min, control.max, N_RANDOM))
    raise AssertionError(f"no test values for {type(control).__name__}")


def _invalid_values(control):
    """Values the control does not offer: each must be refused, never clamped."""
    if isinstance(control, W.Dropdown):
        return ["no such option", None]
    if isinstance(control, W.FloatLogSlider):
        lo, hi = control.base**control.min, control.base**control.max
        return [hi * 10, lo / 10, -1.0, float("nan"), "a word"]
    if isinstance(control, W.IntSlider):
        return [control.max + 1, control.min - 1, control.min + 0.5, "a word"]
    if isinstance(control, W.FloatSlider):
        span = control.max - control.min
        return [control.max + span, control.min - span, float("inf"), "a word"]
    raise AssertionError(f"no invalid values for {type(control).__name__}")


def _scatter_sizes(fig):
    return {i: len(t.x) for i, t in enumerate(fig.data)
            if isinstance(t, go.Scatter | go.Scattergl) and t.x is not None}


@functools.cache
def _built(cls):
    return cls()


@pytest.fixture(params=widgets.EXPLORERS, ids=lambda cls: cls.__name__)
def explorer(request):
    e = _built(request.param)
    yield e
    for hook in ("_compute", "_status_text", "update"):  # undo a test's instance patches
        e.__dict__.pop(hook, None)


# -- the contract ----------------------------------------------------------------------------
def test_registry():
    assert len(set(widgets.EXPLORERS)) == len(widgets.EXPLORERS) == 10
    for cls in widgets.EXPLORERS:
        assert issubclass(cls, widgets.AbstractExplorer) and cls.__name__ in widgets.__all__
    for name in widgets.__all__:
        assert hasattr(widgets, name), name
    with pytest.raises(TypeError, match="abstract"):
        widgets.AbstractExplorer()


def test_contract(explorer):
    assert isinstance(explorer, W.Box)
    assert isinstance(explorer.fig, go.FigureWidget)
    assert isinstance(explorer.status, W.Label)
    assert explorer.sliders and all(isinstance(c, W.ValueWidget) for c in explorer.sliders.values())
    assert explorer.fig in explorer.children and explorer.status in explorer.children
    assert "Traceback" not in explorer.status.value and "⚠" not in explorer.status.value
    assert explorer.last_error is None


def test_every_control_moves_the_figure_without_compiling(explorer, compiles):
    rng = np.random.default_rng(0)
    defaults = explorer.values
    for name, control in explorer.sliders.items():
        assert explorer.update(**defaults)
        for value in _ends_and_random(control, rng):
            before, old_value = _snapshot(explorer.fig), control.value
            ok = explorer.update(**{name: value})
            assert ok, f"{name}={value!r}: {explorer.status.value}"
            assert "Traceback" not in explorer.status.value and explorer.last_error is None
            if control.value != old_value:
                changed = not _same(before, _snapshot(explorer.fig))
                assert changed, f"{name}={value!r} drew nothing new"
    assert explorer.update(**defaults)
    assert compiles.names == [], f"moving controls compiled: {compiles.names}"
    _assert_counter_sees_one_compile(compiles)


def test_declared_variants_compile_at_construction_and_never_after(compiles):
    # Shapes no other test uses, so every compilation here is new: the explorer's jitted step
    # compiles exactly once per declared static variant while it is built (the positive
    # control), and not at all when the controls then visit every variant.
    kinds = list(SDE_KINDS.values())
    schedule = widgets.NoiseScheduleExplorer(n=37, grid_size=11)
    assert compiles.names.count("Compiling jit(_frame)") == len(kinds) == 4
    symmetry = widgets.SymmetryExplorer(orders=(1, 3), max_n=20, n_probe=50)
    assert compiles.names.count("Compiling jit(symmetry_errors)") == 2
    compiles.names.clear()
    for kind in kinds[::-1] + kinds:
        assert schedule.update(sde=kind, noise=3.0, t=0.7), schedule.status.value
    for order in (1, 3, 1):
        assert symmetry.update(order=order, n=8, t=0.5), symmetry.status.value
    assert compiles.names == [], f"visiting the variants compiled: {compiles.names}"


def test_slider_events_reach_update(explorer):
    # A change coming from the front end (a trait change) redraws as update() does; with no
    # running event loop the debounce falls through to an immediate update.
    name, control = next((n, c) for n, c in explorer.sliders.items()
                         if isinstance(c, W.FloatSlider | W.FloatLogSlider | W.IntSlider))
    before = _snapshot(explorer.fig)
    control.value = control.max if control.value != control.max else control.min
    assert not _same(before, _snapshot(explorer.fig))
    assert explorer.update(**{name: control.value})


def test_debounce_under_a_running_event_loop():
    # In a kernel, control events arrive inside a running asyncio loop: a drag of a heavy
    # control (`t0`) is coalesced by `loop.call_later` into one update with the last value,
    # while the frame scrubber, which only redraws, is drawn at once.
    e = _built(widgets.SampleEvolution)
    assert "t0" in e.debounced and "frame" not in e.debounced
    assert e.update(t0=1e-3, frame=e.sliders["frame"].max)
    calls = []
    real_update = e.update
    e.update = lambda **v: calls.append(v) or real_update(**v)

    async def drag():
        before = _snapshot(e.fig)
        for t0 in (2e-3, 5e-3, 1e-2):
            e.sliders["t0"].value = t0
        await asyncio.sleep(0)
        assert calls == [] and _same(before, _snapshot(e.fig)), "debounced event ran at once"
        await asyncio.sleep(4 * e.debounce_s)  # the timer fires in here
        assert calls == [{"t0": 1e-2}], calls
        assert not _same(before, _snapshot(e.fig))
        before = _snapshot(e.fig)
        e.sliders["frame"].value = 0
        assert calls[-1] == {"frame": 0} and not _same(before, _snapshot(e.fig))

    try:
        asyncio.run(drag())
    finally:
        del e.update
    assert re.match(r"\d+ particles", e.status.value) and e.last_error is None
    assert e.update(t0=1e-3, frame=e.sliders["frame"].max)


# -- failures leave the figure as it was ----------------------------------------------------
def test_failed_compute_leaves_every_trace_unchanged(explorer):
    defaults = explorer.values
    assert explorer.update(**defaults)
    before, good_status = _snapshot(explorer.fig), explorer.status.value
    name, control = next(iter(explorer.sliders.items()))
    other = next(v for v in _ends_and_random(control, np.random.default_rng(1))
                 if v != control.value)

    def fails(values):
        raise ValueError("no can do at these values")

    explorer._compute = fails
    assert not explorer.update(**{name: other})
    assert explorer.status.value == "⚠ no can do at these values"
    assert isinstance(explorer.last_error, ValueError)
    assert _same(before, _snapshot(explorer.fig))
    del explorer._compute

    def breaks(result):  # a failure after the compute, before any write
        raise RuntimeError("status broke")

    explorer._status_text = breaks
    assert not explorer.update(**{name: other})
    assert explorer.status.value == "⚠ unexpected RuntimeError: status broke"
    assert _same(before, _snapshot(explorer.fig))
    del explorer._status_text

    assert explorer.update(**defaults)  # and it recovers
    assert explorer.status.value == good_status and explorer.last_error is None


def test_invalid_control_values_set_status_without_raising(explorer):
    defaults = explorer.values
    assert explorer.update(**defaults)
    before = _snapshot(explorer.fig)
    for name, control in explorer.sliders.items():
        for value in _invalid_values(control):
            assert not explorer.update(**{name: value}), f"{name}={value!r} was accepted"
            assert explorer.status.value.startswith("⚠"), explorer.status.value
            assert name in explorer.status.value and "unexpected" not in explorer.status.value
            assert control.value == defaults[name], f"{name}={value!r} was clamped"
            assert _same(before, _snapshot(explorer.fig))
    assert not explorer.update(nonexistent=1.0)
    assert "unknown control" in explorer.status.value
    assert explorer.update(**defaults)


def test_bad_values_show_in_status_and_kernel_lives():
    e = widgets.BoundExplorer(points=([10, 100, 1000], [1.0, 0.3, 0.1]),
                              bound=lambda n, c: c * np.log(n) - 3.0,
                              params={"c": (0.1, 2.0, 1.0)})
    assert e.update(c=2.0)
    before = _snapshot(e.fig)
    assert not e.update(c=0.1)  # c log n - 3 < 0: cannot be drawn on log axes
    assert "⚠" in e.status.value and "Traceback" not in e.status.value
    assert isinstance(e.last_error, ValueError)
    assert _same(before, _snapshot(e.fig))
    assert e.update(c=1.95) and e.last_error is None  # and it recovers
    assert not _same(before, _snapshot(e.fig))
    assert not e.update(nonexistent=1.0)
    assert "unknown control" in e.status.value


# -- what is drawn is right ------------------------------------------------------------------
def test_schedule_status_and_curves_are_the_sdes_marginals():
    e = _built(widgets.NoiseScheduleExplorer)
    sdes = {"vp-linear": sg.VPSDE(0.1, 5.0), "vp-cosine": sg.VPSDE(0.1, 5.0, "cosine"),
            "subvp-linear": sg.SubVPSDE(0.1, 5.0), "ve": sg.VESDE(0.01, 5.0)}
    for kind, sde in sdes.items():
        assert e.update(sde=kind, noise=5.0, t=0.4), e.status.value
        m, s = (float(v) for v in sde.marginal_mean_std(jnp.asarray(0.4)))
        shown = re.search(r"m_t = (\S+),  s_t = (\S+)", e.status.value)
        np.testing.assert_allclose([float(shown[1]), float(shown[2])], [m, s],
                                   atol=5.1e-5)  # the status prints 4 decimals
        _, _, mline, sline, now = e.fig.data
        np.testing.assert_allclose(now.y, [m, s], rtol=1e-5)
        cm, cs = jax.vmap(sde.marginal_mean_std)(jnp.asarray(mline.x) * sde.T)
        np.testing.assert_allclose(mline.y, cm, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sline.y, cs, rtol=1e-5, atol=1e-7)
        assert e.sliders["noise"].description == ("σ_max" if kind == "ve" else "β_max")
    assert e.update(**{"sde": "vp-linear", "noise": 20.0, "t": 0.3})


def test_symmetry_bars_are_the_library_errors():
    e = _built(widgets.SymmetryExplorer)
    for order, n, t in ((4, 64, 0.2), (8, 12, 0.05)):
        assert e.update(order=order, n=n, t=t), e.status.value
        errs, _ = sg.symmetry.symmetry_errors(
            e.target, e.sde, sg.symmetry.CyclicGroup(order), e.data,
            jnp.asarray(n, e.data.dtype), jnp.asarray(t, float), e.probe_x0, e.probe_z)
        copies, originals, bars = e.fig.data
        np.testing.assert_allclose(bars.y, errs, rtol=1e-5)
        np.testing.assert_array_equal(np.stack([originals.x, originals.y], -1), e.data[:n])
        assert len(copies.x) == (order - 1) * n
        shown = [float(v) for v in re.findall(r"\d+(?:\.\d+)?(?:e[-+]\d+)?", e.status.value)]
        np.testing.assert_allclose(shown, errs, rtol=5.1e-3)  # printed to 3 significant digits


def test_field_loss_is_the_explicit_score_matching_error():
    e = _built(widgets.ScoreFieldExplorer)
    # The widget's computation is `esm_loss` at one t with its noise fixed ...
    key, t = jr.key(3), 0.2
    z = jr.normal(key, e.probe_x0.shape)
    mean, se = sg.explicit_score_error(e.model, e.target, e.sde, jnp.asarray(t), e.probe_x0, z)
    ref = sg.esm_loss(e.model, e.target, e.sde, e.probe_x0, t, key=key)
    np.testing.assert_allclose(mean, ref, rtol=1e-4)
    assert 0 < se < mean
    # ... which vanishes for the exact score ...
    exact, _ = sg.explicit_score_error(sg.ExactScore(e.target, e.sde), e.target, e.sde,
                                    jnp.asarray(t), e.probe_x0, z)
    assert float(exact) < 1e-8
    # ... and is what the status line prints.
    assert e.update(t=t)
    mean, se = sg.explicit_score_error(e.model, e.target, e.sde, jnp.asarray(t, float),
                                    e.probe_x0, e.probe_z)
    shown = re.search(r"= (\S+) ± (\S+)", e.status.value)
    np.testing.assert_allclose([float(shown[1]), float(shown[2])], [mean, se], atol=5.1e-5)


# -- compute size is not draw size -----------------------------------------------------------
def test_at_most_4000_points_per_scatter_trace(explorer):
    assert explorer.update(**explorer.values)
    assert all(n <= MAX_POINTS for n in _scatter_sizes(explorer.fig).values())


def test_many_particles_draw_a_subsample():
    assert widgets.MAX_DRAWN == MAX_POINTS
    schedule = widgets.NoiseScheduleExplorer(n=10_000)
    assert _scatter_sizes(schedule.fig)[1] == MAX_POINTS
    assert "4000 of 10000 particles drawn" in schedule.status.value
    sde = sg.VPSDE(0.1, 20.0)
    model = sg.ScoreMLP(2, 16, 1, key=jr.key(1), sde=sde)
    evolution = widgets.SampleEvolution(score=model, n=6000, steps=6, n_saves=3, grid_size=8)
    assert evolution.last_error is None, evolution.status.value
    assert max(_scatter_sizes(evolution.fig).values()) == MAX_POINTS
    assert "6000 particles (4000 drawn)" in evolution.status.value
    # With a learned score, beta_max is the model's: the control is disabled and refuses moves.
    assert evolution.sliders["beta_max"].disabled
    assert not evolution.update(beta_max=5.0)
    assert "fixed" in evolution.status.value and "model" in evolution.status.value
    assert evolution.update(method="ode", frame=0)


def test_particle_count_follows_backend():
    expected = 2000 if jax.default_backend() == "cpu" else 200_000
    assert widgets.default_particles() == expected


def test_particle_panels_fit_the_column_and_markers_follow_the_count():
    from sgmteach.widgets.plots import MAX_WIDTH, particles_grid

    target = sg.ring()
    few, many = target.sample(32, key=jr.key(0)), target.sample(3000, key=jr.key(1))
    fig = particles_grid([(f"p{i}", x, target) for i, x in enumerate((few, many, few, many))])
    assert fig.layout.width <= MAX_WIDTH
    small, large = [t.marker for t in fig.data if t.type == "scattergl"][:2]
    assert small.size > large.size and small.opacity > large.opacity
    assert all(t.name for t in fig.data if t.type == "scattergl")
