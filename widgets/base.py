"""The explorer contract shared by every widget in `widgets/`.

An explorer is an `ipywidgets.VBox` holding

- `sliders`: dict name -> ipywidgets control (sliders, dropdowns, a play button ...);
- `fig`: one plotly `FigureWidget`, made once and only ever updated inside `batch_update`;
- `status`: a `Label` that shows an error message instead of raising, so the kernel lives on;
- `update(**values)`: what a control change calls, and what tests call to drive it.

Values enter compiled code as arrays (traced), so moving a control never compiles; only what
fixes a shape (a particle count, a grid size) may. Subclasses compile everything at
construction (one warm-up call per static variant), never on the first drag.
"""

import asyncio
import time
import traceback

import equinox as eqx
import ipywidgets as W
import jax
import numpy as np
import plotly.graph_objects as go

__all__ = ["Explorer", "default_particles"]


def default_particles(cpu: int = 2000, gpu: int = 200_000) -> int:
    """Particle count sized by the backend: thousands on a CPU, 10^5 or more on a GPU."""
    return gpu if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else cpu


class Explorer(W.VBox):
    """Base class: controls on top, one figure, a status line; subclasses fill three hooks.

    - `_controls()` returns the dict of controls (built once);
    - `_figure()` returns the `go.FigureWidget` (built once);
    - `_render(values)` computes with the current control values and writes trace data;
      it runs inside `fig.batch_update()`, and any exception it raises becomes the status text.

    `debounce_s` > 0 coalesces a burst of control events (a drag) into one update, once the
    control has been still for that long; `update(...)` itself is always immediate.
    """

    debounce_s: float = 0.0

    def __init__(self):
        self.sliders = self._controls()
        self.fig = self._figure()
        self.status = W.Label(value="")
        self.last_update_s = float("nan")
        self._pending: dict = {}
        self._timer = None
        for name, control in self.sliders.items():
            control.observe(self._on_change(name), names="value")
        super().__init__([self._layout_controls(), self.fig, self.status])
        self.update()  # first draw, and the warm-up compile

    # -- hooks ------------------------------------------------------------------------------
    def _controls(self) -> dict:
        raise NotImplementedError

    def _figure(self) -> go.FigureWidget:
        raise NotImplementedError

    def _render(self, values: dict) -> None:
        raise NotImplementedError

    def _layout_controls(self):
        return W.HBox(list(self.sliders.values()), layout=W.Layout(flex_flow="row wrap"))

    # -- the contract -----------------------------------------------------------------------
    @property
    def values(self) -> dict:
        """Current value of every control."""
        return {name: c.value for name, c in self.sliders.items()}

    def update(self, **values) -> bool:
        """Set controls to `values` (without re-triggering), recompute and redraw.

        Returns True on success; on failure the message goes to `status` and the figure keeps
        its last good state.
        """
        unknown = set(values) - set(self.sliders)
        if unknown:
            self.status.value = f"unknown control(s) {sorted(unknown)}; have {list(self.sliders)}"
            return False
        self._set_quietly(values)
        start = time.perf_counter()
        try:
            with self.fig.batch_update():
                self._render(self.values)
        except (ValueError, eqx.EquinoxRuntimeError, FloatingPointError, ArithmeticError) as err:
            self.status.value = f"⚠ {_one_line(err)}"
            return False
        except Exception as err:  # the kernel must live on whatever a control does
            self.status.value = f"⚠ unexpected {type(err).__name__}: {_one_line(err)}"
            self._last_traceback = traceback.format_exc()
            return False
        self.last_update_s = time.perf_counter() - start
        self.status.value = self._status_text()
        return True

    def _status_text(self) -> str:
        return ""

    # -- plumbing ---------------------------------------------------------------------------
    def _set_quietly(self, values: dict) -> None:
        self._quiet = True
        try:
            for name, v in values.items():
                self.sliders[name].value = v
        finally:
            self._quiet = False

    def _on_change(self, name):
        def handler(change):
            if getattr(self, "_quiet", False):
                return
            self._pending[name] = change["new"]
            self._schedule()

        return handler

    def _schedule(self):
        loop = _running_loop()
        if self.debounce_s <= 0 or loop is None:
            self._flush()
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self.debounce_s, self._flush)

    def _flush(self):
        self._timer = None
        pending, self._pending = self._pending, {}
        self.update(**pending)


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
