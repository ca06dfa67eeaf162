r"""Lipschitz discriminators by weight projection: exact spectral norm, or the authors' Frobenius.

A ReLU network $\phi(x) = W_\ell\,\sigma(\cdots\sigma(W_1x + b_1)\cdots) + b_\ell$ with a
1-Lipschitz activation has $\mathrm{Lip}(\phi) \le \prod_k \|W_k\|_2$. Setting every layer to
$W_k \leftarrow W_k\,L^{1/\ell}/\|W_k\|$ after each optimiser step (and at initialisation; biases
are free), as the GPA code does, therefore bounds $\mathrm{Lip}(\phi) \le L$ when $\|\cdot\|$
is the spectral norm $\|\cdot\|_2$ (computed exactly, by SVD: the layers are at most a few
hundred wide).

The authors' code (`construct_NN.spectral_normalization`) computes `tf.norm(W, 2)`, which with
`axis=None` is the **Frobenius** norm of the flattened matrix (addendum B §3.1 item 2). Since
$\|W\|_2 \le \|W\|_F$ the bound $\le L$ still holds, but far from tightly: a random 32 x 32
layer has $\|W\|_2 / \|W\|_F \approx 0.3$, so the nominal $L$ overstates the real speed limit.
`norm="frobenius"` reproduces the authors' runs; `norm="spectral"` (the default) is the
theory's $\Gamma_L$. The gap is widest at initialisation (a random 3 x 32 discriminator's
spectral bound is about $0.09L$ under the Frobenius projection); training that aligns the
layers to rank one (a one-direction problem, such as translated Gaussians) closes it, since the
two norms agree on rank-one matrices, while a field that must turn (several modes) keeps it
open (tutorial 08 measures both).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import positive_int
from .._types import Key

NORMS = ("spectral", "frobenius")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f'norm must be "spectral" (exact, the default) or "frobenius" (as in '
                         f"the authors' code), got {norm!r}.")
    return norm


def discriminator(dim: int, width: int = 32, depth: int = 3, *, key: Key) -> eqx.nn.MLP:
    """The GPA discriminator: a ReLU MLP `(dim,) -> ()`, `depth` hidden layers of `width`
    (the authors' 3 x 32), not yet projected."""
    return eqx.nn.MLP(positive_int("dim", dim), "scalar", positive_int("width", width),
                      positive_int("depth", depth), jax.nn.relu, key=key)


def _matrix_norm(w, norm):
    if norm == "spectral":
        return jnp.linalg.svd(w, compute_uv=False)[0]
    return jnp.sqrt(jnp.sum(w**2))


def layer_norms(mlp: eqx.nn.MLP, norm: str = "spectral") -> Float[Array, " layers"]:
    """The norm (`"spectral"` or `"frobenius"`) of each weight matrix, input layer first."""
    check_norm(norm)
    return jnp.stack([_matrix_norm(layer.weight, norm) for layer in mlp.layers])


def lipschitz_bound(mlp: eqx.nn.MLP) -> Float[Array, ""]:
    r"""$\prod_k\|W_k\|_2$, an upper bound of the network's Lipschitz constant (1-Lipschitz
    activations); the true constant may be smaller."""
    return jnp.prod(layer_norms(mlp, "spectral"))


def project(mlp: eqx.nn.MLP, lipschitz, norm: str = "spectral") -> eqx.nn.MLP:
    r"""Every weight set to $W_k L^{1/\ell}/\|W_k\|$: the hard projection of the GPA code.

    With `norm="spectral"` the result has $\prod_k\|W_k\|_2 = L$, so $\mathrm{Lip} \le L$; with
    `"frobenius"` (the authors' code) $\prod_k\|W_k\|_F = L$ and the spectral product is
    smaller. `lipschitz` may be traced. Used inside compiled loops: no validation here.
    """
    check_norm(norm)
    per_layer = jnp.asarray(lipschitz) ** (1.0 / len(mlp.layers))
    weights = [layer.weight * (per_layer / _matrix_norm(layer.weight, norm))
               for layer in mlp.layers]
    return eqx.tree_at(lambda m: [layer.weight for layer in m.layers], mlp, weights)
