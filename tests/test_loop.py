"""The shared training loop: one compilation per run, padding that changes nothing, metrics."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import count_compiles

from sgmteach._loop import run_chunked


class _Count(eqx.Module):
    """state -> state + increment; metric: the new state and a uniform draw from the key."""

    increment: jax.Array

    def __call__(self, state, key):
        new = state + self.increment
        return new, {"value": new, "draw": jr.uniform(key)}


def test_steps_run_once_each_and_padding_changes_nothing():
    # 23 steps in chunks of 5: the last chunk has 2 padding steps, which must leave the state.
    state, metrics = run_chunked(_Count(jnp.asarray(1.0)), jnp.asarray(0.0), 23, key=jr.key(0),
                                 chunk_size=5, progress=False)
    assert float(state) == 23.0
    np.testing.assert_array_equal(metrics["value"], np.arange(1, 24))
    assert metrics["draw"].shape == (23,)
    assert len(set(metrics["draw"].tolist())) == 23  # a fresh key at every step


def test_one_compilation_per_run_and_a_new_shape_compiles():
    step = _Count(jnp.asarray(2.0))
    with count_compiles("_run_chunk") as compiles:
        run_chunked(step, jnp.asarray(0.0), 40, key=jr.key(1), chunk_size=8, progress=False)
        # Same chunk shape, new traced values (state, increment): no new compilation.
        run_chunked(_Count(jnp.asarray(3.0)), jnp.asarray(5.0), 16, key=jr.key(2),
                    chunk_size=8, progress=False)
    assert len(compiles) == 1
    with count_compiles("_run_chunk") as compiles:  # positive control: a new chunk length
        run_chunked(step, jnp.asarray(0.0), 9, key=jr.key(3), chunk_size=9, progress=False)
    assert len(compiles) == 1


def test_weak_typed_state_does_not_compile_twice():
    # jnp.asarray(0.0) is weak-typed; after one step it is not. Without strong_types the
    # second chunk would compile the scan again.
    with count_compiles("_run_chunk") as compiles:
        run_chunked(_Count(jnp.asarray(1.5)), jnp.asarray(0.25), 12, key=jr.key(4),
                    chunk_size=4, progress=False)
    assert len(compiles) == 1


@pytest.mark.parametrize("kwargs, match", [({"steps": 0}, "steps must be a positive integer"),
                                           ({"chunk_size": -1}, "chunk_size must be")])
def test_bad_sizes(kwargs, match):
    args = {"steps": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        run_chunked(_Count(jnp.asarray(1.0)), jnp.asarray(0.0), args.pop("steps"),
                    key=jr.key(0), progress=False, **args)
