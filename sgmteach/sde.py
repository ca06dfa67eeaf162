r"""Forward noising SDEs $dx = f(x, t)\,dt + g(t)\,dW$ on $[0, T]$ (Song et al. 2021).

`AbstractSDE` is any forward SDE, nonlinear drifts included; the reverse-time drift is written
once, on it. `AbstractLinearSDE` adds closed-form marginals. The three SDEs here are linear:
$X_t \mid X_0 \sim N(m_t X_0, s_t^2 I)$, which is what makes exact scores of Gaussian mixtures
available at every time (`GaussianMixture.diffuse`).
Parameters are stored as arrays, so an SDE with a changed value is the same compiled program:
moving a slider over `beta_max` never recompiles. Only `schedule` (a string) is static.

Reference: Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole, "Score-Based Generative Modeling
through Stochastic Differential Equations", ICLR 2021.
"""

import abc

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from ._checks import check_time, is_concrete
from ._types import Key, Number, Scalar, Vector

_SCHEDULES = ("linear", "cosine")
_COSINE_S = 0.008  # Nichol & Dhariwal's offset


class AbstractSDE(eqx.Module):
    r"""A forward SDE $dX = f(X, t)\,dt + g(t)\,dW$ on $[0, T]$, nonlinear drifts included.

    Subclasses give `drift`, `diffusion` and `prior_sample` (a draw of the law the reverse
    process starts from at $t = T$). The reverse-time drift is written once, here, and every
    sampler uses it, so `sample` and `trajectories` run any subclass unchanged.
    """

    T: eqx.AbstractVar[Scalar]

    @abc.abstractmethod
    def drift(self, x: Vector, t: Number) -> Vector:
        """Forward drift $f(x, t)$ at one point `x` of shape `(d,)`."""

    @abc.abstractmethod
    def diffusion(self, t: Number) -> Scalar:
        """Diffusion coefficient $g(t)$, a scalar."""

    @abc.abstractmethod
    def prior_sample(self, n: int, d: int, *, key: Key) -> Float[Array, "n d"]:
        """`n` draws, shape `(n, d)`, of the law the reverse process starts from at $t = T$."""

    def reverse_drift(self, score, x: Vector, t: Number, *,
                      probability_flow: bool = False) -> Vector:
        r"""Drift of the reverse-time process given a score $s(x, t) \approx \nabla\log p_t$.

        Reverse SDE (Anderson 1982): $f(x, t) - g(t)^2 s(x, t)$. Probability-flow ODE:
        $f(x, t) - \tfrac12 g(t)^2 s(x, t)$. Both are integrated from $T$ down to $t_0$, that
        is, $dx = -\text{reverse\_drift}\,d\tau$ in reversed time $\tau = T - t$. `x` is one
        point `(d,)`; `score` is called on it as `score(x, t)`.
        """
        c = 0.5 if probability_flow else 1.0
        return self.drift(x, t) - c * self.diffusion(t) ** 2 * score(x, t)


class AbstractLinearSDE(AbstractSDE):
    r"""A linear SDE $dX = f(t) X\,dt + g(t)\,dW$: Gaussian transition kernels in closed form.

    Subclasses add `marginal_mean_std` and `prior_std`. From them: perturbing data
    (`perturb`), the Gaussian prior $N(0, \sigma_T^2 I)$, exact mixture marginals
    (`GaussianMixture.diffuse`) and the denoising losses.
    """

    @abc.abstractmethod
    def marginal_mean_std(self, t: Number) -> tuple[Scalar, Scalar]:
        r"""$(m_t, s_t)$ such that $X_t \mid X_0 \sim N(m_t X_0, s_t^2 I)$."""

    @abc.abstractmethod
    def prior_std(self) -> Scalar:
        """Standard deviation of the Gaussian prior used at $t = T$."""

    def perturb(self, x0, t, *, key: Key):
        r"""Draw $x_t = m_t x_0 + s_t z$, $z \sim N(0, I)$, for one point or a batch."""
        t = check_time(t, self.T)
        m, s = self.marginal_mean_std(t)
        return m * x0 + s * jr.normal(key, jnp.shape(x0))

    def prior_sample(self, n: int, d: int, *, key: Key) -> Float[Array, "n d"]:
        r"""`n` draws from the prior $N(0, \sigma_T^2 I)$ in dimension `d`, shape `(n, d)`."""
        return self.prior_std() * jr.normal(key, (n, d))


