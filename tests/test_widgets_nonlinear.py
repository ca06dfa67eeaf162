"""The tutorial 05 explorers: what they draw and print is the library's own computation.

`ControlVariateExplorer`: the status line's means, standard errors, spreads and the constant
are `sg.nonlinear.ndsm_losses` / `ndsm_constant` recomputed here, and the variance problem shows
(raw spread > 10x the plug-in one at h = 1e-3). `LangevinExplorer`: the mode shares are those
of `euler_paths` and `fokker_planck` recomputed here; moving t only indexes; a width too narrow
for the grid leaves the density blank with the reason in the status line, and the explorer
recovers. The generic contract (no compilation on a move, bad values, ranges) is
`test_widgets.py` and `test_figures.py`, which pick both explorers up from `EXPLORERS`.
"""

import re

import jax.numpy as jnp
import numpy as np
import pytest
import sgmteach.widgets as widgets
from helpers import assert_mc_close, mean_se
from sgmteach.widgets.nonlinear import H_GRID

from sgmteach import nonlinear as nl
from sgmteach.nonlinear.pde import fokker_planck

NUMBER = r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?"
PRINTED = 5.1e-3  # the status prints 3 significant digits: relative rounding <= 5e-3


def _numbers(text):
    return [float(v) for v in re.findall(NUMBER, text)]


@pytest.fixture(scope="module")
def cv():
    return widgets.ControlVariateExplorer()


@pytest.fixture(scope="module")
def langevin():
    return widgets.LangevinExplorer()


# -- ControlVariateExplorer ------------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["none", "sigma2h"])
def test_cv_status_is_the_library_numbers(cv, weighting):
    h = 1e-3
    assert cv.update(h=h, control_variate="plugin", weighting=weighting), cv.status.value
    kw = dict(z=cv.z, weighting=weighting)
    raw = np.asarray(nl.ndsm_losses(cv.model, cv.sde, cv.x, cv.t, h, **kw), np.float64)
    ctl = np.asarray(nl.ndsm_losses(cv.model, cv.sde, cv.x, cv.t, h, control_variate="plugin",
                                    **kw), np.float64)
    const = float(nl.ndsm_constant(cv.sde, cv.t, h, 2, weighting=weighting))
    n = raw.size
    # "h = ..: raw m ± se, CV m ± se; raw − CV = m ± se vs λd/(σ²h) = c; spreads s / s = r"
    # (σ² is not an ASCII digit: not a number here).
    expected = [h, raw.mean(), raw.std() / np.sqrt(n), ctl.mean(), ctl.std() / np.sqrt(n),
                (raw - ctl).mean(), (raw - ctl).std() / np.sqrt(n), const,
                raw.std(), ctl.std(), raw.std() / ctl.std()]
    np.testing.assert_allclose(_numbers(cv.status.value), expected, rtol=PRINTED)
    # The identity E[raw] - E[CV] = lambda d / (sigma^2 h), on the same normals.
    diff, se = mean_se(raw - ctl)
    assert_mc_close(diff, const, se, what=f"E[raw] - E[CV], weighting {weighting}")
    # The markers at the current h are the spreads; the curves are the library's at each h.
    _, _, _, now, _, _ = cv.fig.data
    np.testing.assert_allclose(now.y, [raw.std(), ctl.std()], rtol=1e-4)
    raw_curve, cv_curve = cv.fig.data[0], cv.fig.data[1]
    for i in (0, len(H_GRID) - 1):
        r = nl.ndsm_losses(cv.model, cv.sde, cv.x, cv.t, H_GRID[i], **kw)
        c = nl.ndsm_losses(cv.model, cv.sde, cv.x, cv.t, H_GRID[i], control_variate="plugin",
                           **kw)
        np.testing.assert_allclose([raw_curve.y[i], cv_curve.y[i]], [np.std(r), np.std(c)],
                                   rtol=1e-4)


def test_cv_raw_spread_explodes_and_the_plugin_one_stays_put(cv):
    assert cv.update(h=1e-3, control_variate="plugin", weighting="none"), cv.status.value
    raw_std, cv_std = cv.fig.data[3].y  # the markers at the current h: what a learner reads
    assert raw_std > 10 * cv_std, (raw_std, cv_std)
    raw_curve, cv_curve = (np.asarray(t.y) for t in cv.fig.data[:2])
    # Raw: at least the ||Z||^2 term's sqrt(2d)/(sigma^2 h), a thousand-fold over the grid.
    assert np.all(raw_curve >= 0.9 * cv.fig.data[2].y)
    assert raw_curve[0] / raw_curve[-1] > 500
    assert cv_curve.max() / cv_curve.min() < 1.5  # flat within 50% over three decades of h


