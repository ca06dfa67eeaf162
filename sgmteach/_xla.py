"""A process-wide XLA setting sgmteach needs, applied before JAX starts its CPU backend.

XLA's CPU runtime (jaxlib 0.10) sometimes never finishes a jitted computation built from
vmapped mixture scores: every worker thread parks on a futex and the caller waits forever in
`block_until_ready`. Turning the concurrency-optimised thunk scheduler off cured it on the
2-core machines this package is tested on (README, "A CPU hang"). Others report the same wedge
of XLA's CPU thread pool on vmap graphs (PyAutoLabs/PyAutoFit#1530).

XLA reads `XLA_FLAGS` once, when the first computation starts its CPU backend; importing jax
does not. `import sgmteach` therefore adds the flag to the environment, unless `XLA_FLAGS`
already names it (a user's own choice stands), and warns if JAX's backends were started before
sgmteach was imported, when the flag can no longer take effect.
"""

import os
import warnings

FLAG_NAME = "xla_cpu_enable_concurrency_optimized_scheduler"
FLAG = f"--{FLAG_NAME}=false"


def _backends_started() -> bool:
    # A private function of JAX: if it moves, assume nothing has started yet, and the
    # "too late" warning is lost (tests/test_xla.py fails then, so the move is noticed).
    try:
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        return False
    return bool(backends_are_initialized())


def configure() -> bool:
    """Add `FLAG` to `XLA_FLAGS`; True when it was added."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG_NAME in flags:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    if _backends_started():
        warnings.warn(
            "JAX computed something before `import sgmteach`, so XLA's CPU runtime started "
            f"without {FLAG}; large vmapped computations may hang on a CPU. Import sgmteach "
            "before computing anything, or export XLA_FLAGS='" + FLAG + "' before Python starts.",
            RuntimeWarning,
            stacklevel=3,
        )
    return True