def check_linear(sde, who: str) -> None:
    """`TypeError` unless `sde` is an `AbstractLinearSDE` (`who` needs closed-form marginals)."""
    if not isinstance(sde, AbstractLinearSDE):
        raise TypeError(
            f"{who} needs the closed-form marginals of a linear SDE (an AbstractLinearSDE such "
            f"as VPSDE), got {type(sde).__name__}."
        )


def _check_positive_pair(lo, hi, lo_name: str, hi_name: str, allow_zero_lo: bool = False):
    if is_concrete(lo, hi):
        lo_v, hi_v = float(lo), float(hi)
        if lo_v < 0 or (lo_v == 0 and not allow_zero_lo):
            raise ValueError(f"{lo_name} must be > 0, got {lo_v:g}.")
        if not hi_v > lo_v:
            raise ValueError(
                f"{lo_name} must be smaller than {hi_name}, got {lo_name}={lo_v:g} >= "
                f"{hi_name}={hi_v:g}."
            )


def _check_T(T):
    if is_concrete(T) and not float(T) > 0:
        raise ValueError(f"T must be > 0, got {float(T):g}.")


def _cos_antiderivative(u):
    # beta_cos(u) = pi/(1+s) * tan(pi/2 (u+s)/(1+s)) with u = t/T; its integral in u.
    return -2.0 * jnp.log(jnp.cos(0.5 * jnp.pi * (u + _COSINE_S) / (1 + _COSINE_S)))


def _cos_inverse(beta_u):
    # u at which beta_cos(u) = beta_u (beta in units of 1/T).
    return 2 * (1 + _COSINE_S) / jnp.pi * jnp.arctan(beta_u * (1 + _COSINE_S) / jnp.pi) - _COSINE_S


def _beta_schedule(schedule: str, beta_min, beta_max, T, t):
    r"""$\beta(t)$ and $B(t) = \int_0^t \beta$ for the linear or cosine schedule."""
    if schedule == "linear":
        beta = beta_min + (beta_max - beta_min) * t / T
        integral = beta_min * t + 0.5 * (beta_max - beta_min) * t**2 / T
        return beta, integral
    # Cosine (Nichol & Dhariwal 2021): alpha_bar(t) = cos^2(pi/2 (t/T+s)/(1+s)) / cos^2(...0...),
    # whose rate beta_cos(t) increases from about pi^2 s/2 to infinity at T. We clip it to
    # [beta_min, beta_max]; since beta_cos is increasing, the integral stays in closed form.
    u = t / T
    u_lo = jnp.clip(_cos_inverse(beta_min * T), 0.0, 1.0)
    u_hi = jnp.clip(_cos_inverse(beta_max * T), 0.0, 1.0)
    u_mid = jnp.clip(u, u_lo, u_hi)
    # Select by the thresholds, not by clipping tan: at u = 1 tan(pi/2) rounds to a huge number
    # of either sign, and a negative one would be clipped to beta_min.
    beta_cos = jnp.pi / (1 + _COSINE_S) * jnp.tan(
        0.5 * jnp.pi * (u_mid + _COSINE_S) / (1 + _COSINE_S)
    )
    beta = jnp.where(u >= u_hi, beta_max, jnp.where(u <= u_lo, beta_min, beta_cos / T))
    integral = (
        beta_min * T * jnp.minimum(u, u_lo)
        + (_cos_antiderivative(u_mid) - _cos_antiderivative(u_lo))
        + beta_max * T * jnp.maximum(u - u_hi, 0.0)
    )
    return beta, integral


def _check_schedule(schedule: str):
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}.")


class AbstractBetaSDE(AbstractLinearSDE):
    r"""A linear SDE driven by a noise rate $\beta(t)$ with $B(t) = \int_0^t \beta$ in closed form.

    Holds the validation and the schedule shared by `VPSDE` and `SubVPSDE`.
    """

    beta_min: eqx.AbstractVar[Scalar]
    beta_max: eqx.AbstractVar[Scalar]
    schedule: eqx.AbstractVar[str]

    def __check_init__(self):
        _check_schedule(self.schedule)
        _check_positive_pair(self.beta_min, self.beta_max, "beta_min", "beta_max")
        _check_T(self.T)

    def beta_and_integral(self, t):
        r"""$(\beta(t), B(t))$."""
        return _beta_schedule(self.schedule, self.beta_min, self.beta_max, self.T, t)

    def beta(self, t):
        r"""The noise rate $\beta(t)$."""
        return self.beta_and_integral(t)[0]

    def drift(self, x, t):
        return -0.5 * self.beta(t) * x

    def prior_std(self):
        return jnp.asarray(1.0)


