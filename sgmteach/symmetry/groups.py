r"""Finite groups acting linearly on $\mathbb{R}^d$, and the symmetrisation operator $S_G$.

A group here is a finite set of orthogonal matrices $\{A_g\}$ closed under products. One symbol
$S_G$ covers the three objects the papers symmetrise:

- a function: $(S_G f)(x) = \frac1{|G|}\sum_g f(A_g x)$, which is $G$-invariant;
- a vector field: $(S_G b)(x) = \frac1{|G|}\sum_g A_g^\top b(A_g x)$, which is $G$-equivariant,
  $b(A_g x) = A_g b(x)$;
- a distribution: $S_G \mu = \frac1{|G|}\sum_g (A_g)_\# \mu$; for a sample set, the orbit set
  of $|G| n$ points (the "augmented data set"), and for a Gaussian mixture, exactly, the mixture
  of the $|G| k$ rotated components.

$S_G S_G = S_G$ in all three cases. The group elements are batched with `jax.vmap`/`einsum`,
never looped over in Python.

Matrices are held as a static, hashable float64 table and enter compiled code as constants: a
group is never trained by `train` (it has no array leaves), and changing the group (its order)
is what compiles, as it should be.

`sgmteach.symmetry.symmetrize` applies $S_G$; this module holds the groups and the two averages.

References: Chen, Katsoulakis, Zhang, "Equivariant score-based generative models provably learn
distributions with symmetries efficiently" (2024); Chen, Katsoulakis, Rey-Bellet, Zhu,
"Sample Complexity of Probability Divergences under Group Symmetry" (ICML 2023).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import positive_int

ORTHOGONALITY_TOL = 1e-5  # max |A A^T - I| entry
CLOSURE_TOL = 1e-4  # Frobenius distance of a product to the nearest listed element


class _Table:
    """A float64 NumPy array held as a static field: hashable, so `filter_jit` can cache on it."""

    __slots__ = ("array", "_hash")

    def __init__(self, array):
        self.array = np.array(array, dtype=np.float64)
        self.array.flags.writeable = False
        self._hash = hash((self.array.shape, self.array.tobytes()))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (
            isinstance(other, _Table)
            and self.array.shape == other.array.shape
            and bool(np.array_equal(self.array, other.array))
        )

    def __repr__(self):
        g, d, _ = self.array.shape
        return f"<{g} matrices of shape ({d}, {d})>"


def _validate(a: np.ndarray) -> None:
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"matrices must have shape (g, d, d), got {a.shape}.")
    if a.shape[0] == 0:
        raise ValueError("a group needs at least one element (matrices has size 0 along g).")
    if a.shape[1] == 0:
        raise ValueError("matrices must act on dimension d >= 1, got d = 0.")
    if not np.isfinite(a).all():
        raise ValueError("matrices contain NaN or inf.")
    defect = np.abs(a @ np.swapaxes(a, 1, 2) - np.eye(a.shape[1])).max(axis=(1, 2))
    if defect.max() > ORTHOGONALITY_TOL:
        i = int(defect.argmax())
        raise ValueError(
            f"matrices must be orthogonal (|A A^T - I| <= {ORTHOGONALITY_TOL:g}); element {i} is "
            f"off by {defect[i]:.3g}. Only orthogonal actions keep S_G a projection."
        )


def _int(name: str, v, minimum: int) -> int:
    return positive_int(name, v, minimum)


def _check_x(x, d: int, name: str = "x"):
    if jnp.ndim(x) == 0 or jnp.shape(x)[-1] != d:
        raise ValueError(
            f"{name} must have last axis of size d={d} (the group's dimension), got shape "
            f"{tuple(jnp.shape(x))}."
        )


class AbstractGroup(eqx.Module):
    r"""A finite group of orthogonal matrices $A_g \in O(d)$ acting on $\mathbb{R}^d$.

    `matrices` has shape `(g, d, d)`, element 0 the identity for the named groups; `order`
    $= |G|$ and `dim` $= d$ are Python ints (they fix shapes). `act(x, i)` applies one element,
    `orbit(x)` all of them. The matrices are a static table, validated once (orthogonal to
    1e-5, at least one element): a group is a compile-time constant, never a trained leaf.
    """

    _table: eqx.AbstractVar[_Table]

    def __check_init__(self):
        _validate(self._table.array)

    @property
    def matrices(self) -> Float[Array, "g d d"]:
        """The group elements, shape `(g, d, d)`, in JAX's default float dtype."""
        return jnp.asarray(self._table.array, dtype=jnp.result_type(float))

    def matrices_like(self, x) -> Float[Array, "g d d"]:
        """`matrices` in the dtype of `x` when `x` is a float array."""
        a = self.matrices
        return a.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else a

    @property
    def order(self) -> int:
        return self._table.array.shape[0]

    @property
    def dim(self) -> int:
        return self._table.array.shape[1]

    def act(
        self, x: Float[Array, "*batch d"], index: int | Int[Array, ""]
    ) -> Float[Array, "*batch d"]:
        """Apply the element number `index` (may be traced) to `x`, shape `(*batch, d)`."""
        _check_x(x, self.dim)
        return x @ self.matrices_like(x)[index].T

    def orbit(self, x: Float[Array, "*batch d"]) -> Float[Array, "g *batch d"]:
        r"""All images $(A_g x)_g$, shape `(g, *batch, d)`."""
        _check_x(x, self.dim)
        return jnp.einsum("gij,...j->g...i", self.matrices_like(x), x)

    def invariant(self, fn: Callable) -> "InvariantFunction":
        r"""$S_G f = \frac1{|G|}\sum_g f\circ A_g$, the invariant average of `fn`.

        What the core's divergence estimators call to symmetrise a critic (they know a group
        only by this interface: `sgmteach._types.GroupAction`).
        """
        return InvariantFunction(fn, self)


