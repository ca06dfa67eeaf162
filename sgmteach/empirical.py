r"""The exact score of an empirical measure: what denoising score matching memorises.

For data $x_1, \dots, x_N$ and a linear SDE with $X_t \mid X_0 \sim N(m_t X_0, s_t^2 I)$, the
law of $X_t$ started at $\pi^N = \frac1N\sum_i\delta_{x_i}$ is the mixture
$\frac1N\sum_i N(m_t x_i, s_t^2 I)$, and its score is

$$\nabla\log\rho_t^{\pi^N}(x) = \sum_i r_i(x)\,\frac{m_t x_i - x}{s_t^2},\qquad
r_i(x) = \operatorname{softmax}_i\Big(-\frac{|x - m_t x_i|^2}{2 s_t^2}\Big),$$

the unconstrained minimiser of the DSM loss on the data. Passing the orbit set
`symmetrize(data, group)` gives $\nabla\log\rho_t^{S_G\pi^N}$: the minimiser over *equivariant*
fields (Chen, Katsoulakis, Zhang, "Equivariant score-based generative models provably
learn distributions with symmetries efficiently"), which is not the plain average
`EquivariantScore(EmpiricalScore(data, sde), group)`. The softmax is a log-sum-exp, so small
$t$ (nearly one-hot weights) is safe in float32.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from ._checks import check_time, float_array, is_concrete
from .sde import AbstractLinearSDE, check_linear


class EmpiricalScore(eqx.Module):
    r"""$(x, t) \mapsto \nabla\log\rho_t^{\pi^N}(x)$ for the empirical measure of `data`.

    **Arguments:**

    - `data`: the atoms $x_i$, shape `(N, d)`, equally weighted (pass `symmetrize(data, group)`
      for the symmetrised measure $S_G\pi^N$).
    - `sde`: a linear `AbstractSDE`, giving $m_t$ and $s_t$.
    - `weights`: optional non-negative atom weights, shape `(N,)` (default equal). A zero
      weight removes an atom, so a traced mask over a fixed-size array changes the number of
      samples without recompiling.

    Call as `score(x, t)` with `x` of shape `(*batch, d)` and $t \in (0, T]$ (at $t = 0$ the
    measure has no density).

    **Raises:** `ValueError` for data that is not a non-empty `(N, d)` array, and, when called,
    for $t$ outside $(0, T]$ (an `EquinoxRuntimeError` with the same message under `jit`).
    """

    data: Float[Array, "n d"]
    sde: AbstractLinearSDE
    log_weights: Float[Array, " n"]

    def __init__(self, data: Float[ArrayLike, "n d"], sde: AbstractLinearSDE, weights=None):
        check_linear(sde, "EmpiricalScore")
        data = float_array(data, "data")
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"data must be a non-empty (N, d) array, got shape {data.shape}.")
        if weights is None:
            weights = jnp.full(data.shape[:1], 1.0 / data.shape[0], dtype=data.dtype)
        weights = jnp.asarray(weights, dtype=data.dtype)
        if weights.shape != data.shape[:1]:
            raise ValueError(
                f"weights must have shape (N,) = {data.shape[:1]}, got {weights.shape}."
            )
        if is_concrete(weights) and (np.asarray(weights) < 0).any():
            raise ValueError("weights must be non-negative.")
        self.data = data
        self.sde = sde
        self.log_weights = jnp.log(weights)  # -inf for a zero weight: that atom is ignored

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def __call__(
        self, x: Float[Array, "*batch d"], t: Real[ArrayLike, ""]
    ) -> Float[Array, "*batch d"]:
        if jnp.shape(x)[-1:] != (self.dim,):
            raise ValueError(f"x must have last axis d={self.dim}, got shape {jnp.shape(x)}.")
        t = check_time(t, self.sde.T, "t", open_left=True)
        m, s = self.sde.marginal_mean_std(t)
        lead = (1,) * (jnp.ndim(x) - 1)
        centres = (m * self.data).reshape(lead + self.data.shape)  # (..., N, d)
        diff = centres - x[..., None, :]  # (..., N, d)
        log_w = self.log_weights.reshape(lead + self.log_weights.shape)
        logits = log_w - jnp.sum(diff**2, axis=-1) / (2 * s**2)  # (..., N)
        r = jax.nn.softmax(logits, axis=-1)
        return jnp.einsum("...n,...nd->...d", r, diff) / s**2
