"""Run a tutorial in a real JupyterLab + headless Chromium and drive its explorers.

See ``conftest.py`` for the server/browser fixtures and the environment variables
(``SGMTEACH_BROWSER_NOTEBOOK``, ``SGMTEACH_SCREENSHOT_DIR``, ``CI``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from .conftest import ARTIFACTS_DIR, notebooks_under_test

pytestmark = pytest.mark.browser

KERNEL_IDLE_TIMEOUT_MS = 120_000  # opening the notebook until the kernel is idle
RUN_ALL_TIMEOUT_MS = 360_000  # Run All until every cell ran: 104-189 s seen on a loaded 2-core box
RENDER_TIMEOUT_MS = 60_000  # widgets / plots drawing after the run
UPDATE_TIMEOUT_MS = 60_000  # slider move until the figure data changed
ARROW_PRESSES = 3

IDLE_STATUS = ".jp-StatusBar-TextItem"
OUTPUT = ".jp-OutputArea-output"
PLOT = ".js-plotly-plot"
SLIDER_HANDLE = ".widget-slider .noUi-handle"

# Error outputs render as ``application/vnd.jupyter.stderr`` too; they are told apart from
# warnings by their traceback text ("Traceback (most recent call last)" for runtime errors,
# "Cell In[n], line m" for syntax errors) rather than by any CSS class.
ERRORS_JS = r"""
() => {
  const errs = [];
  for (const el of document.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')) {
    const t = el.textContent || '';
    if (t.includes('Traceback') || /Cell In\[\d+\], line \d+/.test(t)) errs.push(t);
  }
  return errs;
}
""".strip()

# True once the kernel is idle again, no cell is queued/running ([*]) and the last non-empty
# code cell has an execution count, or a cell errored (Run All stops there).
RUN_FINISHED_JS = (
    r"""
