"""Boundary checks shared by the public constructors and functions.

Structure and shapes are checked with Python (they are known while tracing). Values are
checked with Python when they are concrete, and with `eqx.error_if` when they may be traced:
the checked array is *returned*, and the caller must use it, or XLA deletes the check.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# A concrete time may overshoot T by float round-off (T - t0 computed in float32); the traced
# check uses the same rule, so a call near T passes or fails the same way under `jit`.
_T_SLACK = 1e-6


def is_concrete(*xs) -> bool:
    """True when none of `xs` is a JAX tracer (so Python `if` on their values is safe)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(xs))


def positive_int(name: str, v, minimum: int = 1) -> int:
    """`v` as a Python int, or `ValueError` unless it is an integer >= `minimum` (not a bool)."""
    try:
        ok = not isinstance(v, bool) and int(v) == v and v >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {v!r}.")
    return int(v)


def float_array(x, name: str):
    """`x` as a JAX array of JAX's default float dtype if it holds integers or booleans.

    Integer data would otherwise make every derived quantity (times, noise) integer too.
    Complex input is refused. Float input keeps its dtype.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {x.dtype}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def check_finite(x, name: str):
    """Reject NaN or inf in `x`, naming the argument and the first bad index.

    Returns `x`; under tracing the check lives in the returned array, so use the result.
    """
    if is_concrete(x):
        arr = np.asarray(x)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = np.argwhere(bad)[0].tolist()
            raise ValueError(
                f"{name} contains NaN or inf (first at index {where}); clean or drop those rows."
            )
        return x
    return eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), f"{name} contains NaN or inf")


def check_time(t, T, name: str = "t", *, open_left: bool = False):
    """Reject a time outside `[0, T]`, or outside `(0, T]` when `open_left`.

    `open_left` is for objects that divide by the noise level $s_t$, which is 0 at $t = 0$.
    Returns `t` as an array (use the result: under tracing the check lives in it).
    """
    t = jnp.asarray(t)
    interval = "(0, T] = (0, {T}]" if open_left else "[0, T] = [0, {T}]"
    hint = " (at t = 0 the noise level is 0 and this object divides by it)" if open_left else ""
    if is_concrete(t, T):
        tv, Tv = np.asarray(t), float(np.asarray(T))
        low = np.any(tv <= 0) if open_left else np.any(tv < 0)
        if low or np.any(tv > Tv * (1 + _T_SLACK)):
            raise ValueError(f"{name} must lie in {interval.format(T=f'{Tv:g}')}, got {tv}{hint}.")
        return t
    low = (t <= 0) if open_left else (t < 0)
    bad = low | (t > T * (1 + _T_SLACK))
    return eqx.error_if(t, bad, f"{name} must lie in {interval.format(T='T')}{hint}")


def check_dim(x, d: int, name: str):
    """Require the last axis of `x` to be `d` (`ValueError` naming `name` otherwise)."""
    shape = jnp.shape(x)
    if len(shape) == 0 or shape[-1] != d:
        raise ValueError(f"{name} must have last axis of size d={d}, got shape {tuple(shape)}.")


def sample_pair(x, y):
    """Two sample sets as float64 NumPy arrays `(n, d)`, `(m, d)`: non-empty, finite, same `d`."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"x and y must have shape (n, d), got {x.shape} and {y.shape}.")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must share the dimension d, got {x.shape[1]} and {y.shape[1]}.")
    if len(x) == 0 or len(y) == 0:
        raise ValueError("x and y must be non-empty.")
    check_finite(x, "x")
    check_finite(y, "y")
    return x, y