def _rotation(d: int, planes, angle: float, reflect: bool = False) -> np.ndarray:
    a = np.eye(d)
    c, s = np.cos(angle), np.sin(angle)
    f = -1.0 if reflect else 1.0  # reflect: rotation after flipping the plane's second axis
    for i, j in planes:
        a[i, i], a[i, j], a[j, i], a[j, j] = c, -s * f, s, c * f
    return a


def _check_planes(planes, d: int) -> tuple[tuple[int, int], ...]:
    try:
        planes = tuple((int(i), int(j)) for i, j in planes)
    except (TypeError, ValueError):
        raise ValueError(f"planes must be pairs of coordinate indices, got {planes!r}.") from None
    used = [k for p in planes for k in p]
    if not planes or any(k < 0 or k >= d for k in used) or len(set(used)) != len(used):
        raise ValueError(
            f"planes must be non-empty, disjoint pairs of distinct indices in [0, {d}), got "
            f"{planes!r}."
        )
    return planes


class CyclicGroup(AbstractGroup):
    r"""$C_n$: rotations by $2\pi j/n$, $j = 0, \dots, n-1$, in each of the chosen planes.

    **Arguments:**

    - `n`: the order, an integer $\geq 1$.
    - `d`: the dimension, default 2.
    - `planes`: disjoint coordinate pairs rotated together by the same angle, default
      `((0, 1),)`: the plane of the first two coordinates, as for `ring(dim=d)`.

    **Raises:** `ValueError` for `n < 1`, `d < 2`, or planes that are not disjoint index pairs.
    """

    n: int = eqx.field(static=True)
    planes: tuple[tuple[int, int], ...] = eqx.field(static=True)
    _table: _Table = eqx.field(static=True, repr=False)

    def __init__(self, n: int | np.integer, d: int | np.integer = 2, planes=((0, 1),)):
        self.n = _int("n", n, 1)
        d = _int("d", d, 2)
        self.planes = _check_planes(planes, d)
        self._table = _Table([_rotation(d, self.planes, 2 * np.pi * j / self.n)
                              for j in range(self.n)])


class DihedralGroup(AbstractGroup):
    r"""$D_n$, of order $2n$: the $n$ rotations of `CyclicGroup(n)` and $n$ reflections.

    The reflections are the rotations composed with the flip of each plane's second axis, so
    `ring(k)` is $D_k$-invariant. Arguments and errors as for `CyclicGroup`.
    """

    n: int = eqx.field(static=True)
    planes: tuple[tuple[int, int], ...] = eqx.field(static=True)
    _table: _Table = eqx.field(static=True, repr=False)

    def __init__(self, n: int | np.integer, d: int | np.integer = 2, planes=((0, 1),)):
        self.n = _int("n", n, 1)
        d = _int("d", d, 2)
        self.planes = _check_planes(planes, d)
        angles = [2 * np.pi * j / self.n for j in range(self.n)]
        self._table = _Table([_rotation(d, self.planes, a) for a in angles]
                             + [_rotation(d, self.planes, a, reflect=True) for a in angles])


class SignFlips(AbstractGroup):
    r"""$\{\pm1\}^d$: every diagonal sign matrix, $|G| = 2^d$.

    **Arguments:**

    - `d`: the dimension, an integer $\geq 1$.
    - `max_order`: refuse groups larger than this (default $2^{12} = 4096$); every symmetrised
      evaluation costs $|G|$ model calls. (Keyword only.)

    **Raises:** `ValueError` for `d < 1` or $2^d >$ `max_order`.
    """

    _table: _Table = eqx.field(static=True, repr=False)

    def __init__(self, d: int | np.integer, *, max_order: int | np.integer = 4096):
        d = _int("d", d, 1)
        if 2**d > max_order:
            raise ValueError(
                f"SignFlips(d={d}) has 2^{d} = {2**d} elements, more than max_order={max_order}; "
                f"pass max_order={2**d} to accept it (each symmetrised call costs {2**d} "
                f"evaluations)."
            )
        bits = (np.arange(2**d)[:, None] >> np.arange(d)[None]) & 1  # (g, d), row 0 = identity
        self._table = _Table(np.eye(d)[None] * (1.0 - 2.0 * bits)[:, None, :])


