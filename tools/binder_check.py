#!/usr/bin/env python3
"""Rebuild the Binder environment locally and run every tutorial in it under a memory limit.

Two subcommands, driven by the Makefile:

``check`` (``make binder-check``, part of ``make test``)
    1. Builds a fresh virtual environment at ``.binder-venv`` from ``binder/requirements.txt`` and
       ``binder/postBuild`` alone (nothing from ``.venv`` or ``pyproject.toml``'s extras), with the
       Python named in ``binder/runtime.txt`` when that interpreter is on PATH (otherwise with this
       one, with a warning that the final summary line repeats). The environment is
       reused while ``requirements.txt`` and the interpreter are unchanged; ``postBuild`` is re-run
       when it or ``pyproject.toml`` changes. The stamp is ``.binder-venv/.binder-stamp.json``
       (content hashes, so a fresh clone with new mtimes does not rebuild).
    2. Checks that everything installed is pinned in ``requirements.txt`` (an unpinned transitive
       dependency would drift on mybinder.org), and that the widget stack really works: imports
       ``sgmteach`` and ``sgmteach.widgets`` and constructs a
       ``plotly.graph_objects.FigureWidget`` (plotly 6+ only raises for a missing anywidget on
       construction).
    3. Runs each ``tutorials/*.ipynb`` with ``pytest --nbval-lax --nbval-current-env`` inside that
       environment, through ``binder/start`` as repo2docker launches everything, and records the
       peak memory of the whole process tree (pytest + the kernel it starts). Fails when any
       notebook fails or peaks above ``--limit-mb`` (1500 MB; mybinder.org
       gives at most 2 GB and restarts the kernel above it).

    How the peak is measured (Linux): every 50 ms the script walks ``/proc`` for all descendants of
    the pytest process and sums their resident set sizes (``statm``); the largest sum is the
    *tree* peak, what a container memory limit sees of these processes. Sampling can miss a spike
    shorter than the interval, so the script also takes the exact kernel-maintained high-water
    mark ``ru_maxrss`` from ``os.wait4`` on the pytest process, which covers pytest and every
    descendant it waited for (nbval's kernel manager waits for the kernel). That number is the peak
    of the largest single process, never a sum. The reported peak is the larger of the two. Summed
    RSS counts shared library pages once per process, so it errs high, on the safe side. Without
    ``/proc`` (macOS) there is no tree peak: the table says "tree peak unavailable", and the
    limit applies to ``ru_maxrss`` alone.

``lock`` (``make binder-lock``)
    Regenerates ``binder/requirements.txt``: installs ``pyproject.toml``'s runtime dependencies
    plus the test tools the check needs (``pytest``, ``nbval``, ranges from the ``dev`` extra)
    into a scratch environment, constrained to the versions in ``.venv``, and writes its
    ``pip freeze``. Run it after changing dependencies in ``pyproject.toml``.

Standard library only, so any Python >= 3.11 can drive it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
REQUIREMENTS = BINDER / "requirements.txt"
POSTBUILD = BINDER / "postBuild"
RUNTIME = BINDER / "runtime.txt"
START = BINDER / "start"  # repo2docker wraps every launch in it: so do the notebook runs here
PYPROJECT = ROOT / "pyproject.toml"
DEFAULT_VENV = ROOT / ".binder-venv"
STAMP_NAME = ".binder-stamp.json"
LIMIT_MB = 1500.0
BINDER_MAX_MB = 2048.0
# Tools the check itself needs inside the Binder environment (taken from the `dev` extra).
CHECK_TOOLS = ("pytest", "nbval")
# Installed by `python -m venv` or by the build of the package itself, never pinned.
UNPINNED_OK = {"pip", "setuptools", "wheel", "sgmteach"}

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def say(msg: str) -> None:
    print(f"binder-check: {msg}", flush=True)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes() if p.exists() else b"<missing>")
    return h.hexdigest()


def read_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """`name==version` lines of a requirements file, keyed by canonical name."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        if m:
            pins[canonical(m.group(1))] = m.group(3)
    return pins


# --------------------------------------------------------------------------- interpreter


def runtime_version() -> tuple[int, int]:
    text = RUNTIME.read_text().strip()
    m = re.fullmatch(r"python-(\d+)\.(\d+)(?:\.\d+)?", text)
    if not m:
        raise SystemExit(f"binder-check: cannot parse {RUNTIME}: {text!r} (want python-3.x)")
    return int(m.group(1)), int(m.group(2))