def test_cv_untrained_neural_is_the_plugin_and_none_draws_raw_only(cv):
    assert cv.update(h=1e-2, control_variate="plugin", weighting="none")
    plugin = (list(cv.fig.data[1].y), list(cv.fig.data[5].y), cv.status.value)
    assert cv.update(control_variate="neural")
    assert (list(cv.fig.data[1].y), list(cv.fig.data[5].y)) == plugin[:2]
    assert cv.status.value.replace("neural", "plug-in") == plugin[2]
    assert "neural" in cv.fig.layout.title.text
    assert cv.update(control_variate="none")
    assert len(cv.fig.data[1].y) == 0 and len(cv.fig.data[5].y) == 0
    assert "raw only" in cv.fig.layout.title.text and "Pick a control variate" in cv.status.value
    assert cv.update(control_variate="plugin", h=1e-3)


# -- LangevinExplorer ------------------------------------------------------------------------
def test_langevin_shares_are_the_library_numbers(langevin):
    e = langevin
    assert e.update(strength=0.0, width=1.0, t=1.0), e.status.value
    sde = nl.LangevinSDE(e.reference, 0.1, 10.0, strength=0.0, width=1.0)
    xs, _ = nl.euler_paths(sde, e.x0, e._steps, key=e._key)
    share = float(np.mean(np.asarray(xs[-1, :, 0]) > 0))
    p, _ = fokker_planck(sde, e._density0, e.axes, jnp.asarray(e._ts, jnp.float32))
    right = np.asarray(e.axes[0]) > 0
    grid = np.asarray(p)[:, right, :].sum((1, 2)) * e._cell
    shown = re.search(rf"particles ({NUMBER}) ± ({NUMBER}).*exact \(grid\) ({NUMBER})",
                      e.status.value)
    np.testing.assert_allclose([float(v) for v in shown.groups()],
                               [share, np.sqrt(share * (1 - share) / e.n), grid[-1]],
                               rtol=PRINTED)
    _, heat, _, _, share_trace, grid_trace, _, _ = e.fig.data
    np.testing.assert_allclose(grid_trace.y, grid, rtol=1e-5)
    np.testing.assert_allclose(heat.z, np.sqrt(np.maximum(np.asarray(p[-1]).T, 0)), rtol=1e-5)
    # At lambda = 0 (the VP SDE) the right mode fills towards 1/2; the particles follow the
    # exact law within C_SE s.e. plus the Euler chain's O(h) bias (0.02 here, h = 1/200).
    assert grid[-1] > 0.4 and share_trace.y[-1] == pytest.approx(share)
    assert_mc_close(share, grid[-1], np.sqrt(share * (1 - share) / e.n), bias=0.02,
                    what="particles' share against the grid's, VP")
    # At lambda = 1 the structure stays: the share is the data's 0.1 at every t.
    assert e.update(strength=1.0, width=1.0)
    assert np.abs(np.asarray(e.fig.data[5].y) - 0.1).max() < 0.01
    assert e.update(strength=1.0, width=2.0, t=1.0)


def test_langevin_t_only_indexes_and_keeps_the_colour_scale(langevin):
    e = langevin
    assert e.update(strength=0.6, width=1.5, t=0.0)
    cached, zmax = dict(e._cache), e.fig.data[1].zmax
    for t in np.linspace(0, 1, 9):
        assert e.update(t=float(t)), e.status.value
        assert e.fig.data[1].zmax == zmax
    assert e._cache.keys() == cached.keys()  # no new (strength, width): nothing recomputed
    assert e.update(t=0.51)  # between saved times: the title says which one is drawn
    assert "nearest saved time 0.500" in e.fig.layout.title.text
    assert e.update(strength=1.0, width=2.0, t=1.0)


def test_langevin_too_narrow_a_width_blanks_the_density_and_recovers(langevin):
    e = langevin
    assert e.update(strength=1.0, width=2.0, t=0.5)
    before = np.asarray(e.fig.data[0].x).copy()
    assert e.update(width=0.5), e.status.value  # rho's std 0.5 x 0.33: finer than the grid
    assert "⚠" in e.status.value and "too coarse" in e.status.value
    assert "Traceback" not in e.status.value and e.last_error is None
    assert np.isnan(np.asarray(e.fig.data[1].z, float)).all()
    assert not np.array_equal(before, e.fig.data[0].x)  # the particles are still drawn
    assert "particles" in e.status.value
    assert e.update(width=2.0) and "⚠" not in e.status.value  # and it recovers
    assert np.isfinite(np.asarray(e.fig.data[1].z, float)).all()
    assert "exact (grid)" in e.status.value
