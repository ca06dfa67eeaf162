"""The tutorial 08 and 09 explorers: what they draw and print is the library's own computation.

`ParticleFlowExplorer`: the particles, the kinetic energy and the speeds drawn are those of
`sg.particles.gpa` rerun here with the same inputs; the frame scrubber only picks a saved frame
(no new run, no compilation); moving L, Δt, the bound or the divergence compiles nothing; the
unbounded run at Δt = 1 stops, and the status line says at which step. `TailsExplorer`: the
exact curve is `StudentT.radial_ccdf` on its grid, the data are drawn with a fixed key, the
generated radii are a rerun's, the status numbers are `radial_ccdf_l1` / `tail_log_error` /
`divergence_finite` recomputed here, and no particle passes the speed bound drawn. The generic
contract is `test_widgets.py` and `test_figures.py`, which pick both up from `EXPLORERS`.
"""

import re

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import sgmteach.widgets as widgets
from helpers import count_compiles
from sgmteach.widgets.particles import (
    SAVE_EVERY,
    STEPS,
    TAIL_STEPS,
    run_gpa,
)

from sgmteach import tails

NUMBER = r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?"
PRINTED = 5.1e-3  # the status prints 3 significant digits


@pytest.fixture(scope="module")
def flow():
    return widgets.ParticleFlowExplorer()


@pytest.fixture(scope="module")
def tails_explorer():
    return widgets.TailsExplorer()


def _assert_counter_sees_run_chunk():
    """Positive control of `count_compiles("_run_chunk")`: a fresh function of that name."""

    @eqx.filter_jit
    def _run_chunk(x):
        return x + 1

    with count_compiles("_run_chunk") as seen:
        _run_chunk(jnp.zeros(3))
    assert len(seen) == 1, seen


# -- ParticleFlowExplorer ----------------------------------------------------------------------
def _flow_run(e, **kw):
    return run_gpa(e.y0, e.data, steps=STEPS, key=e._key, critic_steps=5, lr=2e-2,
                   save_every=SAVE_EVERY, **kw)


def test_flow_draws_the_library_run(flow):
    e = flow
    assert e.update(lipschitz=10.0, bound="spectral", step=1.0, divergence="kl",
                    frame=e.sliders["frame"].max), e.status.value
    run, message = _flow_run(e, lipschitz=10.0, step=1.0, divergence="kl")
    assert message is None and not run.diverged
    data, particles, ke, now, speed, limit, stop = e.fig.data
    np.testing.assert_allclose(np.stack([particles.x, particles.y], -1), run.frames[-1],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack([data.x, data.y], -1), np.asarray(e.data))
    np.testing.assert_allclose(ke.y, run.history["kinetic"], rtol=1e-5)
    np.testing.assert_allclose(speed.y, run.history["max_grad"], rtol=1e-5)
    assert len(ke.x) == STEPS and list(limit.y) == [10.0, 10.0]
    assert np.all(np.asarray(speed.y) <= 10.0 * (1 + 1e-5))  # the speed limit holds
    assert len(stop.x) == 0 and len(now.x) == 0  # the last frame has no step of its own
    assert particles.name == f"particles at step {STEPS}"
    assert e.status.value.startswith(f"L = 10, Δt = 1, KL: frame {STEPS // SAVE_EVERY}/"
                                     f"{STEPS // SAVE_EVERY} (step {STEPS})")
    assert "stable" in e.status.value


def test_flow_frame_only_picks_a_saved_frame(flow):
    e = flow
    assert e.update(lipschitz=10.0, bound="spectral", step=1.0, divergence=2.0, frame=0)
    run, _ = _flow_run(e, lipschitz=10.0, step=1.0, divergence=("alpha", 2.0))
    fixed = [np.asarray(e.fig.data[i].y).copy() for i in (0, 2, 4, 5)]
    calls = e.gpa_calls
    with count_compiles("_run_chunk") as compiled:
        for k in (3, 11, 0, e.sliders["frame"].max, 7):
            assert e.update(frame=k), e.status.value
            particles, now = e.fig.data[1], e.fig.data[3]
            np.testing.assert_allclose(np.stack([particles.x, particles.y], -1), run.frames[k],
                                       rtol=1e-5, atol=1e-6)
            if k * SAVE_EVERY < STEPS:  # the marker sits on the KE curve at the frame's step
                assert list(now.x) == [k * SAVE_EVERY]
                assert now.y[0] == pytest.approx(run.history["kinetic"][k * SAVE_EVERY])
            assert f"frame {k}/" in e.status.value and f"step {k * SAVE_EVERY}" in \
                e.fig.layout.title.text
            for i, before in zip((0, 2, 4, 5), fixed, strict=True):
                np.testing.assert_array_equal(np.asarray(e.fig.data[i].y), before)
    assert e.gpa_calls == calls, "moving the frame reran GPA"
    assert compiled == []
    _assert_counter_sees_run_chunk()


