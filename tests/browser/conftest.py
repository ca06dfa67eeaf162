"""Fixtures for the real-browser tests: one JupyterLab server and one headless Chromium per module.

The browser is Debian's ``/usr/bin/chromium`` (or a ``chromium`` on PATH), driven through
Playwright's ``executable_path`` and never ``playwright install`` (which downloads a browser
build); the launch flags below keep it off the network.

Environment variables
---------------------
``CI``
    When ``true``, a missing Chromium or Playwright is a failure instead of a skip.
``SGMTEACH_BROWSER_NOTEBOOK``
    Path of the notebook to test instead of the default tutorial (for development).
``SGMTEACH_SCREENSHOT_DIR``
    If set, the screenshots are also copied there (used to produce README images).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_NOTEBOOKS = ("tutorials/01_noising_and_denoising.ipynb",)

# No --disable-gpu: a learner's browser has WebGL, and the particle plots use it (Scattergl).
# Headless, with no GPU here, Chromium renders WebGL in software through SwiftShader.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SERVER_START_TIMEOUT_S = 90
SERVER_STOP_TIMEOUT_S = 10


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


def running_under_ci() -> bool:
    return _truthy(os.environ.get("CI"))


def notebooks_under_test() -> list[Path]:
    """The notebooks the browser test opens (absolute paths, may not exist)."""
    override = os.environ.get("SGMTEACH_BROWSER_NOTEBOOK")
    if override:
        return [Path(p).expanduser().resolve() for p in override.split(os.pathsep) if p]
    return [REPO_ROOT / p for p in DEFAULT_NOTEBOOKS]


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def _skip_or_fail(reason: str, ci_reason: str) -> None:
    if running_under_ci():
        pytest.fail(ci_reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module", autouse=True)
def chromium_executable() -> str:
    """Debian's Chromium, or skip (fail when ``CI=true``)."""
    exe = find_chromium()
    if exe is None:
        _skip_or_fail(
            "Chromium is not installed (apt-get install -y chromium)",
            "CI=true but Chromium is missing: .ci/run installs it with apt-get",
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _skip_or_fail(
            f"playwright is not importable: {exc}",
            f"CI=true but playwright is not importable ({exc}): install the 'dev' extra",
        )
    return exe


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item so fixtures can save artifacts on failure."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


# --------------------------------------------------------------------------- server


@dataclass
class JupyterServer:
    base_url: str
    token: str
    root_dir: Path
    log_path: Path

    def lab_url(self, notebook_name: str) -> str:
        # ``reset`` drops the workspace so earlier tests' tabs are not reopened.
        return f"{self.base_url}/lab/tree/{quote(notebook_name)}?reset&token={self.token}"

    def api(self, method: str, path: str) -> object:
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def delete_all_sessions(self) -> None:
        """Shut down the kernels the test's notebooks started (they pile up otherwise)."""
        for session in self.api("GET", "/api/sessions") or []:
            try:
                self.api("DELETE", f"/api/sessions/{session['id']}")
            except urllib.error.URLError:
                pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def copy_notebook_stripped(src: Path, dst: Path) -> None:
    """Copy a notebook without outputs or saved widget state, on the server's own kernel.

    Saved widget state would draw a stale, disconnected copy of the widgets before the run;
    forcing the ``python3`` kernelspec makes the kernel the venv's python (the server's).
    """
    import nbformat

    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(nb, dst)


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no server log>"


@pytest.fixture(scope="module")
def jupyter_server(chromium_executable, tmp_path_factory) -> JupyterServer:
    """A real JupyterLab on 127.0.0.1 with a random token, in a temporary directory."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    for nb in notebooks_under_test():
        if nb.is_file():
            copy_notebook_stripped(nb, root / nb.name)

    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
        "IPYTHONDIR": base / "ipython",
    }
    for d in dirs.values():
        d.mkdir()
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"]
    # No news / update toast in the bottom-right corner.
    _write_json(
        settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    # Render every cell (JupyterLab 4 windowing may leave off-screen cells undrawn).
    _write_json(
        settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings",
        {"windowingMode": "none"},
    )
    (dirs["JUPYTER_CONFIG_DIR"] / "jupyter_lab_config.py").write_text(
        "c.LabApp.news_url = None\n"
        "c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n"
    )

    env = os.environ.copy()
    env.update({k: str(v) for k, v in dirs.items()})
    env.pop("JUPYTER_PATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    # The kernelspec says ``python``; jupyter_client maps that to the server's interpreter,
    # and the venv's bin first on PATH makes sure of it.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")

    port = _free_port()
    token = secrets.token_hex(24)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")

    log_path = base / "jupyter-server.log"
    log = open(log_path, "wb")  # closed in finally
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = JupyterServer(f"http://127.0.0.1:{port}", token, root, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with {proc.returncode}:\n{_tail(log_path)}", pytrace=False
                )
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                        f"{_tail(log_path)}",
                        pytrace=False,
                    )
                time.sleep(0.25)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
        log.close()
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_path, ARTIFACTS_DIR / "jupyter-server.log")


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser_context(chromium_executable, tmp_path_factory):
    """One headless Chromium per module (a persistent context keeps /tmp clean)."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            # a learner's window: 1440 x 1000 with the file browser open (figures fit 1000 px)
            viewport={"width": 1440, "height": 1000},
        )
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser_context, jupyter_server, request):
    """A fresh page per test; on failure, a full screenshot and the console log are saved."""
    stem = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    for stale in (ARTIFACTS_DIR / f"{stem}-FAILED.png", ARTIFACTS_DIR / f"{stem}-console.log"):
        stale.unlink(missing_ok=True)
    pg = browser_context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            try:
                pg.screenshot(path=str(ARTIFACTS_DIR / f"{stem}-FAILED.png"))
            except Exception:  # best effort
                pass
            (ARTIFACTS_DIR / f"{stem}-console.log").write_text("\n".join(console))
        pg.close()
        try:
            jupyter_server.delete_all_sessions()
        except (urllib.error.URLError, OSError):
            pass
