"""The Binder configuration agrees with pyproject.toml, and the tutorials are stored clean.

`make binder-check` does the slow half (builds the environment and runs the notebooks); these
tests are the fast, static half, plus a check that its memory measurement sees the whole
process tree.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME_DEPS = [Requirement(r) for r in PROJECT["dependencies"]]
DEV_DEPS = {canonicalize_name(Requirement(r).name): Requirement(r)
            for r in PROJECT["optional-dependencies"]["dev"]}
# What `make binder-check` runs inside the Binder environment.
CHECK_TOOLS = ("pytest", "nbval")
# Never on Binder: no GPU there, and installing torch alone can exceed the 2 GB build limit.
FORBIDDEN = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|jax-cuda\d*-.*)$")


def _requirement_lines():
    lines = []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _pins():
    pins = {}
    for line in _requirement_lines():
        if line.startswith("-"):  # option lines are test_every_line_is_an_exact_pin's business
            continue
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = req
    return pins


def _pinned_version(name: str) -> Version:
    pins = _pins()
    key = canonicalize_name(name)
    assert key in pins, f"{name} is not pinned in binder/requirements.txt"
    (spec,) = pins[key].specifier
    return Version(spec.version)


def test_every_line_is_an_exact_pin():
    for line in _requirement_lines():
        assert not line.startswith("-"), (
            f"{line!r}: no -e/-r/-c lines; a local line makes repo2docker copy the repository "
            "before installing, so every content commit reinstalls everything")
        req = Requirement(line)
        specs = list(req.specifier)
        assert req.url is None, f"{line!r}: pin a released version, not a URL"
        assert len(specs) == 1 and specs[0].operator == "==", f"{line!r} is not pinned with =="
    assert "sgmteach" not in _pins(), "sgmteach is installed by binder/postBuild, not pinned"


def test_no_duplicate_pins():
    names = [canonicalize_name(Requirement(line).name) for line in _requirement_lines()
             if not line.startswith("-")]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("req", RUNTIME_DEPS, ids=lambda r: r.name)
def test_runtime_dependency_is_pinned_within_its_range(req):
    version = _pinned_version(req.name)
    assert req.specifier.contains(version, prereleases=True), (
        f"binder pins {req.name}=={version}, outside pyproject's {req.specifier}; "
        "run `make binder-lock`")


@pytest.mark.parametrize("name", CHECK_TOOLS)
def test_check_tools_are_pinned_within_the_dev_range(name):
    version = _pinned_version(name)
    assert DEV_DEPS[name].specifier.contains(version, prereleases=True)


@pytest.mark.parametrize(("name", "major"),
                         [("ipywidgets", 8), ("jupyterlab_widgets", 3), ("jupyterlab", 4)])
def test_widget_stack_majors(name, major):
    # ipywidgets 8 and jupyterlab_widgets 3 move together (ipywidgets #3577), and Binder's base
    # image already has JupyterLab 4 with ipywidgets 8: never re-pin to another major.
    assert _pinned_version(name).major == major


def test_anywidget_is_pinned():
    # plotly >= 6 builds FigureWidget on anywidget and fails only on construction without it.
    _pinned_version("anywidget")
    _pinned_version("plotly")


def test_no_gpu_or_torch_packages():
    bad = sorted(name for name in _pins() if FORBIDDEN.match(name))
    assert not bad, f"not for Binder: {bad}"


def test_runtime_txt_names_a_supported_python():
    text = (BINDER / "runtime.txt").read_text().strip()
    # repo2docker wants an explicit version, python-x.y; a minimum is not recognized.
    m = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    assert m, f"binder/runtime.txt should read python-3.x, not {text!r}"
    version = Version(f"{m[1]}.{m[2]}")
    assert version >= Version("3.11")
    assert SpecifierSet(PROJECT["requires-python"]).contains(version)


def test_postbuild_fails_fast_and_installs_the_package():
    path = BINDER / "postBuild"
    text = path.read_text()
    assert text.startswith("#!"), "postBuild needs a shebang"
    assert os.access(path, os.X_OK), "postBuild must be executable (chmod +x)"
    code = [ln.split("#", 1)[0].strip() for ln in text.splitlines()[1:]]
    code = [ln for ln in code if ln]
    # repo2docker does not stop the build on an error unless postBuild says so.
    assert any(re.match(r"set\s+(-\w*e\w*|-o\s+errexit)", ln) for ln in code), "add set -e"
    installs = [ln.split() for ln in code if re.search(r"\bpip\s+install\b", ln)]
    assert any("." in words and "--no-deps" in words for words in installs), (
        "postBuild should `pip install --no-deps -e .` (dependencies come pinned from "
        "requirements.txt; repo2docker skips the package itself when binder/ exists)")


def test_start_sets_the_memory_settings_and_runs_the_command():
    # repo2docker runs binder/start at every launch; its last line must be `exec "$@"`, or the
    # server never starts. Run it for real: it must pass the command through (with its
    # arguments), keep a user's XLA_FLAGS and add the memory settings binder-check measured.
    path = BINDER / "start"
    assert os.access(path, os.X_OK), "binder/start must be executable (chmod +x)"
    code = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()
            and not ln.lstrip().startswith("#")]
    assert code[-1] == 'exec "$@"'
    env = {"PATH": os.environ["PATH"], "XLA_FLAGS": "--xla_dump_to=/nowhere"}
    out = subprocess.run([str(path), sys.executable, "-c",
                          "import os, sys; print(os.environ['MALLOC_ARENA_MAX']);"
                          "print(os.environ['XLA_FLAGS']); print(sys.argv[1:])", "a b"],
                         env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["2", "--xla_dump_to=/nowhere --xla_cpu_parallel_codegen_split_count=1",
                   "['a b']"]


def test_binder_folder_is_unambiguous():
    assert not (ROOT / ".binder").exists(), "binder/ and .binder/ together are an error"
    for ignored_runtime in ("environment.yml", "Pipfile", "Dockerfile"):
        assert not (BINDER / ignored_runtime).exists(), (
            f"binder/{ignored_runtime} overrides requirements.txt/runtime.txt")


NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.name) for p in NOTEBOOKS]
    or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks in tutorials/ yet"))],
)
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text())
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    # Any other name makes nbval and Binder look for a kernel that is not there.
    assert kernel == "python3", f"kernelspec name is {kernel!r}, want 'python3'"
    # Widget model ids are random: saved widget state changes on every run.
    assert "widgets" not in nb.get("metadata", {}), "clear the saved widget state"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), f"cell {i} has saved outputs; clear them"
        assert cell.get("execution_count") is None, f"cell {i} has an execution count"


# --------------------------------------------------------------------------- measurement


def _load_checker():
    spec = importlib.util.spec_from_file_location("binder_check", ROOT / "tools" /
                                                  "binder_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_checker_pins_parser_agrees():
    assert _load_checker().read_pins() == {
        name: str(next(iter(req.specifier)).version) for name, req in _pins().items()}


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_peak_memory_covers_grandchildren():
    """A grandchild that holds 300 MB shows up in the tree peak, as nbval's kernel would."""
    mb = 300
    grandchild = f"import time; a = b'x' * ({mb} << 20); time.sleep(1.0)"
    child = ("import subprocess, sys; "
             f"subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)")
    # Measured from a fresh, small Python, as `make binder-check` measures: a child's ru_maxrss
    # starts from its parent's resident size, and this pytest process may hold JAX by now.
    driver = ("import json, sys; sys.path.insert(0, sys.argv[1]); import binder_check; "
              "print(json.dumps(binder_check.run_measured([sys.executable, '-c', sys.argv[2]])))")
    r = json.loads(subprocess.run([sys.executable, "-c", driver, str(ROOT / "tools"), child],
                                  capture_output=True, text=True, check=True).stdout)
    assert r["rc"] == 0
    assert r["tree_peak"] >= mb * 2**20
    assert r["maxrss"] >= mb * 2**20  # waited-for grandchild's exact high-water mark
    assert r["peak"] < (mb + 400) * 2**20