def test_flow_moves_never_compile(flow):
    e = flow
    calls = e.gpa_calls
    moves = [dict(lipschitz=3.7), dict(step=0.45), dict(divergence=5.0), dict(divergence=1.5),
             dict(divergence="kl"), dict(bound="frobenius"), dict(lipschitz=0.6),
             dict(bound="off"), dict(step=0.2), dict(bound="spectral", lipschitz=55.0)]
    with count_compiles("_run_chunk") as compiled:
        for move in moves:
            assert e.update(**move), (move, e.status.value)
    assert compiled == [], f"moves compiled the GPA loop: {compiled}"
    assert e.gpa_calls - calls == len(moves)  # each move made a run (the control)
    _assert_counter_sees_run_chunk()
    assert e.update(lipschitz=10.0, bound="spectral", step=1.0, divergence="kl")


def test_flow_unbounded_run_stops_and_says_so(flow):
    e = flow
    assert e.update(bound="off", step=1.0, divergence="kl", frame=e.sliders["frame"].max)
    stopped = re.search(r"stopped at step (\d+) of 200", e.status.value)
    assert stopped, e.status.value
    assert "escape radius" in e.status.value and "⚠" not in e.status.value
    k = int(stopped[1])
    assert k < STEPS // 2  # the authors' point: no fixed step is safe without the bound
    ke, stop, limit = e.fig.data[2], e.fig.data[6], e.fig.data[5]
    assert list(stop.x) == [k] and len(limit.x) == 0 and "off" in limit.name
    assert np.isnan(np.asarray(ke.y, float)[k:]).all()
    assert f"stopped at step {k}" in e.fig.layout.title.text
    # L plays no part without the bound: the same run, looked up
    calls = e.gpa_calls
    assert e.update(lipschitz=2.0) and e.gpa_calls == calls
    assert e.update(bound="spectral", lipschitz=10.0)
    assert "stable" in e.status.value


def test_flow_extreme_values_never_raise(flow):
    e = flow
    top_L = e.sliders["lipschitz"].base ** e.sliders["lipschitz"].max
    top_step = e.sliders["step"].base ** e.sliders["step"].max
    for bound in ("spectral", "frobenius", "off"):
        for div in ("kl", 1.5, 10.0):
            assert e.update(lipschitz=top_L, step=top_step, bound=bound, divergence=div), (
                bound, div, e.status.value)
            assert e.last_error is None and "⚠" not in e.status.value
            assert "stable" in e.status.value or "stopped at step" in e.status.value
    assert e.update(lipschitz=10.0, step=1.0, bound="spectral", divergence="kl")


# -- TailsExplorer -----------------------------------------------------------------------------
def test_tails_draws_and_prints_the_library_numbers(tails_explorer):
    e = tails_explorer
    nu = 1.5
    assert e.update(nu=nu, divergence=2.0, lipschitz=1.0, step=5.0), e.status.value
    target = tails.StudentT(nu, 2)
    exact, data, gen = e.fig.data[:3]
    np.testing.assert_allclose(exact.y, target.radial_ccdf(np.asarray(exact.x)), rtol=1e-5)
    x = np.asarray(target.sample(e.n, key=e._data_key))
    np.testing.assert_allclose(data.x, np.sort(np.linalg.norm(x, axis=1)), rtol=1e-5)
    assert data.y[0] == 1.0 and data.y[-1] == pytest.approx(1 / e.n)
    run, message = run_gpa(e.y0, x, divergence=("alpha", 2.0), lipschitz=1.0, step=5.0,
                           steps=TAIL_STEPS, key=e._key, chunk_size=TAIL_STEPS)
    assert message is None
    np.testing.assert_allclose(gen.x, np.sort(np.linalg.norm(run.particles, axis=1)),
                               rtol=1e-4)
    expected = [300.0, tails.radial_ccdf_l1(run.particles, target, r_max=300.0),
                tails.radial_ccdf_l1(x, target, r_max=300.0),
                tails.tail_log_error(run.particles, target),
                tails.tail_log_error(x, target)]
    shown = re.search(rf"\(r ≤ ({NUMBER})\) ({NUMBER}) \(data ({NUMBER})\), tail error "
                      rf"({NUMBER}) \(data ({NUMBER})\)", e.status.value)
    assert shown, e.status.value
    np.testing.assert_allclose([float(v) for v in shown.groups()], expected, rtol=PRINTED)
    assert "α/(α−1) = 2 < ν = 1.5? no" in e.status.value
    # the vertical lines: the largest radii and the speed bound max|Y0| + L dt n
    reach = e._y0_max + 1.0 * 5.0 * TAIL_STEPS
    assert e.fig.data[3].x[0] == pytest.approx(gen.x[-1])
    assert e.fig.data[4].x[0] == pytest.approx(data.x[-1])
    assert e.fig.data[5].x[0] == pytest.approx(reach)
    np.testing.assert_allclose(e.fig.data[6].y, run.history["radius"], rtol=1e-5)


