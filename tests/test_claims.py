"""Claims: a tutorial's false claim raises a learner-readable error and fails the notebook run."""

import json
import subprocess
import sys

import numpy as np
import pytest

import sgmteach as sg


def test_a_true_claim_prints_what_was_checked(capsys):
    sg.expect_close("the floor", 0.61, 0.614, tol=0.02, why="4 s.e. of 0.005")
    sg.expect_below("ratio", 0.9, 1.0, why="exact bound")
    sg.expect_above("gain", 1.2, 1.0, why="exact bound")
    sg.expect_true("decreasing", True, measured="[3, 2, 1]", why="trend")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✓ the floor: measured 0.61, claimed 0.614 ± 0.02 (4 s.e. of 0.005)"
    assert len(out) == 4 and all(line.startswith("✓ ") for line in out)


@pytest.mark.parametrize(
    "call",
    [
        lambda: sg.expect_close("the floor", 0.70, 0.614, tol=0.02, why="4 s.e. of 0.005"),
        lambda: sg.expect_below("ratio", 1.1, 1.0, why="exact bound"),
        lambda: sg.expect_above("gain", 0.9, 1.0, why="exact bound"),
        lambda: sg.expect_true("decreasing", False, measured="[1, 2, 3]", why="trend"),
        lambda: sg.expect_below("ratio", float("nan"), 1.0, why="exact bound"),
    ],
)
def test_a_false_claim_raises_with_what_and_why(call):
    with pytest.raises(sg.ClaimError) as err:
        call()
    msg = str(err.value)
    assert isinstance(err.value, AssertionError)
    assert ("Claim failed" in msg and "(" in msg) or "nothing can be claimed" in msg


def test_the_message_names_expected_measured_tolerance_and_source():
    with pytest.raises(sg.ClaimError, match=r"the floor: measured 0\.7, claimed 0\.614 ± 0\.02 "
                                            r"\(4 s\.e\. of 0\.005\)"):
        sg.expect_close("the floor", 0.70, 0.614, tol=0.02, why="4 s.e. of 0.005")


def test_a_floor_estimate_is_judged_by_its_mean():
    sg.expect_below("distance", sg.Floor(0.5, 0.1, 4), 0.6, why="bound", quiet=True)
    with pytest.raises(sg.ClaimError):
        sg.expect_below("distance", sg.Floor(0.7, 0.1, 4), 0.6, why="bound", quiet=True)


def test_a_claim_must_say_where_its_tolerance_comes_from():
    with pytest.raises(ValueError, match="why"):
        sg.expect_close("x", 1.0, 1.0, tol=0.1, why="")
    with pytest.raises(ValueError, match="tol"):
        sg.expect_close("x", 1.0, 1.0, tol=-0.1, why="nothing")
    sg.expect_close("x", np.float32(1.0), np.asarray(1.0), tol=0.0, why="exact", quiet=True)


def _notebook(path, claim: str):
    cells = [
        {"cell_type": "markdown", "id": "md", "metadata": {}, "source": ["# a claim"]},
        {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None,
         "outputs": [], "source": ["import sgmteach as sg\n", "ratio = 1.5"]},
        {"cell_type": "code", "id": "c2", "metadata": {}, "execution_count": None,
         "outputs": [], "source": [claim]},
    ]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}}}
    path.write_text(json.dumps(nb))
    return path


def _run_notebook(path):
    # The notebook run of `make test` (tools/binder_check.py): nbval, lax mode.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=120", str(path)],
        capture_output=True, text=True, cwd=path.parent, timeout=300)


def test_a_notebook_whose_claim_fails_fails_the_run(tmp_path):
    bad = _run_notebook(_notebook(tmp_path / "bad.ipynb",
                                  'sg.expect_below("ratio", ratio, 1.0, why="exact bound")'))
    assert bad.returncode != 0, bad.stdout
    assert "ClaimError" in bad.stdout and "ratio: measured 1.5" in bad.stdout
    # Positive control: the same notebook with a true claim passes, so the failure above is
    # the claim's and not the set-up's.
    good = _run_notebook(_notebook(tmp_path / "good.ipynb",
                                   'sg.expect_above("ratio", ratio, 1.0, why="exact bound")'))
    assert good.returncode == 0, good.stdout + good.stderr
