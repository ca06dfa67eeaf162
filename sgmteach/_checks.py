"""Boundary checks shared by the public constructors and functions.

Structure and shapes are checked with Python (they are known while tracing). Values are
checked with Python when they are concrete, and with `eqx.error_if` when they may be traced.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    """True when none of `xs` is a JAX tracer (so Python `if` on their values is safe)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(xs))


def check_value(x, bad, message: str):
    """Raise `ValueError(message)` if `bad` holds; under tracing, attach an `eqx.error_if`.

    Returns `x` (use the result: under tracing the check lives in the returned array).
    """
    if is_concrete(x, bad):
        if bool(np.any(np.asarray(bad))):
            raise ValueError(message)
        return x
    return eqx.error_if(x, bad, message)


def check_finite(x, name: str):
    """Reject NaN or inf in `x`, naming the argument and the first bad row."""
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


def check_time(t, T, name: str = "t"):
    """Reject a time outside `[0, T]`."""
    t = jnp.asarray(t)
    if is_concrete(t, T):
        tv, Tv = np.asarray(t), float(np.asarray(T))
        if np.any(tv < 0) or np.any(tv > Tv * (1 + 1e-6)):
            raise ValueError(f"{name} must lie in [0, T] = [0, {Tv:g}], got {tv}.")
        return t
    return eqx.error_if(t, (t < 0) | (t > T), f"{name} must lie in [0, T]")


def check_dim(x, d: int, name: str):
    """Require the last axis of `x` to be `d`."""
    shape = jnp.shape(x)
    if len(shape) == 0 or shape[-1] != d:
        raise ValueError(f"{name} must have last axis of size d={d}, got shape {tuple(shape)}.")