def _version_of(exe: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python() -> tuple[str, str | None]:
    """(interpreter for the Binder environment, fallback note or None).

    The interpreter is the one runtime.txt names when BINDER_PYTHON, this Python or
    `pythonX.Y` on PATH is it. Otherwise it is this Python, and the note says so: the check
    still runs (also under CI=true, where a machine without that Python should still run the
    notebooks), but its result then says less about mybinder.org, so `check` repeats the note
    in its final summary line, where it cannot scroll out of sight.
    """
    want = runtime_version()
    candidates = [os.environ.get("BINDER_PYTHON"), sys.executable,
                  shutil.which(f"python{want[0]}.{want[1]}")]
    for exe in candidates:
        if exe and _version_of(exe) == want:
            return exe, None
    have = sys.version_info[:2]
    note = (f"built with Python {have[0]}.{have[1]} from {sys.executable}, not runtime.txt's "
            f"{want[0]}.{want[1]}: none found, set BINDER_PYTHON to one")
    return sys.executable, note


def pick_python() -> str:
    """The interpreter for the Binder environment, with a warning when it is a fallback."""
    exe, note = find_python()
    if note:
        say(f"WARNING: {note}")
    return exe


# --------------------------------------------------------------------------- environment


def venv_env(venv: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(var, None)
    return env


def run(cmd, **kw) -> None:
    say("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_venv(venv: Path, interpreter: str, rebuild: bool = False) -> Path:
    """Create or reuse the Binder environment with `interpreter`; returns its python."""
    python = venv / "bin" / "python"
    stamp_file = venv / STAMP_NAME
    want = {
        "requirements": sha256(REQUIREMENTS, RUNTIME),
        "interpreter": f"{interpreter} {_version_of(interpreter)}",
        "postbuild": sha256(POSTBUILD, PYPROJECT),
    }
    try:
        have = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        have = {}
    env = venv_env(venv)

    fresh = (rebuild or not python.exists() or have.get("requirements") != want["requirements"]
             or have.get("interpreter") != want["interpreter"])
    if fresh:
        if venv.exists():
            say(f"requirements or interpreter changed: removing {venv.name}/")
            shutil.rmtree(venv)
        t = time.perf_counter()
        run([interpreter, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "-q", "-r", REQUIREMENTS], env=env, cwd=ROOT)
        say(f"installed binder/requirements.txt in {time.perf_counter() - t:.0f} s")
        have = {}
    if have.get("postbuild") != want["postbuild"]:
        if not os.access(POSTBUILD, os.X_OK):
            raise SystemExit("binder-check: binder/postBuild is not executable (chmod +x); "
                             "repo2docker runs it as ./binder/postBuild")
        t = time.perf_counter()
        run([POSTBUILD], env=env, cwd=ROOT)
        say(f"ran binder/postBuild in {time.perf_counter() - t:.0f} s")
    else:
        say(f"reusing {venv.name}/ (requirements.txt, postBuild and pyproject.toml unchanged)")
    # Cheap (no installs): catches a hand-edited environment as well as a bad lock file.
    verify_env(python, env)
    stamp_file.write_text(json.dumps(want, indent=1) + "\n")
    return python


def verify_env(python: Path, env: dict[str, str]) -> None:
    """Everything installed is pinned; dependencies are consistent; the widget stack works."""
    pins = read_pins()
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    installed = {canonical(d["name"]): d["version"] for d in json.loads(out)}
    unpinned = sorted(f"{n}=={v}" for n, v in installed.items()
                      if n not in pins and n not in UNPINNED_OK)
    differs = sorted(f"{n}: pinned {pins[n]}, installed {v}" for n, v in installed.items()
                     if n in pins and pins[n] != v)
    missing = sorted(n for n in pins if n not in installed)
    problems = []
    if unpinned:
        problems.append("installed but not pinned in binder/requirements.txt (run "
                        "`make binder-lock`): " + ", ".join(unpinned))
    if differs:
        problems.append("installed version differs from the pin: " + "; ".join(differs))
    if missing:
        problems.append("pinned but not installed: " + ", ".join(missing))
    if problems:
        raise SystemExit("binder-check: " + "\n  ".join(problems))
    run([python, "-m", "pip", "check"], env=env, cwd=ROOT)
    smoke = ("import sgmteach, sgmteach.widgets, ipywidgets, jupyterlab_widgets, anywidget; "
             "import plotly.graph_objects as go; go.FigureWidget(); "
             "print('sgmteach', sgmteach.__version__, 'ipywidgets', ipywidgets.__version__)")
    # Run from outside the repository so that `import sgmteach` proves postBuild installed it.
    with tempfile.TemporaryDirectory() as tmp:
        run([python, "-c", smoke], env=env, cwd=tmp)


# --------------------------------------------------------------------------- memory


def _proc_table() -> dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses; fields after the last ')' are fixed.
        fields = stat[stat.rfind(b")") + 2:].split()
        table[int(entry.name)] = int(fields[1])
    return table


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(root: int) -> tuple[int, int]:
    """(sum of RSS over `root` and all its descendants, largest single RSS among them)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    total = largest = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        rss = _rss_bytes(pid)
        total += rss
        largest = max(largest, rss)
        stack.extend(children.get(pid, ()))
    return total, largest


def run_measured(cmd, *, interval: float = 0.05, **kw) -> dict:
    """Run `cmd`, sampling its process tree's memory; returns rc, peaks (bytes) and wall time.

    `tree_peak` is the largest sampled sum of RSS over the process tree; `maxrss` is the exact
    high-water mark of the largest single process (the child or any descendant it waited for),
    from `os.wait4`. `peak` is the larger of the two.

    Linux carries the parent's resident size into a child's `ru_maxrss` (the child starts on a
    copy of, or with vfork on, the parent's memory until it execs), so `maxrss` is at least the
    caller's own peak: call this from a small process, as `make binder-check` does.
    """
    have_proc = os.path.isdir("/proc/self")
    t = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], **kw)
    tree_peak = single_peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if have_proc:
            total, largest = tree_rss(proc.pid)
            tree_peak = max(tree_peak, total)
            single_peak = max(single_peak, largest)
        time.sleep(interval)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {
        "rc": proc.returncode,
        "tree_peak": tree_peak,
        "single_peak": max(single_peak, maxrss),
        "maxrss": maxrss,
        "peak": max(tree_peak, maxrss),
        "wall": time.perf_counter() - t,
    }


# --------------------------------------------------------------------------- check


def find_notebooks(paths: list[str]) -> list[Path]:
    if not paths:
        paths = [str(ROOT / "tutorials")]
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.suffix == ".ipynb":
            found.append(p)
        else:
            raise SystemExit(f"binder-check: {p} is neither a notebook nor a folder")
    return [p.resolve() for p in found]


def check(args) -> int:
    venv = Path(args.venv).resolve()
    notebooks = find_notebooks(args.notebooks)
    t = time.perf_counter()
    interpreter, fallback = find_python()
    if fallback:
        say(f"WARNING: {fallback}")
    python = ensure_venv(venv, interpreter, rebuild=args.rebuild)
    say(f"environment ready in {time.perf_counter() - t:.0f} s")
    if not notebooks:
        say(summary_line([], fallback, ran=False))
        return 0

    env = venv_env(venv)
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for nb in notebooks:
            log = Path(tmp) / f"{nb.stem}.log"
            cmd = [START, python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   # pyproject's addopts turn on jaxtyping's import hook with beartype, a dev tool
                   # that Binder does not install; the hook would not reach the kernel anyway.
                   "-o", "addopts=", "--nbval-lax", "--nbval-current-env",
                   "--nbval-cell-timeout=600", nb]  # 10 min: a hung cell, as in the Makefile
            say(f"running {nb.name}")
            with open(log, "wb") as out:
                r = run_measured(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            mb = r["peak"] / 2**20
            ok = r["rc"] == 0 and mb <= args.limit_mb
            verdict = ("ok" if ok else f"FAILED (pytest rc {r['rc']})" if r["rc"] != 0
                       else f"OVER {args.limit_mb:.0f} MB")
            rows.append((nb.name, mb, r["tree_peak"] / 2**20, r["single_peak"] / 2**20,
                         r["wall"], verdict))
            if not ok:
                failed.append(nb.name)
            text = log.read_text(errors="replace")
            if r["rc"] != 0:
                print(text[-6000:], flush=True)
            else:
                lines = text.strip().splitlines()
                say(f"{nb.name}: {lines[-1] if lines else 'no output'}")

    print()
    print("\n".join(summary_table(rows, args.limit_mb)), flush=True)
    say(summary_line(failed, fallback))
    return 1 if failed else 0


def summary_table(rows: list[tuple], limit_mb: float) -> list[str]:
    """The per-notebook table: rows of (name, peak MB, tree MB, 1 proc MB, wall s, verdict).

    A tree peak of 0 means nothing was sampled (no /proc: macOS, or a system without procfs),
    not 0 MB: the table says so, since the peak is then one process's high-water mark alone.
    """
    width = max(len("notebook"), *(len(r[0]) for r in rows))
    lines = [f"Peak memory per notebook (limit {limit_mb:.0f} MB; mybinder.org restarts the "
             f"kernel above {BINDER_MAX_MB:.0f} MB)",
             f"{'notebook':<{width}}  {'peak MB':>8}  {'tree MB':>8}  {'1 proc MB':>9}  "
             f"{'wall s':>7}  result"]
    unavailable = False
    for name, mb, tree, single, wall, verdict in rows:
        if tree > 0:
            tree_cell = f"{tree:8.0f}"
        else:
            tree_cell, unavailable = f"{'n/a':>8}", True
        lines.append(f"{name:<{width}}  {mb:8.0f}  {tree_cell}  {single:9.0f}  {wall:7.1f}  "
                     f"{verdict}")
    lines.append("peak = max(tree: sampled sum of RSS over pytest + kernel, "
                 "1 proc: exact ru_maxrss high-water mark of the largest process)")
    if unavailable:
        lines.append("tree peak unavailable (n/a: /proc could not be sampled): peak is the "
                     "largest single process alone, which misses the sum over pytest + kernel")
    return lines


def summary_line(failed: list[str], fallback: str | None, ran: bool = True) -> str:
    """The last line `check` prints; it repeats an interpreter fallback so it stays visible."""
    if failed:
        line = f"FAILED: {', '.join(failed)}"
    elif ran:
        line = "all notebooks ran within the memory limit. OK"
    else:
        line = "no notebooks in tutorials/ yet: environment built and verified, nothing to run. OK"
    return f"{line}; NOTE: {fallback}" if fallback else line


# --------------------------------------------------------------------------- lock


def lock(args) -> int:
    import tomllib

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = list(project["dependencies"])
    dev = {canonical(re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0]): r
           for r in project["optional-dependencies"]["dev"]}
    tools = [dev.get(t, t) for t in CHECK_TOOLS]
    source = Path(args.constraints_from)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        constraints = tmp / "constraints.txt"
        cmd_freeze = [source / "bin" / "python", "-m", "pip", "freeze", "--exclude-editable"]
        frozen = subprocess.run([str(c) for c in cmd_freeze], capture_output=True, text=True,
                                check=True).stdout
        constraints.write_text("\n".join(ln for ln in frozen.splitlines()
                                         if "==" in ln and not ln.startswith("#")) + "\n")
        scratch = tmp / "venv"
        run([pick_python(), "-m", "venv", scratch])
        py = scratch / "bin" / "python"
        run([py, "-m", "pip", "install", "-q", "-c", constraints, *runtime, *tools],
            env=venv_env(scratch))
        frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True,
                                text=True, check=True, env=venv_env(scratch)).stdout
    lines = sorted((ln for ln in frozen.splitlines() if "==" in ln and not ln.startswith("#")),
                   key=lambda ln: canonical(ln.split("==")[0]))
    header = [
        "# Binder environment, every package pinned (direct and transitive).",
        "# Generated by `make binder-lock` (tools/binder_check.py lock): pyproject.toml's",
        "# runtime dependencies plus the tools `make binder-check` runs (" + ", ".join(CHECK_TOOLS)
        + "),",
        "# resolved in a clean environment with the versions in .venv as constraints.",
        "# sgmteach itself is installed by binder/postBuild, not here. No torch.",
    ]
    REQUIREMENTS.write_text("\n".join(header + lines) + "\n")
    say(f"wrote {len(lines)} pins to {REQUIREMENTS.relative_to(ROOT)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("check", help="build .binder-venv and run the notebooks in it (default)")
    c.add_argument("notebooks", nargs="*", help="notebooks or folders (default: tutorials/)")
    c.add_argument("--venv", default=str(DEFAULT_VENV))
    c.add_argument("--limit-mb", type=float, default=LIMIT_MB)
    c.add_argument("--rebuild", action="store_true", help="ignore the stamp and rebuild")
    lk = sub.add_parser("lock", help="regenerate binder/requirements.txt")
    lk.add_argument("--constraints-from", default=str(ROOT / ".venv"),
                    help="virtual environment whose versions are used as constraints")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("check", "lock", "-h", "--help"):
        argv.insert(0, "check")
    args = ap.parse_args(argv)
    return lock(args) if args.cmd == "lock" else check(args)


if __name__ == "__main__":
    sys.exit(main())
