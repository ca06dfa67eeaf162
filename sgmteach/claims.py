r"""Checks of the claims a tutorial makes about the numbers it measures.

A notebook that says "the samples sit within the Monte-Carlo floor" must fail when they do not.
Each function here compares a measured number with what the text claims, prints one line when
the claim holds, and raises `ClaimError` when it does not, with a message a learner can act on:
what was claimed, what was measured, the tolerance, and where the tolerance comes from
(`why`: a Monte-Carlo standard error, a step size, float round-off). A cell that raises stops
the notebook, so a false claim fails `make test`.

    sg.expect_below("SDE samples vs the floor", ratio, 1 + 4 * se,
                    why="4 standard errors of the ratio (5 repeats)")
"""

import math

import numpy as np

__all__ = ["ClaimError", "expect_above", "expect_below", "expect_close", "expect_true"]


class ClaimError(AssertionError):
    """A claim of the text that the measured numbers do not support."""


def _num(x) -> float:
    if hasattr(x, "sem"):  # a Floor (mean ± s.e.): judge its mean
        x = x.mean
    value = float(np.asarray(x))
    if not math.isfinite(value):
        raise ClaimError(f"the measured value is {value}: nothing can be claimed about it.")
    return value


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _require_why(why: str) -> None:
    if not isinstance(why, str) or not why.strip():
        raise ValueError("say where the tolerance comes from: why='...' must be a sentence.")


def _report(ok: bool, what: str, claim: str, measured: float, why: str, quiet: bool) -> None:
    line = f"{what}: measured {_fmt(measured)}, claimed {claim} ({why})"
    if not ok:
        raise ClaimError(f"Claim failed. {line}.")
    if not quiet:
        print(f"✓ {line}")


def expect_close(what: str, measured, expected, *, tol, why: str, quiet: bool = False) -> None:
    """Claim $|\\text{measured} - \\text{expected}| \\le \\text{tol}$.

    **Arguments:** `what`, the quantity in words; `measured` and `expected`, numbers (or a
    `Floor`, whose mean is used); `tol` >= 0; `why`, where `tol` comes from. (Keyword only
    from `tol` on.) `quiet` suppresses the line printed on success.

    **Raises:** `ClaimError` when the claim fails; `ValueError` for a negative `tol` or an
    empty `why`.
    """
    _require_why(why)
    m, e, tol = _num(measured), _num(expected), float(tol)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}.")
    ok = abs(m - e) <= tol
    _report(ok, what, f"{_fmt(e)} ± {_fmt(tol)}", m, why, quiet)


def expect_below(what: str, measured, bound, *, why: str, quiet: bool = False) -> None:
    """Claim $\\text{measured} \\le \\text{bound}$ (put any tolerance into `bound`, said in `why`).

    **Raises:** `ClaimError` when the claim fails.
    """
    _require_why(why)
    m, b = _num(measured), _num(bound)
    _report(m <= b, what, f"≤ {_fmt(b)}", m, why, quiet)


def expect_above(what: str, measured, bound, *, why: str, quiet: bool = False) -> None:
    """Claim $\\text{measured} \\ge \\text{bound}$ (put any tolerance into `bound`, said in `why`).

    **Raises:** `ClaimError` when the claim fails.
    """
    _require_why(why)
    m, b = _num(measured), _num(bound)
    _report(m >= b, what, f"≥ {_fmt(b)}", m, why, quiet)


def expect_true(what: str, condition: bool, *, measured: str, why: str,
                quiet: bool = False) -> None:
    """Claim a condition that is not one number against another (an order, a trend).

    `measured` says in words what was measured (e.g. the values of a sweep), so the message
    shows it when the claim fails.

    **Raises:** `ClaimError` when `condition` is false.
    """
    _require_why(why)
    line = f"{what}: measured {measured} ({why})"
    if not bool(condition):
        raise ClaimError(f"Claim failed. {line}.")
    if not quiet:
        print(f"✓ {line}")
