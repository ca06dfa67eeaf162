r"""When are the divergences of the heavy-tail paper finite? Its conditions, as a function.

Chen, Gu, Katsoulakis, Rey-Bellet, Zhu, "Learning heavy-tailed distributions with
Wasserstein-proximal-regularized α-divergences" (v3: "Robust generative learning with
Lipschitz-regularized α-divergences allows minimal assumptions on target distributions",
Information and Inference, 2025). Only the abstracts could be read, not the theorem statements
(notes `heavy-tails-alpha.md` §2.4, addendum B §5): what each field below says is marked
**read** (the abstract's statement) or **derived** (the notes' derivation, checked there by
quadrature), never presented as the paper's theorem.

Tails are polynomial: a law with tail index $\nu$ has $P(|X| > r) \asymp r^{-\nu}$ and, with a
density, $p(x) \asymp |x|^{-\beta}$, $\beta = d + \nu$ (a Student-t with $\nu$ degrees of
freedom has tail index $\nu$). In these terms the dimension cancels from every condition below
(it only relates $\beta$ and $\nu$); the function takes `d` to report $\beta$.
"""

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike

from .._checks import positive_int


class Finiteness(NamedTuple):
    r"""Which quantities are finite, for a target of tail index $\nu_Q$ and the given $\alpha$
    (boolean arrays, broadcast over the arguments).

    - `regularised`: $D^{\Gamma_L}_{f_\alpha}(P\|Q) < \infty$ for every $L$. **Read** (v3
      abstract): true whenever the source $P$ has a finite first moment, *whatever* $Q$ is; for
      a heavier source (tail index $\nu_P \le 1$) it needs `plain`'s condition with $\eta$
      carrying $P$'s tail (**derived**, notes §2.4 (b)).
    - `plain`: the unregularised $D_{f_\alpha}(P\|Q) < \infty$ for $P \ll Q$ with these tails:
      $\alpha\nu_P + (1 - \alpha)\nu_Q > 0$, always true for a light source (**derived**,
      notes §2.4 (b)); it fails for singular $P, Q$ whatever the tails (data on a
      submanifold, empirical measures).
    - `moment`: $\mathbb{E}_Q f_\alpha^*(\phi) < \infty$ for every Lipschitz $\phi$ of linear
      growth, iff $\alpha > 1$ and $\frac{\alpha}{\alpha - 1} < \nu_Q$ (**derived**, notes
      §2.4 (c)); false for KL ($\alpha = 1$: $e^{\phi}$ needs exponential moments) and for
      $\alpha < 1$ (the conjugate is $+\infty$ on $y \ge 0$). When it fails the supremum is
      still finite, but the optimal $\phi$ must flatten on the tails and estimates are noisy.
    - `w1`: $W_1(P, Q) < \infty$ (both first moments finite: $\nu_Q > 1$, $\nu_P > 1$); when
      it fails the bound $D^{\Gamma_L} \le L\,W_1$ says nothing, yet `regularised` holds.
    - `beta`: the target's density decay $\beta_Q = d + \nu_Q$.
    """

    regularised: np.ndarray
    plain: np.ndarray
    moment: np.ndarray
    w1: np.ndarray
    beta: np.ndarray


def divergence_finite(
    d: int,
    alpha: ArrayLike,
    tail_index: ArrayLike,
    *,
    source_tail_index: ArrayLike | None = None,
) -> Finiteness:
    r"""The finiteness conditions of the $\alpha$-divergences for a heavy-tailed target.

    **Arguments:** `d`, the dimension; `alpha` $> 0$ ($\alpha = 1$: KL); `tail_index`
    $\nu_Q > 0$ of the target; `source_tail_index` $\nu_P > 0$ of the source, or `None` for a
    light-tailed source (Gaussian: $\nu_P = \infty$). Arrays broadcast, so one call draws the
    map over $(\alpha, \nu_Q)$.

    **Returns:** a `Finiteness` (its docstring says which condition was read and which derived).

    **Raises:** `ValueError` for $\alpha \le 0$, a tail index $\le 0$ or NaN, or a `d` that is
    not a positive integer.
    """
    d = positive_int("d", d)
    a = np.asarray(alpha, np.float64)
    nu_q = np.asarray(tail_index, np.float64)
    nu_p = np.asarray(np.inf if source_tail_index is None else source_tail_index, np.float64)
    for name, v in (("alpha", a), ("tail_index", nu_q), ("source_tail_index", nu_p)):
        if np.any(np.isnan(v)) or np.any(v <= 0):
            raise ValueError(f"{name} must be > 0 (no NaN), got {v}.")
    a, nu_q, nu_p = np.broadcast_arrays(a, nu_q, nu_p)
    light = np.isinf(nu_p)
    with np.errstate(invalid="ignore", divide="ignore"):
        # a nu_P + (1 - a) nu_Q > 0, with nu_P = inf read as +inf (a > 0)
        plain = light | (a * nu_p + (1 - a) * nu_q > 0)
        conj_growth = np.where(a > 1, a / (a - 1), np.inf)
    moment = (a > 1) & (conj_growth < nu_q)
    regularised = light | (nu_p > 1) | plain
    w1 = (nu_q > 1) & (light | (nu_p > 1))
    return Finiteness(regularised, plain, moment, w1, d + nu_q)