@pytest.mark.parametrize("div, nu, verdict", [(2.0, 3.0, "yes"), (5.0, 1.3, "yes"),
                                              (1.5, 2.5, "no"), ("kl", 5.0, "no")])
def test_tails_finiteness_verdict(tails_explorer, div, nu, verdict):
    e = tails_explorer
    assert e.update(divergence=div, nu=nu, lipschitz=1.0, step=5.0), e.status.value
    a = 1.0 if div == "kl" else div
    assert bool(tails.divergence_finite(2, a, nu).moment) == (verdict == "yes")
    assert e.status.value.endswith(f"? {verdict}" if div != "kl" else
                                   "? no (no exponential moments)")


def test_tails_data_use_a_fixed_key(tails_explorer):
    e = tails_explorer
    np.testing.assert_array_equal(e.data(1.2), e.data(1.2))
    assert not np.array_equal(e.data(1.2), e.data(2.4))
    assert e.update(nu=1.2, divergence=2.0, lipschitz=1.0, step=5.0)
    first = [np.asarray(t.x).copy() for t in e.fig.data[:3]]
    assert e.update(nu=2.4) and e.update(nu=1.2)
    for before, t in zip(first, e.fig.data[:3], strict=True):
        np.testing.assert_array_equal(np.asarray(t.x), before)


def test_tails_moves_never_compile_and_respect_the_speed_bound(tails_explorer):
    e = tails_explorer
    calls = e.gpa_calls
    moves = [dict(nu=0.7), dict(nu=3.3), dict(divergence=10.0), dict(divergence="kl"),
             dict(lipschitz=2.0), dict(lipschitz=0.5), dict(step=0.8), dict(lipschitz="off"),
             dict(divergence=1.5)]
    with count_compiles("_run_chunk") as compiled:
        for move in moves:
            assert e.update(**move), (move, e.status.value)
            v = e.values
            if v["lipschitz"] != "off":  # no particle passes max|Y0| + L dt n
                radius = np.asarray(e.fig.data[6].y, float)
                bound = e._y0_max + v["lipschitz"] * v["step"] * np.arange(TAIL_STEPS)
                ok = np.isfinite(radius)
                assert np.all(radius[ok] <= bound[ok] * (1 + 1e-5) + 1e-5), move
    assert compiled == [], f"moves compiled the GPA loop: {compiled}"
    assert e.gpa_calls - calls == len(moves)
    _assert_counter_sees_run_chunk()
    assert e.update(nu=1.0, divergence=2.0, lipschitz=1.0, step=5.0)


def test_tails_extreme_values_never_raise(tails_explorer):
    e = tails_explorer
    low = e.sliders["nu"].min
    for div in ("kl", 1.5, 10.0):
        for L in (1.0, "off"):
            assert e.update(nu=low, divergence=div, lipschitz=L, step=5.0), (
                div, L, e.status.value)
            assert e.last_error is None and "⚠" not in e.status.value
            if e.fig.data[9].x is not None and len(e.fig.data[9].x):  # a stopped run says so
                assert "stopped at step" in e.status.value
    assert e.update(nu=1.0, divergence=2.0, lipschitz=1.0, step=5.0)
