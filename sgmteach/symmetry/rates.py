r"""The rates and bounds of the symmetry papers, as functions of $n$, $|G|$ and $d$.

The papers prove *rates*: how an error scales with the sample size $n$, the group order $|G|$
and the dimension $d$ (or the intrinsic dimension $d^*$ of the data). Their constants depend on
the support's diameter, the fundamental domain, $\alpha$ and $L$, and are not available in a
form one could evaluate; so every rate here takes an explicit `constant` (default 1) and is
meant for slopes and ratios on log-log plots, never for absolute values. Each docstring tags
its source:

- **[paper]**: stated in the paper's abstract or summary (of arXiv 2302.01915 v3 and
  2305.13517 v4); their theorem statements' constants are not reproduced here;
- **[derived]**: follows exactly from a [paper] statement in one line, proof in the docstring;
- **[standard]**: a textbook fact the papers build on (Fournier & Guillin, "On the rate of
  convergence in Wasserstein distance of the empirical measure", PTRF 2015).

Papers: Chen, Katsoulakis, Rey-Bellet, Zhu, "Sample Complexity of Probability Divergences under
Group Symmetry" (ICML 2023, arXiv:2302.01915); the same authors, "Statistical Guarantees of
Group-Invariant GANs" (arXiv:2305.13517); Chen, Katsoulakis, Zhang, "Equivariant score-based
generative models provably learn distributions with symmetries efficiently" (arXiv:2410.01244).
"""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Real

from .._checks import is_concrete

Num = Real[ArrayLike, "..."]  # a Python number or an array of sizes, orders, constants


def _dim(d: int, intrinsic_dim: int | None) -> int:
    for name, v in (("d", d), ("intrinsic_dim", intrinsic_dim)):
        if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    if intrinsic_dim is not None and intrinsic_dim > d:
        raise ValueError(f"intrinsic_dim must be <= d={d}, got {intrinsic_dim}.")
    return int(d if intrinsic_dim is None else intrinsic_dim)


def _positive(name: str, v) -> Float[Array, "..."]:
    v = jnp.asarray(v, dtype=jnp.result_type(float))
    if is_concrete(v) and bool(jnp.any(v <= 0)):
        raise ValueError(f"{name} must be > 0, got {v}.")
    return v


def _rate(n_eff, k: int):
    """The empirical-W1 rate r_k(N) in effective sample size N [standard]."""
    if k >= 3:
        return n_eff ** (-1.0 / k)
    if k == 2:
        return n_eff**-0.5 * jnp.log1p(n_eff)
    return n_eff**-0.5


def w1_rate(
    n: Num,
    d: int,
    *,
    group_order: Num = 1,
    intrinsic_dim: int | None = None,
    constant: Num = 1.0,
) -> Float[Array, "..."]:
    r"""The statistical term $\mathbb{E}\,W_1(\mu, S_G\mu_n) \lesssim C\,r_k(|G|\,n)$.

    $r_k(N) = N^{-1/k}$ for $k \ge 3$, $N^{-1/2}\log(1 + N)$ for $k = 2$, $N^{-1/2}$ for $k = 1$,
    with $k = d$, or $k = d^*$ = `intrinsic_dim` when the data lie on a $d^*$-dimensional set.

    - The $(|G|n)^{-1/d}$ and $(|G|n)^{-1/d^*}$ forms: **[paper]** for invariant GANs (arXiv
      2305.13517: v4 abstract, samples needed fall by the factor $|G|$; v1 abstract, the gain
      is a power of $|G|$ set by the intrinsic dimension; the two exponents as written here
      come from a third-party full-text summary, the theorem itself was not retrieved), and
      the statistical term of the equivariant-SGM $d_1$ bound (2410.01244 abstract: an
      "improved" bound built on 2302.01915; its $d^*$ version is not confirmed there).
      For infinite groups 2302.01915 v3 states a better exponent set by the dimension of the
      fundamental domain: pass it as `intrinsic_dim` with `group_order=1`.
    - The $k = 2$ log factor and $k = 1$ rate: **[standard]** (Fournier & Guillin 2015), not
      re-checked in these papers.
    - "$n$ large enough" (below the orbit-separation scale) is required and not modelled.
    - `constant` $C$: **unknown** (it depends on the support and the fundamental domain); 1 by
      default, so only slopes and ratios are meaningful.

    **Arguments:** `n`, sample sizes (array); `d`, the ambient dimension; `group_order` $|G|$,
    `intrinsic_dim` $d^*$, `constant` $C$ (keyword only).

    **Returns:** the rate, broadcast over `n`, `group_order` and `constant`.

    **Raises:** `ValueError` for non-positive `n`, `group_order` or `constant`, or bad `d`.
    """
    k = _dim(d, intrinsic_dim)
    return _positive("constant", constant) * _rate(
        _positive("n", n) * _positive("group_order", group_order), k
    )