def test_interpreter_fallback_is_repeated_in_the_summary(monkeypatch):
    """No Python of runtime.txt's version: the check falls back to this one (also under CI) and
    says so again in its last line, where the warning cannot scroll out of sight."""
    checker = _load_checker()
    monkeypatch.delenv("BINDER_PYTHON", raising=False)
    monkeypatch.setattr(checker.shutil, "which", lambda name: None)
    monkeypatch.setattr(checker, "_version_of", lambda exe: (2, 7))  # nothing matches
    exe, note = checker.find_python()
    assert exe == sys.executable
    want = "{}.{}".format(*checker.runtime_version())
    assert note is not None and want in note and sys.executable in note
    for failed in ([], ["03_x.ipynb"]):
        line = checker.summary_line(failed, note)
        assert line.endswith(f"; NOTE: {note}")
        assert ("FAILED" in line) == bool(failed)
    assert "NOTE" in checker.summary_line([], note, ran=False)


def test_no_fallback_note_when_the_runtime_python_is_found(monkeypatch):
    checker = _load_checker()
    monkeypatch.delenv("BINDER_PYTHON", raising=False)
    monkeypatch.setattr(checker, "_version_of", lambda exe: checker.runtime_version())
    assert checker.find_python() == (sys.executable, None)
    assert checker.summary_line([], None) == "all notebooks ran within the memory limit. OK"


def test_summary_table_says_when_the_tree_peak_is_unavailable():
    checker = _load_checker()
    # (name, peak MB, tree MB, 1 proc MB, wall s, verdict); tree 0: no /proc was sampled.
    table = checker.summary_table([("01_a.ipynb", 900.0, 0.0, 900.0, 30.0, "ok")], 1500)
    row = next(line for line in table if line.startswith("01_a.ipynb"))
    assert row.split()[1:4] == ["900", "n/a", "900"]
    assert any(line.startswith("tree peak unavailable") for line in table)

    table = checker.summary_table([("01_a.ipynb", 950.0, 950.0, 700.0, 30.0, "ok")], 1500)
    row = next(line for line in table if line.startswith("01_a.ipynb"))
    assert row.split()[1:4] == ["950", "950", "700"]
    assert not any("unavailable" in line for line in table)