class VPSDE(AbstractBetaSDE):
    r"""Variance-preserving SDE $dx = -\tfrac12\beta(t) x\,dt + \sqrt{\beta(t)}\,dW$.

    $m_t = e^{-B(t)/2}$, $s_t^2 = 1 - e^{-B(t)}$ with $B(t) = \int_0^t \beta$. The `"linear"`
    schedule is $\beta(t) = \beta_{\min} + (\beta_{\max} - \beta_{\min}) t/T$ (DDPM's limit);
    `"cosine"` is Nichol & Dhariwal's $\bar\alpha(t) = \cos^2\big(\tfrac\pi2\tfrac{t/T+s}{1+s}\big)$
    with its rate clipped to $[\beta_{\min}, \beta_{\max}]$, which keeps $m_T > 0$ and the
    marginals in closed form.

    **Arguments:**

    - `beta_min`, `beta_max`: $0 < \beta_{\min} < \beta_{\max}$.
    - `schedule`: `"linear"` (default) or `"cosine"`.
    - `T`: final time, default 1.

    **Raises:** `ValueError` for a non-positive `beta_min`, `beta_min >= beta_max`, a
    non-positive `T` or an unknown schedule.
    """

    beta_min: Scalar = eqx.field(converter=jnp.asarray)
    beta_max: Scalar = eqx.field(converter=jnp.asarray)
    schedule: str = eqx.field(static=True, default="linear")
    T: Scalar = eqx.field(converter=jnp.asarray, default=1.0)

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t))

    def marginal_mean_std(self, t):
        B = self.beta_and_integral(t)[1]
        return jnp.exp(-0.5 * B), jnp.sqrt(-jnp.expm1(-B))


class SubVPSDE(AbstractBetaSDE):
    r"""Sub-VP SDE $dx = -\tfrac12\beta x\,dt + \sqrt{\beta(t)(1 - e^{-2B(t)})}\,dW$.

    Same mean as the VP SDE, smaller variance: $s_t^2 = (1 - e^{-B(t)})^2 \le 1 - e^{-B(t)}$.
    Arguments and errors as for `VPSDE`.
    """

    beta_min: Scalar = eqx.field(converter=jnp.asarray)
    beta_max: Scalar = eqx.field(converter=jnp.asarray)
    schedule: str = eqx.field(static=True, default="linear")
    T: Scalar = eqx.field(converter=jnp.asarray, default=1.0)

    def diffusion(self, t):
        beta, B = self.beta_and_integral(t)
        return jnp.sqrt(beta * -jnp.expm1(-2.0 * B))

    def marginal_mean_std(self, t):
        B = self.beta_and_integral(t)[1]
        return jnp.exp(-0.5 * B), -jnp.expm1(-B)


class VESDE(AbstractLinearSDE):
    r"""Variance-exploding SDE $dx = \sqrt{d\sigma^2(t)/dt}\,dW$, geometric $\sigma(t)$.

    $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^{t/T}$, so
    $g(t) = \sigma(t)\sqrt{2\log(\sigma_{\max}/\sigma_{\min})/T}$, $m_t = 1$ and
    $s_t^2 = \sigma(t)^2 - \sigma_{\min}^2$ exactly (Song et al. drop the $\sigma_{\min}^2$).
    The prior is $N(0, \sigma_{\max}^2 I)$.

    **Arguments:**

    - `sigma_min`, `sigma_max`: $0 < \sigma_{\min} < \sigma_{\max}$.
    - `T`: final time, default 1.

    **Raises:** `ValueError` for a non-positive `sigma_min`, `sigma_min >= sigma_max` or a
    non-positive `T`.
    """

    sigma_min: Scalar = eqx.field(converter=jnp.asarray)
    sigma_max: Scalar = eqx.field(converter=jnp.asarray)
    T: Scalar = eqx.field(converter=jnp.asarray, default=1.0)

    def __check_init__(self):
        _check_positive_pair(self.sigma_min, self.sigma_max, "sigma_min", "sigma_max")
        _check_T(self.T)

    def sigma(self, t):
        r"""The noise level $\sigma(t)$."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** (t / self.T)

    def drift(self, x, t):
        return jnp.zeros_like(x)

    def diffusion(self, t):
        return self.sigma(t) * jnp.sqrt(2.0 * jnp.log(self.sigma_max / self.sigma_min) / self.T)

    def marginal_mean_std(self, t):
        var = self.sigma(t) ** 2 - self.sigma_min**2
        return jnp.ones_like(var), jnp.sqrt(jnp.maximum(var, 0.0))

    def prior_std(self):
        return self.sigma_max
