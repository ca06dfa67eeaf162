"""The explorer contract shared by every widget in `widgets/`.

An explorer is an `ipywidgets.VBox` holding

- `sliders`: dict name -> ipywidgets control (sliders, dropdowns ...);
- `fig`: one plotly `FigureWidget`, made once and only ever updated inside `batch_update`;
- `status`: a `Label` that shows an error message instead of raising, so the kernel lives on;
- `update(**values)`: what a control change calls, and what tests call to drive it.

Values enter compiled code as arrays (traced), so moving a control never compiles; only what
fixes a shape (a particle count, a grid size, a group order) may. The static combinations an
explorer offers are declared by `_variants()` and all compiled at construction, never on the
first drag.
"""

import asyncio
from collections.abc import Sequence

import equinox as eqx
import ipywidgets as W
import jax
import numpy as np
import plotly.graph_objects as go

__all__ = ["AbstractExplorer", "MAX_DRAWN", "default_particles", "drawn_count", "to_numpy"]

MAX_DRAWN = 4000
"""The most points one scatter trace is sent: computing 10^5 particles on a GPU is cheap,
shipping them to the browser on every move is not (megabytes over the comm)."""


def default_particles(cpu: int = 2000, gpu: int = 200_000) -> int:
    """Particle count sized by the backend: thousands on a CPU, 10^5 or more on a GPU."""
    return gpu if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else cpu


def drawn_count(n: int) -> int:
    """How many of `n` computed points are drawn: all of them, up to `MAX_DRAWN`.

    Particles are independent draws, so the first `drawn_count(n)` are a uniform subsample.
    """
    return min(int(n), MAX_DRAWN)


class AbstractExplorer(W.VBox):
    """Base class: controls on top, one figure, a status line; subclasses fill the hooks.

    - `_controls()` returns the dict of controls (built once);
    - `_figure()` returns the `go.FigureWidget` (built once);
    - `_variants()` returns the static combinations of control values (SDE kinds, group
      orders, samplers), each a dict of some controls' values; one warm-up `_compute` per
      variant at construction compiles them all;
    - `_compute(values) -> result` is pure and may raise: all jitted work, every
      device-to-host transfer and every check happens here, and it writes nothing;
    - `_draw(result)` writes figure data only (it runs inside `fig.batch_update()`);
    - `_status_text(result)` is the status line after a good update.

    A subclass sets its own attributes first, then calls `super().__init__()`, which builds the
    controls and the figure, compiles the variants and draws once.

    `update(**values)` checks the values against each control's options or range, sets the
    controls, computes, and only then draws. A bad value or a failed `_compute` leaves the
    figure as it was and puts the message in `status`; `last_error` holds the exception
    (`raise explorer.last_error` shows its traceback) until the next good update.

    `main_control` names the control the tutorial asks a learner to move first.

    Events of the controls named in `debounced` are coalesced: once such a control has been
    still for `debounce_s` (a drag of a heavy control is one update). Other controls, and
    `update(...)` itself, are immediate.
    """

    debounce_s: float = 0.15
    debounced: tuple[str, ...] = ()
    main_control: str | None = None
    """The control a learner moves first, the one the text invites them to move (default: the
    first). The browser test moves it and requires the figure to change visibly."""

    def __init__(self):
        if type(self) is AbstractExplorer:
            raise TypeError("AbstractExplorer is abstract: subclass it.")
        self._quiet = False
        self._pending: dict = {}
        self._timer = None
        self.last_error: BaseException | None = None
        self.sliders = self._controls()
        if self.main_control is None:
            self.main_control = next(iter(self.sliders))
        elif self.main_control not in self.sliders:
            raise TypeError(f"main_control {self.main_control!r} is not a control of "
                            f"{type(self).__name__}: {list(self.sliders)}")
        self.fig = self._figure()
        # Trace names given at construction did not reach the browser's legend ("trace 3"),
        # while names set by the first draw did (tests/browser screenshots, tutorials 05 and
        # 07). So every name is held back here and set again by the first `update`.
        self._held_names = [t.name for t in self.fig.data]
        for trace in self.fig.data:
            trace.name = None
        self.status = W.Label(value="")
        for name, control in self.sliders.items():
            control.observe(self._on_change(name), names="value")
        super().__init__([self._layout_controls(), self.fig, self.status])
        # CSS classes a page (and the browser test) can find the explorer and its main control by
        self.add_class("sgmteach-explorer")
        self.add_class(f"sgmteach-{type(self).__name__}")
        self.sliders[self.main_control].add_class("sgmteach-main-control")
        self._warm_up()
        self.update()  # the first draw

    # -- hooks ------------------------------------------------------------------------------
    def _controls(self) -> dict:
        raise NotImplementedError

    def _figure(self) -> go.FigureWidget:
        raise NotImplementedError

    def _variants(self) -> Sequence[dict]:
        return ({},)

    def _compute(self, values: dict):
        raise NotImplementedError

    def _draw(self, result) -> None:
        raise NotImplementedError

    def _status_text(self, result) -> str:
        return ""

    def _layout_controls(self) -> W.Widget:
        return W.HBox(list(self.sliders.values()), layout=W.Layout(flex_flow="row wrap"))

    # -- the contract -----------------------------------------------------------------------
    @property
    def values(self) -> dict:
        """Current value of every control."""
        return {name: c.value for name, c in self.sliders.items()}

    def update(self, **values) -> bool:
        """Set controls to `values` (without re-triggering), recompute and redraw.

        Returns True on success. On failure it returns False, the message goes to `status`,
        the exception to `last_error`, and the figure keeps its last good state. An unknown
        control or a value a control does not offer changes no control; a failed computation
        leaves the controls at the values asked for, as a move in the browser does.
        """
        try:
            self._set_quietly(self._checked(values))
            result = self._compute(self.values)
            text = self._status_text(result)
            with self.fig.batch_update():
                self._draw(result)
            self._restore_names()  # after the batch: inside it, a trace reads its old values
        except (ValueError, eqx.EquinoxRuntimeError, ArithmeticError) as err:
            return self._failed(err, f"⚠ {_one_line(err)}")
        except Exception as err:  # the kernel must live on whatever a control does
            return self._failed(err, f"⚠ unexpected {type(err).__name__}: {_one_line(err)}")
        self.last_error = None
        self.status.value = text
        return True

    # -- plumbing ---------------------------------------------------------------------------
    def _restore_names(self) -> None:
        """Set the names held back at construction on traces `_draw` left unnamed (once)."""
        if self._held_names is None:
            return
        for trace, name in zip(self.fig.data, self._held_names, strict=True):
            if trace.name is None and name is not None:
                trace.name = name
        self._held_names = None

    def _failed(self, err: BaseException, message: str) -> bool:
        self.last_error = err
        self.status.value = message
        return False

    def _warm_up(self) -> None:
        """One `_compute` per declared static variant, at the current values of the rest.

        The variant the controls start at is compiled by the first draw instead. A variant
        that cannot be computed is a bug of the explorer: it raises here, at construction.
        """
        current = self.values
        for variant in self._variants():
            values = {**current, **self._checked(variant)}
            if values != current:
                self._compute(values)

    def _checked(self, values: dict) -> dict:
        """`values` checked against the controls, never clamped; raises `ValueError`."""
        unknown = sorted(set(values) - set(self.sliders))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; have {list(self.sliders)}")
        return {name: _checked_value(name, self.sliders[name], v) for name, v in values.items()}

    def _set_quietly(self, values: dict) -> None:
        self._quiet = True
        try:
            for name, v in values.items():
                self.sliders[name].value = v
        finally:
            self._quiet = False

    def _on_change(self, name):
        def handler(change):
            if self._quiet:
                return
            self._pending[name] = change["new"]
            self._schedule(name)

        return handler

    def _schedule(self, name):
        loop = _running_loop()
        if name not in self.debounced or self.debounce_s <= 0 or loop is None:
            self._flush()
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self.debounce_s, self._flush)

    def _flush(self):
        if self._timer is not None:
            self._timer.cancel()  # a no-op when this is the timer's own call
            self._timer = None
        pending, self._pending = self._pending, {}
        if pending:
            self.update(**pending)


