"""Every explorer in `widgets.__all__` honours the contract and never recompiles on a move.

For each explorer: build it with no arguments, then move every control to both ends and to 20
random values. Each move must change the figure's data, leave no traceback in `status`, and
compile nothing: all compilation happens at construction (one per shape / static variant).
"""

import logging

import ipywidgets as W
import jax
import numpy as np
import plotly.graph_objects as go
import pytest
import sgmteach.widgets as widgets

N_RANDOM = 20


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


def _ends_and_random(control, rng):
    if isinstance(control, W.Dropdown):
        values = [v for _, v in control.options] if isinstance(control.options[0], tuple) \
            else list(control.options)
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


@pytest.fixture(scope="module", params=widgets.__all__)
def explorer(request):
    return getattr(widgets, request.param)()


def test_contract(explorer):
    assert isinstance(explorer, W.Box)
    assert isinstance(explorer.fig, go.FigureWidget)
    assert isinstance(explorer.status, W.Label)
    assert explorer.sliders and all(isinstance(c, W.ValueWidget) for c in explorer.sliders.values())
    assert explorer.fig in explorer.children and explorer.status in explorer.children
    assert "Traceback" not in explorer.status.value and "⚠" not in explorer.status.value


def test_every_control_moves_the_figure_without_compiling(explorer, compiles):
    rng = np.random.default_rng(0)
    defaults = explorer.values
    for name, control in explorer.sliders.items():
        assert explorer.update(**defaults)
        for value in _ends_and_random(control, rng):
            before, old_value = _snapshot(explorer.fig), control.value
            ok = explorer.update(**{name: value})
            assert ok, f"{name}={value!r}: {explorer.status.value}"
            assert "Traceback" not in explorer.status.value
            if control.value != old_value:
                changed = not _same(before, _snapshot(explorer.fig))
                assert changed, f"{name}={value!r} drew nothing new"
    assert compiles.names == [], f"moving controls compiled: {compiles.names}"


def test_slider_events_reach_update(explorer):
    # A change coming from the front end (a trait change) redraws as update() does; with no
    # running event loop the debounce falls through to an immediate update.
    name, control = next((n, c) for n, c in explorer.sliders.items()
                         if isinstance(c, W.FloatSlider | W.FloatLogSlider | W.IntSlider))
    before = _snapshot(explorer.fig)
    control.value = control.max if control.value != control.max else control.min
    assert not _same(before, _snapshot(explorer.fig))


def test_bad_values_show_in_status_and_kernel_lives():
    e = widgets.BoundExplorer(points=([10, 100, 1000], [1.0, 0.3, 0.1]),
                              bound=lambda n, c: c * np.log(n) - 3.0,
                              params={"c": (0.1, 2.0, 1.0)})
    assert not e.update(c=0.1)  # c log n - 3 < 0: cannot be drawn on log axes
    assert "⚠" in e.status.value and "Traceback" not in e.status.value
    assert e.update(c=2.0)  # and it recovers
    assert not e.update(nonexistent=1.0)
    assert "unknown control" in e.status.value


def test_particle_count_follows_backend():
    expected = 2000 if jax.default_backend() == "cpu" else 200_000
    assert widgets.default_particles() == expected