() => {
  const idle = [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(e => (e.textContent || '').includes('| Idle'));
  if (!idle) return false;
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => {
    const p = c.querySelector('.jp-InputArea-prompt');
    return p ? p.textContent.trim() : '';
  });
  if (prompts.some(p => p.includes('*'))) return false;
  if ((ERRORS)().length > 0) return true;
  const nonEmpty = cells.filter(c => {
    const src = c.querySelector('.jp-InputArea-editor .cm-content');
    return src && src.textContent.trim() !== '';
  });
  if (nonEmpty.length === 0) return true;
  const last = nonEmpty[nonEmpty.length - 1].querySelector('.jp-InputArea-prompt');
  return !!last && /\[\d+\]/.test(last.textContent);
}
"""
).replace("ERRORS", ERRORS_JS)

# All traces' x/y (and z) as plain arrays: Plotly keeps them as Float64Array.
FIGURE_DATA_JS = r"""
(el) => JSON.stringify((el.data || []).map(t => {
  const arr = v => v == null ? null
    : (ArrayBuffer.isView(v) || Array.isArray(v)) ? Array.from(v, arr) : v;
  return {x: arr(t.x), y: arr(t.y), z: arr(t.z)};
}))
"""

# A cheap fingerprint of what is drawn: the first points of every trace (read while Play runs).
FINGERPRINT_JS = r"""
(el) => (el.data || []).map(t => {
  const head = v => v == null ? '' : Array.from(v).slice(0, 6).map(Number).join(',');
  return head(t.x) + '|' + head(t.y);
}).join(';')
"""
PLAY_FRAMES_MIN = 5  # distinct drawn frames while Play runs (a 40-frame run at 120 ms a frame)
PLAY_WATCH_MS = 10_000

DATA_CHANGED_JS = "([el, before]) => (FIGURE_DATA)(el) !== before".replace(
    "FIGURE_DATA", FIGURE_DATA_JS.strip()
)


def _screenshot_name(notebook: Path, phase: str) -> str:
    m = re.match(r"(\d+)_", notebook.stem)
    prefix = f"tutorial{m.group(1)}" if m else notebook.stem
    return f"{prefix}_explorer_{phase}.png"


def _save_screenshot(locator, notebook: Path, phase: str) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / _screenshot_name(notebook, phase)
    locator.screenshot(path=str(path), animations="disabled")
    extra = os.environ.get("SGMTEACH_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path


def _labels(explorer) -> list[str]:
    return [t.strip() for t in explorer.locator(".widget-label").all_text_contents() if t.strip()]


def _wait_until_stable(page, plot, settle_ms: int = 400, max_wait_ms: int = 20_000) -> None:
    """Wait until the figure's data stops changing for ``settle_ms`` (best effort)."""
    prev = plot.evaluate(FIGURE_DATA_JS)
    for _ in range(max_wait_ms // settle_ms):
        page.wait_for_timeout(settle_ms)
        cur = plot.evaluate(FIGURE_DATA_JS)
        if cur == prev:
            return
        prev = cur


def _run_all_cells(page) -> None:
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("#jp-mainmenu-run li[data-command='runmenu:run-all']")


@pytest.mark.parametrize("notebook", notebooks_under_test(), ids=lambda p: p.stem)
def test_tutorial_runs_and_first_explorer_reacts(notebook: Path, jupyter_server, page):
    # imported here: without playwright the conftest skips (or fails under CI) cleanly
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    if not notebook.is_file():
        pytest.fail(f"notebook under test does not exist: {notebook}", pytrace=False)
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    # -- open the notebook and wait for its kernel ------------------------------------
    page.goto(jupyter_server.lab_url(notebook.name))
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(
        timeout=KERNEL_IDLE_TIMEOUT_MS
    )
    # Clicking Run All before the kernel is idle silently drops the run.
    page.locator(IDLE_STATUS, has_text="| Idle").first.wait_for(timeout=KERNEL_IDLE_TIMEOUT_MS)
    timings["open"] = time.monotonic() - t0

    # -- Run -> Run All Cells, then wait for the kernel to be idle again ------------------
    t1 = time.monotonic()
    _run_all_cells(page)
    try:
        page.wait_for_function(RUN_FINISHED_JS, timeout=RUN_ALL_TIMEOUT_MS, polling=250)
    except PlaywrightTimeoutError:
        prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
        status = page.locator(IDLE_STATUS).all_text_contents()
        pytest.fail(
            f"Run All did not finish within {RUN_ALL_TIMEOUT_MS / 1000:.0f} s; "
            f"prompts {[p.strip() for p in prompts]}, status bar {status}",
            pytrace=False,
        )
    timings["run_all"] = time.monotonic() - t1

    errors = page.evaluate(ERRORS_JS)
    if errors:
        pytest.fail(
            "a cell produced an error output:\n\n" + "\n\n".join(e[-3000:] for e in errors),
            pytrace=False,
        )
    prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    assert prompts and any(re.search(r"\[\d+\]", p) for p in prompts), prompts

    # -- the widgets are live and at least one plotly figure rendered --------------------
    page.locator(f"{OUTPUT} {PLOT}").first.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.querySelectorAll('.jupyter-widgets-disconnected').length === 0",
        timeout=RENDER_TIMEOUT_MS,
    )

    # -- the first explorer: one output holding sliders and a plotly figure -------------
    explorer = (
        page.locator(OUTPUT)
        .filter(has=page.locator(".widget-slider"))
        .filter(has=page.locator(PLOT))
        .first
    )
    explorer.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
    explorer.scroll_into_view_if_needed()
    plot = explorer.locator(PLOT).first
    plot.locator(".main-svg").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    before_png = _save_screenshot(explorer, notebook, "before")
    before = plot.evaluate(FIGURE_DATA_JS)

    handle = explorer.locator(SLIDER_HANDLE).first
    handle.wait_for(timeout=RENDER_TIMEOUT_MS)
    # aria-value* are in the slider's own units (the exponent for a FloatLogSlider) and
    # rounded, so "at max" allows 1 % of the range; the figure data is the real proof of motion.
    now = float(handle.get_attribute("aria-valuenow") or "nan")
    vmin = float(handle.get_attribute("aria-valuemin") or "nan")
    vmax = float(handle.get_attribute("aria-valuemax") or "nan")
    key = "ArrowLeft" if now >= vmax - 0.01 * abs(vmax - vmin) else "ArrowRight"
    readout = explorer.locator(".widget-slider").first.locator(".widget-readout")
    readout_before = readout.text_content() if readout.count() else ""
    t2 = time.monotonic()
    handle.focus()
    for _ in range(ARROW_PRESSES):
        page.keyboard.press(key)
    try:
        page.wait_for_function(
            DATA_CHANGED_JS,
            arg=[plot.element_handle(), before],
            timeout=UPDATE_TIMEOUT_MS,
            polling=100,
        )
    except PlaywrightTimeoutError:
        pytest.fail(
            f"the explorer's figure data did not change within {UPDATE_TIMEOUT_MS / 1000:.0f} s "
            f"of moving its first slider ({key} x{ARROW_PRESSES}, from {now:g}); "
            f"labels in the explorer: {_labels(explorer)!r}",
            pytrace=False,
        )
    timings["slider_update"] = time.monotonic() - t2
    readout_after = readout.text_content() if readout.count() else ""
    # explorers report failures in their status Label instead of raising
    warnings = [t for t in _labels(explorer) if "⚠" in t]
    assert not warnings, f"the explorer reported an error after the slider move: {warnings}"
    # All key presses processed (kernel idle, data stable) and the SVG redrawn, so the second
    # screenshot shows the final state rather than the first of several updates.
    page.locator(IDLE_STATUS, has_text="| Idle").first.wait_for(timeout=UPDATE_TIMEOUT_MS)
    _wait_until_stable(page, plot)
    after_png = _save_screenshot(explorer, notebook, "after")

    # -- Play animates: an explorer with a play button draws frame after frame -------------
    player = page.locator(OUTPUT).filter(has=page.locator(".widget-play")).filter(
        has=page.locator(PLOT)).first
    if player.count():
        player.scroll_into_view_if_needed()
        anim = player.locator(PLOT).first
        anim.locator(".main-svg").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        page.locator(IDLE_STATUS, has_text="| Idle").first.wait_for(timeout=UPDATE_TIMEOUT_MS)
        t3 = time.monotonic()
        player.locator(".widget-play button").first.click()
        seen = []
        deadline = time.monotonic() + PLAY_WATCH_MS / 1000
        while time.monotonic() < deadline:
            print_ = anim.evaluate(FINGERPRINT_JS)
            if not seen or seen[-1] != print_:
                seen.append(print_)
            page.wait_for_timeout(100)
        distinct = len(set(seen))
        timings["play"] = time.monotonic() - t3
        print(f"\nplay: {distinct} distinct frames drawn")
        # A smoke check that Play animates. It does not by itself tell the old bug (the
        # frame control debounced) from the fix on a loaded machine: measured 14 distinct
        # frames with the debounce put back, 21 without (2026-12, 2-core CPU). That the frame
        # control redraws at once is tests/test_widgets.py's debounce test.
        assert distinct >= PLAY_FRAMES_MIN, (
            f"Play drew {distinct} distinct frames in {PLAY_WATCH_MS / 1000:.0f} s; "
            f"expected at least {PLAY_FRAMES_MIN}")
        warnings = [t for t in _labels(player) if "⚠" in t]
        assert not warnings, f"the animated explorer reported an error: {warnings}"
        _save_screenshot(player, notebook, "play")

    timings["total"] = time.monotonic() - t0
    print(
        f"\n{notebook.name}: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        + f"; slider {readout_before!r} -> {readout_after!r} ({key})"
        + f"; screenshots {before_png.name}, {after_png.name}"
    )


