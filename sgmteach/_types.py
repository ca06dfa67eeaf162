"""Type aliases and interfaces shared across sgmteach.

One axis vocabulary: `n` samples, `d` dimension, `k` mixture components, `g` group order.
"""

from typing import Protocol, runtime_checkable

from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

Scalar = Float[Array, ""]
Vector = Float[Array, " d"]
Data = Float[Array, "n d"]
Key = PRNGKeyArray
Number = Real[ArrayLike, ""]  # a Python int or float, a NumPy scalar or a 0-d array


@runtime_checkable
class Target(Protocol):
    """What `mc_floor` and `distance_to_target` need of a law: `sample(n, *, key)` -> `(n, d)`.

    Mixtures, generators and every later target share this one signature.
    """

    def sample(self, n: int, *, key: Key) -> Data: ...


@runtime_checkable
class GroupAction(Protocol):
    """The interface of a finite group acting on R^d that the core's estimators use.

    `sgmteach.symmetry`'s groups implement it; the core never imports a topic, so it knows a
    group only through these members.
    """

    @property
    def dim(self) -> int: ...

    @property
    def order(self) -> int: ...

    @property
    def matrices(self) -> Float[Array, "g d d"]: ...

    def act(self, x, index): ...

    def orbit(self, x): ...

    def invariant(self, fn): ...


__all__ = ["Scalar", "Vector", "Data", "Key", "Number", "Target", "GroupAction"]
