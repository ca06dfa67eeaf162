r"""The one training loop: jitted `lax.scan` chunks, a progress bar between them.

Every trainer in sgmteach (score matching, the GAN, and the topic trainers) writes one step,
`step(state, key) -> (state, metric)`, and hands it to `run_chunked`. Each chunk of steps runs
as one compiled `lax.scan`, so Python is touched once per chunk, not per step; the bar
(`tqdm.auto`: a widget in JupyterLab) advances between chunks. All chunks share one shape (the
last is padded, and its padding steps leave the state untouched), so one compilation serves
the whole run.

`step` is an `eqx.Module` (or any pytree-compatible callable): its array leaves (data, SDE
parameters) are traced and everything else is static, so a second run with the same
configuration and shapes reuses the compiled chunk.
"""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from tqdm.auto import tqdm

from ._checks import positive_int
from ._types import Key


@eqx.filter_jit
def _run_chunk(step, state, keys, active):
    def body(state, inp):
        key, on = inp
        new, metric = step(state, key)
        # Padding steps of the last chunk leave the state untouched.
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(on, a, b), new, state)
        return new, metric

    return jax.lax.scan(body, state, (keys, active))


def strong_types(tree):
    """`tree` with weak-typed arrays made strong.

    A weak-typed scalar (an array built from a Python float) comes out of the first step
    strongly typed; without this the second chunk would compile the scan a second time.
    """
    return jax.tree_util.tree_map(
        lambda x: jax.lax.convert_element_type(x, x.dtype) if eqx.is_array(x) else x, tree
    )


def run_chunked(
    step: Callable,
    state,
    steps: int,
    *,
    key: Key,
    chunk_size: int | None = None,
    progress: bool = True,
    desc: str = "training",
    metric_name: str = "loss",
    on_chunk: Callable | None = None,
):
    """Run `steps` calls of `state, metric = step(state, key)` in compiled chunks.

    **Arguments:**

    - `step`: the step, `(state, key) -> (state, metric)`; `metric` a pytree of scalars.
    - `state`: the initial state, a pytree of arrays.
    - `steps`: number of steps; `key`: PRNG key, split into one key per step.
    - `chunk_size`: steps per compiled chunk (default: about 20 bar updates).
    - `progress`: show a `tqdm.auto` bar; `desc` its label; `metric_name` the name under which
      the chunk mean of the (first leaf of the) metric is shown.
    - `on_chunk`: called as `on_chunk(state, steps_done)` after each chunk (to keep snapshots
      of the state: a particle flow saves its frames so, with `chunk_size` its frame spacing).

    **Returns:** `(state, metrics)`: the final state and the metric of each step, a pytree of
    NumPy arrays of shape `(steps,)`.
    """
    steps = positive_int("steps", steps)
    chunk = min(positive_int("chunk_size", chunk_size or max(1, math.ceil(steps / 20))), steps)
    n_chunks = math.ceil(steps / chunk)
    keys = jr.split(key, n_chunks * chunk).reshape(n_chunks, chunk)
    active = (np.arange(n_chunks * chunk) < steps).reshape(n_chunks, chunk)
    state = strong_types(state)
    metrics = []
    with tqdm(total=steps, desc=desc, disable=not progress, leave=True) as bar:
        for c in range(n_chunks):
            on = active[c]
            state, metric = _run_chunk(step, state, keys[c], jnp.asarray(on))
            metric = jax.tree_util.tree_map(lambda m, on=on: np.asarray(m)[on], metric)
            metrics.append(metric)
            first = jax.tree_util.tree_leaves(metric)[0]
            bar.update(len(first))
            finite = first[np.isfinite(first)]  # a flow that stopped records NaN
            bar.set_postfix({metric_name: f"{finite.mean() if finite.size else np.nan:.4f}"})
            if on_chunk is not None:
                on_chunk(state, min((c + 1) * chunk, steps))
    merged = jax.tree_util.tree_map(lambda *ms: np.concatenate(ms), *metrics)
    return state, merged
