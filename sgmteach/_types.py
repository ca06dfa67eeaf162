"""Type aliases shared across sgmteach (one axis vocabulary: n samples, d dim, k components)."""

from jaxtyping import Array, Float, PRNGKeyArray

Scalar = Float[Array, ""]
Vector = Float[Array, " d"]
Data = Float[Array, "n d"]
Key = PRNGKeyArray

__all__ = ["Scalar", "Vector", "Data", "Key"]