# -- every explorer, in one generated notebook: its main control moves the figure visibly -----

EXPLORERS_NOTEBOOK = "explorers_under_test.ipynb"
BUILD_TIMEOUT_MS = 240_000  # building every explorer (each compiles its variants once)
PAGE_PRESSES = 2  # PageUp/PageDown presses: 2 x 5 steps, a move a learner would make
# A move is visible when at least this share of the figure's pixels changes: a curve that moves
# across a 700 x 400 plot changes ~1 %, a relabelled title alone ~0.03 %.
VISIBLE_FRACTION = 0.002

# Share of pixels that differ between two PNG screenshots (base64), decoded by the page itself.
PIXELS_CHANGED_JS = r"""
async ([a, b]) => {
  const load = src => new Promise((ok, fail) => {
    const im = new Image(); im.onload = () => ok(im); im.onerror = fail;
    im.src = 'data:image/png;base64,' + src;
  });
  const [ia, ib] = await Promise.all([load(a), load(b)]);
  const w = Math.min(ia.width, ib.width), h = Math.min(ia.height, ib.height);
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const ctx = c.getContext('2d');
  ctx.drawImage(ia, 0, 0); const da = ctx.getImageData(0, 0, w, h).data;
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(ib, 0, 0); const db = ctx.getImageData(0, 0, w, h).data;
  let n = 0;
  for (let i = 0; i < da.length; i += 4) {
    let d = 0;
    for (let k = 0; k < 3; k++) d += Math.abs(da[i + k] - db[i + k]);
    if (d > 48) n++;
  }
  return n / (w * h);
}
"""