def divergence_rate(
    m: Num,
    n: Num,
    d: int,
    *,
    group_order: Num = 1,
    intrinsic_dim: int | None = None,
    constant: Num = 1.0,
) -> Float[Array, "..."]:
    r"""Two-sample estimation error $\mathbb{E}|D(P\|Q) - D^{\Gamma^G}(P_m\|Q_n)| \lesssim
    C[r_k(|G|m) + r_k(|G|n)]$.

    - For $D = W_1$: **[derived]** from `w1_rate` by the triangle inequality,
      $|W_1(S_GP_m, S_GQ_n) - W_1(P, Q)| \le W_1(S_GP_m, P) + W_1(S_GQ_n, Q)$.
    - For the Lipschitz-regularised $\alpha$-divergences: **[paper]** only as "the reduction of
      sample complexity is proportional to the group size" (2302.01915 v3 abstract); that the
      theorem has exactly this two-term form, and its $C$ (depending on $\alpha$, $L$, the
      domain) are **not verified**: the theorem statement could not be retrieved.
    - MMD has no such rate here: the paper says its gain "depends on not only the group size but
      also the choice of kernel"; use the exact `expected_mmd2` instead.
    - `constant`: **unknown**, default 1.

    Arguments as `w1_rate`, with the two sample sizes `m` (from $P$) and `n` (from $Q$).
    """
    k = _dim(d, intrinsic_dim)
    g = _positive("group_order", group_order)
    c = _positive("constant", constant)
    return c * (_rate(_positive("m", m) * g, k) + _rate(_positive("n", n) * g, k))


def symmetry_gain(
    group_order: Num,
    d: int,
    *,
    n: Num | None = None,
    intrinsic_dim: int | None = None,
) -> Float[Array, "..."]:
    r"""Error ratio, invariant over plain, at the same $n$: $r_k(|G|n)/r_k(n)$.

    With `n=None`, its limit as $n \to \infty$: $|G|^{-1/k}$ for $k \ge 2$ (the log factor of
    $k = 2$ cancels in the limit, slowly) and $|G|^{-1/2}$ for $k = 1$. E.g. $C_8$ in $d = 2$:
    $8^{-1/2} \approx 0.35$; $C_4$ on 3-D data: $4^{-1/3} \approx 0.63$. **[paper]** (v1
    abstracts of 2302.01915 and 2305.13517: "proportional to a power of the group size"); the
    constant cancels in the ratio.
    """
    k = _dim(d, intrinsic_dim)
    g = _positive("group_order", group_order)
    if n is None:
        return g ** (-1.0 / max(k, 2))
    n = _positive("n", n)
    return _rate(g * n, k) / _rate(n, k)


def samples_needed(
    error: Num,
    d: int,
    *,
    group_order: Num = 1,
    intrinsic_dim: int | None = None,
    constant: Num = 1.0,
) -> Float[Array, "..."]:
    r"""The $n$ at which `w1_rate` equals `error`: $|G|$ times fewer samples with symmetry.

    **[derived]** by inverting $C\,r_k(|G|n) = \varepsilon$: $|G|\,n = (C/\varepsilon)^k$ for
    $k \ge 3$ and $(C/\varepsilon)^2$ for $k = 1$; for $k = 2$,
    $N^{-1/2}\log(1+N) = \varepsilon/C$ is solved by Newton's method on $\log N$ (on the
    decreasing branch, $N \ge e^2$). There the rate never exceeds
    $e^{-1}\log(1+e^2) \approx 0.78$: for $\varepsilon/C$ above that every $N \ge e^2$ meets the
    error, and the result is the branch's start, $e^2/|G|$. That the sample complexity falls
    by the factor $|G|$ is the **[paper]** statement (2302.01915 v3, 2305.13517 v4
    abstracts). `constant`: unknown, default 1.
    """
    k = _dim(d, intrinsic_dim)
    ratio = _positive("constant", constant) / _positive("error", error)
    g = _positive("group_order", group_order)
    if k >= 3:
        return ratio**k / g
    if k == 1:
        return ratio**2 / g
    # k = 2: solve phi(u) = -u/2 + log(log1p(e^u)) + log(ratio) = 0 for u = log N.
    u = jnp.maximum(2.0 * jnp.log(ratio) + 2.0 * jnp.log(jnp.maximum(jnp.log(ratio), 1.0)), 2.0)
    for _ in range(50):
        lg = jnp.log1p(jnp.exp(u))
        phi = -0.5 * u + jnp.log(lg) + jnp.log(ratio)
        dphi = -0.5 + jnp.exp(u) / ((1 + jnp.exp(u)) * lg)
        u = jnp.maximum(u - phi / dphi, 2.0)
    return jnp.exp(u) / g


def invariant_gan_bound(
    statistical: Num,
    *,
    discriminator: Num = 0.0,
    generator: Num = 0.0,
) -> Float[Array, "..."]:
    r"""The three-term oracle inequality for an invariant GAN,
    $W_1(\alpha_{\hat\theta}, \mu) \le 2\,\mathcal{E}_D + \mathcal{E}_G + 2\,W_1(\mu, S_G\mu_n)$.

    `discriminator` $\mathcal{E}_D = \sup_{h\in\mathrm{Lip}_1^G}\inf_{f\in\mathcal{F}^G}
    \|h - f\|_\infty$, `generator` $\mathcal{E}_G = \inf_\theta d_{\mathcal{F}^G}(\alpha_\theta,
    \mu)$, `statistical` $= W_1(\mu, S_G\mu_n)$ (measured, or `w1_rate`). **[derived]**, not the
    paper's: it follows from the symmetrisation identities by the triangle inequality, with
    exactly these constants;
    the three-term structure is the **[paper]**'s (2305.13517: discriminator approximation,
    generator approximation and statistical error), whose own constants and network-size
    conditions were not retrieved.
    """
    return (
        2 * jnp.asarray(discriminator, dtype=jnp.result_type(float))
        + jnp.asarray(generator, dtype=jnp.result_type(float))
        + 2 * jnp.asarray(statistical, dtype=jnp.result_type(float))
    )