class CoordinateShifts(AbstractGroup):
    r"""The $d$ cyclic shifts of the coordinates, $(A_k x)_i = x_{(i + k) \bmod d}$.

    **Raises:** `ValueError` for `d < 1`.
    """

    _table: _Table = eqx.field(static=True, repr=False)

    def __init__(self, d: int | np.integer):
        d = _int("d", d, 1)
        self._table = _Table([np.roll(np.eye(d), k, axis=1) for k in range(d)])


class MatrixGroup(AbstractGroup):
    r"""Any finite group given by its list of orthogonal matrices.

    **Arguments:** `matrices`, shape `(g, d, d)`, concrete (NumPy or JAX).

    **Raises:** `ValueError` when the shape is wrong, the list is empty, a matrix is not
    orthogonal (to 1e-5), or the set is not closed under products (to 1e-4 in Frobenius norm:
    a finite closed set of invertible matrices is a group). The closure check costs
    $O(|G|^3 d^2)$.
    """

    _table: _Table = eqx.field(static=True, repr=False)

    def __init__(self, matrices):
        a = np.asarray(matrices, dtype=np.float64)
        _validate(a)
        g, d, _ = a.shape
        flat = a.reshape(g, -1)
        sq = np.sum(flat**2, axis=1)
        for i in range(g):  # |P - Q|_F^2 = |P|^2 + |Q|^2 - 2<P, Q>, all products P = A_i A_j
            prods = (a[i] @ a).reshape(g, -1)
            dist2 = np.sum(prods**2, axis=1)[:, None] + sq[None] - 2 * prods @ flat.T  # (g, g)
            worst = np.sqrt(np.maximum(dist2.min(axis=1), 0.0)).max()
            if worst > CLOSURE_TOL:
                raise ValueError(
                    f"matrices are not closed under products: element {i} times some element is "
                    f"{worst:.3g} away from every listed matrix; list the whole group."
                )
        self._table = _Table(a)


class EquivariantScore(eqx.Module):
    r"""The group average $S_G s(x, t) = \frac1{|G|}\sum_g A_g^\top s(A_g x, t)$ of a model.

    Exactly $G$-equivariant by construction, for any `model`; the $|G|$ calls are one
    `jax.vmap`. Extra positional arguments (the time `t`) are passed unchanged: time is
    invariant. `symmetrize(model, group)` returns this.

    **Arguments:** `model`, a callable `(x, *args) -> s` with shapes `(d,) -> (d,)`
    (`ScoreMLP`, `ExactScore`, any vector field); `group`, an `AbstractGroup`.

    **Raises:** `ValueError` when the model's `dim` differs from the group's.
    """

    model: Callable
    group: AbstractGroup

    def __check_init__(self):
        _check_wrapped(self.model, self.group)

    @property
    def dim(self) -> int:
        return self.group.dim

    def __call__(self, x: Float[Array, " d"], *args) -> Float[Array, " d"]:
        s = jax.vmap(lambda xg: self.model(xg, *args))(self.group.orbit(x))  # (g, d)
        return jnp.einsum("gji,gj->i", self.group.matrices_like(s), s) / self.group.order


class InvariantFunction(eqx.Module):
    r"""The group average $S_G f(x) = \frac1{|G|}\sum_g f(A_g x)$: an invariant function.

    `f` may return any pytree of arrays (a scalar critic, features); extra positional arguments
    are passed unchanged. `symmetrize(f, group, kind="function")` returns this.
    """

    fn: Callable
    group: AbstractGroup

    def __check_init__(self):
        _check_wrapped(self.fn, self.group)

    @property
    def dim(self) -> int:
        return self.group.dim

    def __call__(self, x: Float[Array, " d"], *args):
        out = jax.vmap(lambda xg: self.fn(xg, *args))(self.group.orbit(x))
        return jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), out)


def _check_wrapped(fn, group):
    if not isinstance(group, AbstractGroup):
        raise TypeError(f"group must be an AbstractGroup, got {type(group).__name__}.")
    if not callable(fn):
        raise TypeError(f"expected a callable model, got {type(fn).__name__}.")
    d = getattr(fn, "dim", None)
    if isinstance(d, int) and d != group.dim:
        raise ValueError(f"the model acts on d={d} but the group on d={group.dim}.")