def _explorers_notebook(names: list[str]):
    import nbformat

    cells = [nbformat.v4.new_code_cell(
        "import sgmteach.widgets as widgets\nfrom IPython.display import display")]
    cells += [nbformat.v4.new_code_cell(f"display(widgets.{name}())") for name in names]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    return nb


def test_every_explorer_moves_visibly(jupyter_server, page):
    """Each explorer of `widgets.EXPLORERS`, built as a learner would, in a real browser: moving
    its main control changes the figure's data and a visible share of its pixels."""
    import base64

    import nbformat
    import sgmteach.widgets as widgets
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    names = [cls.__name__ for cls in widgets.EXPLORERS]
    nbformat.write(_explorers_notebook(names), jupyter_server.root_dir / EXPLORERS_NOTEBOOK)
    page.goto(jupyter_server.lab_url(EXPLORERS_NOTEBOOK))
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(
        timeout=KERNEL_IDLE_TIMEOUT_MS)
    page.locator(IDLE_STATUS, has_text="| Idle").first.wait_for(timeout=KERNEL_IDLE_TIMEOUT_MS)
    _run_all_cells(page)
    page.wait_for_function(RUN_FINISHED_JS, timeout=BUILD_TIMEOUT_MS, polling=250)
    errors = page.evaluate(ERRORS_JS)
    assert not errors, "building an explorer failed:\n\n" + "\n\n".join(e[-3000:] for e in errors)

    report = []
    for name in names:
        explorer = page.locator(f".sgmteach-{name}").first
        explorer.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
        explorer.scroll_into_view_if_needed()
        plot = explorer.locator(PLOT).first
        plot.locator(".main-svg").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        _wait_until_stable(page, plot)
        before_data = plot.evaluate(FIGURE_DATA_JS)
        before_png = plot.screenshot(animations="disabled")  # the figure alone, for the diff
        _save_bytes(explorer.screenshot(animations="disabled"), f"explorer_{name}_before.png")

        control = explorer.locator(".sgmteach-main-control").first
        handle = control.locator(".noUi-handle").first
        handle.wait_for(timeout=RENDER_TIMEOUT_MS)
        label = (control.locator(".widget-label").first.text_content() or "").strip()
        now = float(handle.get_attribute("aria-valuenow") or "nan")
        vmin = float(handle.get_attribute("aria-valuemin") or "nan")
        vmax = float(handle.get_attribute("aria-valuemax") or "nan")
        key = "PageDown" if now >= (vmin + vmax) / 2 else "PageUp"
        handle.focus()
        for _ in range(PAGE_PRESSES):
            page.keyboard.press(key)
        try:
            page.wait_for_function(DATA_CHANGED_JS, arg=[plot.element_handle(), before_data],
                                   timeout=UPDATE_TIMEOUT_MS, polling=100)
        except PlaywrightTimeoutError:
            pytest.fail(f"{name}: moving '{label}' ({key} x{PAGE_PRESSES} from {now:g}) did not "
                        f"change the figure's data; labels: {_labels(explorer)!r}", pytrace=False)
        page.locator(IDLE_STATUS, has_text="| Idle").first.wait_for(timeout=UPDATE_TIMEOUT_MS)
        _wait_until_stable(page, plot)
        warnings = [t for t in _labels(explorer) if "⚠" in t]
        assert not warnings, f"{name}: the explorer reported an error after the move: {warnings}"
        after_png = plot.screenshot(animations="disabled")
        # the whole explorer, controls and status included, for a reader of the README
        _save_bytes(explorer.screenshot(animations="disabled"), f"explorer_{name}_after.png")
        changed = page.evaluate(PIXELS_CHANGED_JS, [base64.b64encode(before_png).decode(),
                                                    base64.b64encode(after_png).decode()])
        report.append(f"{name}: '{label}' {key} x{PAGE_PRESSES}: {changed:.2%} of pixels")
        assert changed >= VISIBLE_FRACTION, (
            f"{name}: moving '{label}' changed only {changed:.3%} of the figure's pixels "
            f"(at least {VISIBLE_FRACTION:.1%} is a visible change)")
    print("\n" + "\n".join(report))


def _save_bytes(png: bytes, name: str) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / name
    path.write_bytes(png)
    extra = os.environ.get("SGMTEACH_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path
