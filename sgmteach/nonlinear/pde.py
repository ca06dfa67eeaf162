r"""An exact reference for the law of any forward SDE: its Fokker–Planck equation on a grid.

The law $p_t$ of $dX = f(X, t)\,dt + g(t)\,dW$ solves
$\partial_t p = -\nabla\cdot(f p) + \tfrac12 g(t)^2\Delta p$. For a linear SDE and a Gaussian
mixture, `GaussianMixture.diffuse` gives $p_t$ in closed form; for a nonlinear drift nothing
does, and `fokker_planck` is the yardstick instead: $p_t$ and its score $\nabla\log p_t$ on a
grid in $d = 1$ or $2$, accurate to $O(h^2)$ in the spacing $h$.

**The scheme: finite volumes, Scharfetter–Gummel fluxes, zero-flux walls.** The grid points
are the centres of cells of width $h$; a cell's mass changes only through its faces,
$\dot p_i = -(J_{i+1/2} - J_{i-1/2})/h$ along each axis. The flux between two neighbours is
Scharfetter and Gummel's exponentially fitted one: with $D = g^2/2$, the drift's component
$f$ at the face and the cell Péclet number $z = fh/D$,
$$J_{i+1/2} = \tfrac{D}{h}\big[B(-z)\,p_i - B(z)\,p_{i+1}\big], \qquad B(z) = \frac{z}{e^z - 1}.$$
It is the exact flux of a steady drift–diffusion with a constant $f$ between the two
centres. As $z \to 0$ it is the central difference (second order); as $|z| \to \infty$ it is
upwinding; in between it stays accurate where a central scheme, once drift dominates diffusion
($|z| > 2$), would oscillate and go negative. Its coefficients are non-negative, so the
semi-discrete system keeps $p \ge 0$. For a Langevin drift $f = D\nabla\log\rho$ the flux
vanishes when $p_{i+1}/p_i = e^{z}$, $z = h\,\partial\log\rho$ at the face: in 1-D the
discrete stationary state is $\rho$ up to the midpoint rule's $O(h^2)$ (in 2-D, measured,
$O(h^2)$ too). The outer faces carry no flux,
so mass cannot leave: every interior flux is taken from one cell and given to its neighbour,
and the total mass changes by round-off only. The walls reflect, so the grid must cover the
density at every time (mass at the edge is refused).

**Time integration.** The grid values form an ODE system, solved by Diffrax with adaptive
PID steps (`rtol`, `atol`); `fokker_planck` says which solver and why. Diffusion makes the
system stiff: its fastest rate is about $2 d\,g^2/h^2$.

Reference for the flux: D. L. Scharfetter, H. K. Gummel, "Large-signal analysis of a silicon
Read diode oscillator", IEEE Transactions on Electron Devices 16(1), 64–77, 1969.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_time, is_concrete, positive_int
from .._types import Number
from ..mixture import GaussianMixture
from ..sde import AbstractSDE

EDGE_FRACTION = 1e-3  # largest boundary value of density0 allowed, relative to its maximum
SPACING_RTOL = 1e-4  # how unequal the grid's steps may be, relative to the spacing
RHO_CELLS = 2.0  # the spacing must be at most (smallest std of rho()) / RHO_CELLS
_SERIES_Z = 1e-2  # below this |z|, B(|z|) from its Taylor series (error < z^4 / 720)


def _bernoulli(z):
    r"""$B(z) = z/(e^z - 1)$, $B(0) = 1$: the series near 0, `expm1` elsewhere."""
    small = jnp.abs(z) < _SERIES_Z
    zs = jnp.where(small, 1.0, z)  # keeps the unused branch finite (and its gradient)
    return jnp.where(small, 1.0 - z / 2 + z**2 / 12, zs / jnp.expm1(zs))


def _sg_flux(f, D, h, p_lo, p_hi):
    r"""Scharfetter–Gummel flux from the lower cell to the upper one through their face.

    $\tfrac{D}{h}[B(-z)p_{lo} - B(z)p_{hi}]$, written with $B(-z) = z + B(z)$ as
    $f^+ p_{lo} - f^- p_{hi} + a\,(p_{lo} - p_{hi})$, $a = \tfrac{D}{h}B(|z|) \ge 0$: upwinding
    plus an exponentially fitted diffusion, every coefficient non-negative. $a$ is computed as
    $|f|/(e^{|z|} - 1)$ away from $z = 0$, which stays finite (zero) when $D \to 0$.
    """
    tiny = jnp.finfo(p_lo.dtype).tiny
    z = jnp.abs(f) * h / jnp.maximum(D, tiny)
    small = z < _SERIES_Z
    zs = jnp.where(small, 1.0, z)
    a = jnp.where(small, D / h * _bernoulli(z), jnp.abs(f) / jnp.expm1(zs))
    return jnp.maximum(f, 0.0) * p_lo - jnp.maximum(-f, 0.0) * p_hi + a * (p_lo - p_hi)


def _spacing(a):
    return (a[-1] - a[0]) / (a.shape[0] - 1)


def _face_points(axes, k):
    """The centres of the faces normal to axis `k`, shape `(*face_shape, d)`."""
    pts = [a if j != k else 0.5 * (a[:-1] + a[1:]) for j, a in enumerate(axes)]
    return jnp.stack(jnp.meshgrid(*pts, indexing="ij"), -1)


def _rhs(sde, axes, faces):
    d = len(axes)
    hs = [_spacing(a) for a in axes]

    def vf(t, p, args):
        D = 0.5 * sde.diffusion(t) ** 2
        dp = jnp.zeros_like(p)
        for k in range(d):
            pts = faces[k]
            f = jax.vmap(lambda x, k=k: sde.drift(x, t)[k])(pts.reshape(-1, d))
            f = f.reshape(pts.shape[:-1]).astype(p.dtype)
            n = p.shape[k]
            p_lo = jax.lax.slice_in_dim(p, 0, n - 1, axis=k)
            p_hi = jax.lax.slice_in_dim(p, 1, n, axis=k)
            flux = _sg_flux(f, D, hs[k], p_lo, p_hi)
            pad = [(0, 0)] * d
            pad[k] = (1, 1)  # the walls: zero flux through the outer faces
            flux = jnp.pad(flux, pad)
            dp = dp - jnp.diff(flux, axis=k) / hs[k]
        return dp

    return vf


def _derivative(u, h, axis):
    """Central differences inside, second-order one-sided at the two ends (all $O(h^2)$)."""
    n = u.shape[axis]
    s = lambda i, j: jax.lax.slice_in_dim(u, i, j, axis=axis)
    inner = (s(2, n) - s(0, n - 2)) / (2 * h)
    lo = (-3 * s(0, 1) + 4 * s(1, 2) - s(2, 3)) / (2 * h)
    hi = (3 * s(n - 1, n) - 4 * s(n - 2, n - 1) + s(n - 3, n - 2)) / (2 * h)
    return jnp.concatenate([lo, inner, hi], axis=axis)


def _score(p, axes, floor):
    """$\\nabla\\log p$ on a stack `(len(ts), *grid_shape)` of densities: last axis `d`.

    `p` is clipped at `floor` (the solver's `atol`) first: below it the solver resolves
    nothing, and clipping at the smallest float instead turned the tails' round-off (values of
    1e-9 next to clipped negatives) into scores of +-665 where the exact one is +-16.
    """
    logp = jnp.log(jnp.maximum(p, floor))
    return jnp.stack(
        [_derivative(logp, _spacing(a), axis=k + 1) for k, a in enumerate(axes)], -1
    )


@eqx.filter_jit
def _fokker_planck(sde, p0, axes, ts, rtol, atol, solver, max_steps):
    faces = [_face_points(axes, k) for k in range(len(axes))]
    sol = dfx.diffeqsolve(
        dfx.ODETerm(_rhs(sde, axes, faces)), solver, 0.0, ts[-1], None, p0,
        saveat=dfx.SaveAt(ts=ts), stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    p = sol.ys
    return p, _score(p, axes, jnp.maximum(atol, jnp.finfo(p.dtype).tiny))


def _check_grid(grid):
    """The grid as a tuple of 1-D float arrays, one per axis; `ValueError` when it is not one."""
    if isinstance(grid, tuple | list) and any(np.ndim(a) > 0 for a in grid):
        if len(grid) != 2:
            raise ValueError(
                f"grid must be a 1-D array (d = 1) or a pair (x, y) of 1-D arrays (d = 2), got "
                f"a sequence of {len(grid)} arrays."
            )
        axes = tuple(jnp.asarray(a) for a in grid)
    else:
        axes = (jnp.asarray(grid),)
    names = ("x", "y") if len(axes) == 2 else ("grid",)
    out = []
    for name, a in zip(names, axes, strict=True):
        if a.ndim != 1:
            raise ValueError(
                f"grid must be a 1-D array (d = 1) or a pair (x, y) of 1-D arrays (d = 2); "
                f"{name} has shape {a.shape}."
            )
        if a.shape[0] < 3:
            raise ValueError(f"{name} needs at least 3 points, got {a.shape[0]}.")
        if not jnp.issubdtype(a.dtype, jnp.floating):
            a = a.astype(jnp.result_type(float))
        if is_concrete(a):
            v = np.asarray(a, dtype=np.float64)
            if not np.isfinite(v).all():
                raise ValueError(f"{name} contains NaN or inf.")
            steps = np.diff(v)
            if not (steps > 0).all():
                raise ValueError(f"{name} must be strictly increasing.")
            h = (v[-1] - v[0]) / (len(v) - 1)
            # Round-off of the stored points (float32 linspace) is allowed on top of the rule.
            slack = SPACING_RTOL * h + 8 * np.finfo(np.asarray(a).dtype).eps * np.abs(v).max()
            if np.abs(steps - h).max() > slack:
                raise ValueError(
                    f"{name} must be equally spaced (to a relative {SPACING_RTOL:g}): its steps "
                    f"range from {steps.min():.6g} to {steps.max():.6g}."
                )
        out.append(a)
    return tuple(out)


def _check_density(density0, axes):
    shape = tuple(a.shape[0] for a in axes)
    p0 = jnp.asarray(density0)
    if not jnp.issubdtype(p0.dtype, jnp.floating):
        p0 = p0.astype(jnp.result_type(float))
    if p0.shape != shape:
        raise ValueError(f"density0 must have the grid's shape {shape}, got {p0.shape}.")
    if is_concrete(p0):
        v = np.asarray(p0, dtype=np.float64)
        if not np.isfinite(v).all():
            raise ValueError("density0 contains NaN or inf.")
        if (v < 0).any():
            raise ValueError(f"density0 must be non-negative, its minimum is {v.min():.3g}.")
        if not v.sum() > 0:
            raise ValueError("density0 has zero total mass (it is 0 everywhere on the grid).")
        edges = [np.take(v, [0, -1], axis=k).max() for k in range(v.ndim)]
        if max(edges) > EDGE_FRACTION * v.max():
            raise ValueError(
                f"density0 at the grid's edge is {max(edges) / v.max():.3g} of its maximum "
                f"(at most {EDGE_FRACTION:g} allowed): the walls reflect, so the grid must cover "
                "the density; widen it."
            )
    cell = 1.0
    for a in axes:
        cell = cell * _spacing(a)
    return p0 / (jnp.sum(p0) * cell)


def _check_sde(sde, axes):
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}.")
    d = len(axes)
    x = jax.ShapeDtypeStruct((d,), axes[0].dtype)
    t = jax.ShapeDtypeStruct((), axes[0].dtype)
    try:
        out = jax.eval_shape(sde.drift, x, t)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"the grid has dimension d={d}, but the SDE's drift fails on a point of shape "
            f"({d},): {e}"
        ) from e
    if jnp.shape(out) != (d,):
        raise ValueError(
            f"the grid has dimension d={d}, but the SDE's drift maps a point of shape ({d},) to "
            f"shape {tuple(jnp.shape(out))}: the SDE's dimension does not match the grid."
        )
    rho = getattr(sde, "rho", None)
    if callable(rho):
        mix = rho()
        if isinstance(mix, GaussianMixture) and is_concrete(mix.covs, mix.weights, *axes):
            covs = np.asarray(mix.covs, dtype=np.float64)[np.asarray(mix.weights) > 0]
            smallest = float(np.sqrt(np.linalg.eigvalsh(covs).min()))
            h = max(float(_spacing(np.asarray(a, dtype=np.float64))) for a in axes)
            if h > smallest / RHO_CELLS:
                raise ValueError(
                    f"the grid is too coarse for the reference: spacing {h:.4g} > half the "
                    f"smallest standard deviation {smallest:.4g} of the SDE's rho(); use more "
                    "points."
                )


def _check_ts(ts, T):
    ts = jnp.asarray(ts)
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(jnp.result_type(float))
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {ts.shape}.")
    if is_concrete(ts):
        v = np.asarray(ts, dtype=np.float64)
        if not np.isfinite(v).all():
            raise ValueError("ts contains NaN or inf.")
        if not (np.diff(v) > 0).all():
            raise ValueError(f"ts must be strictly increasing, got {v}.")
    return check_time(ts, T, "ts")


def fokker_planck(sde: AbstractSDE, density0: ArrayLike, grid, ts: ArrayLike, *,
                  rtol: Number = 1e-5, atol: Number = 1e-8, max_steps: int = 100_000,
                  solver=None) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""The law $p_t$ of the forward SDE and its score, from $p_0$, on a grid in $d = 1$ or 2.

    Solves $\partial_t p = -\nabla\cdot(f p) + \tfrac12 g(t)^2\Delta p$ by finite volumes with
    Scharfetter–Gummel fluxes and zero-flux walls (module docstring): $p \ge 0$, mass
    conserved to round-off, errors $O(h^2)$. Any `AbstractSDE` works, nonlinear drifts
    included; `sde.drift` is called on one point `(d,)` at the faces between cells.

    One compiled program per grid shape, number of times and solver: the grid's values, the
    times, the tolerances and the SDE's parameters (arrays in its pytree) are traced, so a new
    `beta_max` or `strength` never recompiles.

    **Default solver, and why: `diffrax.Tsit5`, explicit, in 1-D and 2-D.** Measured on this
    package's 2-core CPU on the tests' cases (VP SDE with $\beta$ from 0.1 to 10, $T = 1$, 4
    save times, default tolerances, float32 unless said; "first" is compile plus run; times
    vary about 2x with the machine's load):

    - 1-D, 201 points: `Tsit5` 1.3-2.4 s first, 0.03-0.06 s a run (1476 steps). `Kvaerno3`
      (implicit, dense Jacobian) did not finish in 120 s in float32 (175 of its first 300 steps
      were rejected, against 5 of 114 in float64, where its Newton iterations converge). In
      float64, `Kvaerno3` took 3.8 s first and 0.49 s a run (114 steps), `Kvaerno5` 25.6 s
      first, `Tsit5` 1.8 s and 0.05 s.
    - 2-D, 60 x 60: `Tsit5` 1.4-3.0 s first, 0.09-0.15 s a run (263 steps); `Kvaerno3`
      (float64, a dense 3600 x 3600 Jacobian) did not finish in 300 s.

    `Tsit5`'s steps are set by stability and grow as $1/h^2$ (374, 1476 and 5873 steps at
    101, 201 and 401 points in 1-D), so under that SDE the default `max_steps` allows about
    1600 points in 1-D. For finer 1-D grids pass `solver=diffrax.Kvaerno3()` with 64-bit floats
    on: an implicit step is not limited by the stiffness.

    **Arguments:**

    - `sde`: the forward SDE, an `AbstractSDE` acting on points of the grid's dimension.
    - `density0`: the initial density's values at the grid points, shape `(len(x),)` or
      `(len(x), len(y))`, non-negative. It is normalised on the grid (sum times cell volume
      equal to 1), so it need not be normalised exactly.
    - `grid`: a 1-D array of equally spaced increasing points ($d = 1$), or a pair `(x, y)` of
      them ($d = 2$; the grid is `meshgrid(x, y, indexing="ij")`), at least 3 points per axis.
      The points are cell centres; the walls lie half a spacing outside the end points.
    - `ts`: strictly increasing times in $[0, T]$ at which to return the solution (which starts
      from `density0` at $t = 0$).
    - `rtol`, `atol`: tolerances of Diffrax's PID step-size controller (keyword only, as all
      below).
    - `max_steps`: the most steps the solver may take.
    - `solver`: any Diffrax solver; `None` picks the default above.

    **Returns:** `(p, score)`: `p` of shape `(len(ts), *grid_shape)`, the densities (for each
    time, sum times cell volume is 1 up to round-off; not renormalised), and `score` of shape
    `(len(ts), *grid_shape, d)`, $\nabla\log p_t$ by central differences of $\log p$
    (second-order one-sided at the edges, so $O(h^2)$ everywhere), with $p$ clipped at `atol`
    first (values below it are the solver's noise; at least the smallest positive float).
    Where $p_t$ is negligible the score means nothing: weigh its errors by $p_t$.

    **Raises:** `ValueError` for a grid that is not a 1-D array or a pair of them, not
    increasing, not equally spaced (relative tolerance 1e-4) or with fewer than 3 points per
    axis; a `density0` of the wrong shape, negative, NaN/inf, of zero mass, or above 1e-3 of its
    maximum at the grid's edge (widen the grid); `ts` not 1-D, not increasing or outside
    $[0, T]$; an SDE whose drift does not act on points of the grid's dimension; and a grid
    too coarse for the reference: when `sde` has a method `rho()` returning a
    `GaussianMixture` (the law a Langevin drift relaxes to), a spacing above half the smallest
    standard deviation of its components (of positive weight). Value checks need concrete
    arrays and are skipped under tracing, except the range of `ts` (an `EquinoxRuntimeError`
    under `jit`). `TypeError` when `sde` is not an `AbstractSDE`.
    """
    axes = _check_grid(grid)
    _check_sde(sde, axes)
    p0 = _check_density(density0, axes)
    ts = _check_ts(ts, sde.T).astype(p0.dtype)
    if solver is None:
        solver = dfx.Tsit5()
    max_steps = positive_int("max_steps", max_steps)
    axes = tuple(a.astype(p0.dtype) for a in axes)
    return _fokker_planck(sde, p0, axes, ts, jnp.asarray(rtol, p0.dtype),
                          jnp.asarray(atol, p0.dtype), solver, max_steps)