def _option_values(control) -> list:
    return [o[1] if isinstance(o, tuple) and len(o) == 2 else o for o in control.options]


def _checked_value(name: str, control, value):
    """The value to set `control` to, or a `ValueError` that says what the control offers."""
    if getattr(control, "disabled", False) and not _equal(value, control.value):
        why = f" ({control.tooltip})" if getattr(control, "tooltip", None) else ""
        raise ValueError(f"{name} is fixed in this explorer{why}")
    if isinstance(control, W.Dropdown | W.Select | W.SelectionSlider | W.ToggleButtons):
        offered = _option_values(control)
        for option in offered:
            if _equal(value, option):
                return option
        raise ValueError(f"{name} = {value!r} is not offered; choose one of {offered}")
    if isinstance(control, W.FloatLogSlider):
        lo, hi = control.base**control.min, control.base**control.max
    elif isinstance(control, W.FloatSlider | W.IntSlider | W.BoundedFloatText |
                    W.BoundedIntText | W.Play):
        lo, hi = control.min, control.max
    else:
        return value  # any other control: its own trait validates (inside update's try)
    x = _real(name, value)
    tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    if not lo - tol <= x <= hi + tol:
        raise ValueError(f"{name} = {x:g} is outside its range [{lo:g}, {hi:g}]")
    if isinstance(control, W.IntSlider | W.BoundedIntText | W.Play):
        if x != round(x):
            raise ValueError(f"{name} must be a whole number, got {x:g}")
        return int(round(x))
    return min(max(x, lo), hi)  # within rounding of an end: that end itself


def _real(name: str, value) -> float:
    try:
        arr = np.asarray(value)
        ok = arr.ndim == 0 and np.issubdtype(arr.dtype, np.number) and arr.dtype != bool
    except Exception:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a number, got {value!r}")
    x = float(arr)
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def _equal(a, b) -> bool:
    """`a == b` as a control means it: no error on arrays, and `True` is not the option `1`."""
    if a is b:
        return True
    if isinstance(a, bool | np.bool_) != isinstance(b, bool | np.bool_):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _one_line(err: BaseException) -> str:
    """The message a learner needs, without the traceback Equinox embeds in runtime errors."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    marker = "EquinoxRuntimeError: "
    for ln in lines:
        if marker in ln:
            return ln.split(marker, 1)[1]
    return lines[0] if lines else type(err).__name__


def to_numpy(*xs):
    """Device arrays to NumPy (one transfer each), for plotly."""
    return tuple(np.asarray(x) for x in xs)
