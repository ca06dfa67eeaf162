"""Finite groups, S_G on mixtures / samples / fields / functions, empirical scores, training."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import C_SE

from sgmteach import VPSDE, EmpiricalScore, ExactScore, GaussianMixture, ScoreMLP, ring, train
from sgmteach.symmetry import (
    CoordinateShifts,
    CyclicGroup,
    DihedralGroup,
    EquivariantScore,
    InvariantFunction,
    MatrixGroup,
    SignFlips,
    equivariance_error,
    model_form_error,
    random_action,
    symmetrize,
)

EPS32 = float(jnp.finfo(jnp.float32).eps)


@eqx.filter_jit
def batched(f, x, t):
    """`f(x_i, t)` for every row of `x`, compiled once per structure (eager vmap is slower)."""
    return jax.vmap(f, in_axes=(0, None))(x, t)


@eqx.filter_jit
def log_prob_and_score(mixture, x):
    return mixture.log_prob(x), mixture.score(x)

# Factories, so that groups built inside the x64 fixture give float64 matrices.
GROUPS = {
    "C8": lambda: CyclicGroup(8),
    "C3-two-planes": lambda: CyclicGroup(3, d=5, planes=((0, 1), (3, 4))),
    "D4": lambda: DihedralGroup(4),
    "D3-in-3d": lambda: DihedralGroup(3, d=3, planes=((1, 2),)),
    "signs3": lambda: SignFlips(3),
    "shifts4": lambda: CoordinateShifts(4),
    "matrix": lambda: MatrixGroup(np.asarray(DihedralGroup(2).matrices)),
}
ORDERS = {"C8": 8, "C3-two-planes": 3, "D4": 8, "D3-in-3d": 6, "signs3": 8, "shifts4": 4,
          "matrix": 4}


@pytest.mark.parametrize("name", GROUPS)
def test_groups_are_closed_orthogonal_and_start_at_identity(name):
    group = GROUPS[name]()
    a = np.asarray(group.matrices, np.float64)
    assert group.order == ORDERS[name] and a.shape == (group.order, group.dim, group.dim)
    np.testing.assert_allclose(a[0], np.eye(group.dim), atol=1e-7)
    # float32 entries: A A^T = I to a few ulp.
    eye = np.broadcast_to(np.eye(group.dim), a.shape)
    np.testing.assert_allclose(a @ a.transpose(0, 2, 1), eye, atol=10 * EPS32)
    MatrixGroup(a)  # raises unless the set is closed under products
    # Distinct elements: every pair differs (a group listed twice would double-count in S_G).
    flat = a.reshape(group.order, -1)
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1) + np.eye(group.order)
    assert dist.min() > 1e-3


@eqx.filter_jit
def _defects(net, group, x, t):
    """Equivariance defects of S_G net and of net itself, and the output scale: one compile."""
    sym = EquivariantScore(net, group)
    scale = jnp.max(jnp.abs(jax.vmap(sym, in_axes=(0, None))(x, t)))
    return equivariance_error(sym, group, x, t), equivariance_error(net, group, x, t), scale


@pytest.mark.parametrize("name", GROUPS)
def test_equivariant_score_is_equivariant_for_every_element(name):
    group = GROUPS[name]()
    net = ScoreMLP(group.dim, 32, 2, key=jr.key(0))
    x = 2 * jr.normal(jr.key(1), (64, group.dim))
    err, plain, scale = _defects(net, group, x, jnp.asarray(0.3))
    assert err.shape == (group.order,)
    # Float32 round-off: the orbit (d mults), a 2x32 MLP (~d + 2*32 accumulated terms per output)
    # and the average over g each contribute O(terms * eps) relative error; 100 eps * scale is a
    # generous bound (about 1e-5 relative), while a non-equivariant net is off by O(scale).
    tol = 100 * EPS32 * max(float(scale), 1.0)
    assert err.max() <= tol, err
    assert plain[0] <= tol  # the identity element
    assert plain[1:].max() > 1e-2  # the test can see a defect


@eqx.filter_jit
def _projection(net, f, group, x, t):
    once, inv = symmetrize(net, group), symmetrize(f, group, kind="function")
    field = lambda b: jax.vmap(b, in_axes=(0, None))(x, t)
    fn = lambda h, pts: jax.vmap(h)(pts)
    return (field(once), field(symmetrize(once, group)), fn(inv, x),
            fn(symmetrize(inv, group, kind="function"), x), jax.vmap(jax.vmap(inv))(group.orbit(x)))


@pytest.mark.parametrize("name", ["C8", "D4", "signs3"])
def test_symmetrize_is_a_projection_on_fields_and_functions(name):
    group = GROUPS[name]()
    net = ScoreMLP(group.dim, 32, 2, key=jr.key(0))
    x = 2 * jr.normal(jr.key(1), (32, group.dim))
    assert isinstance(symmetrize(net, group), EquivariantScore)
    f = lambda v: jnp.exp(0.3 * v @ jnp.arange(1.0, group.dim + 1)) + v[0] ** 2  # not invariant
    assert isinstance(symmetrize(f, group, kind="function"), InvariantFunction)
    once, twice, fx, ffx, f_orbit = _projection(net, f, group, x, jnp.asarray(0.5))
    # Float32 round-off, as above: 100 eps relative for fields, 1e-5 for the exp-sum.
    np.testing.assert_allclose(twice, once, atol=100 * EPS32 * float(jnp.abs(once).max()))
    np.testing.assert_allclose(ffx, fx, atol=1e-5 * float(jnp.abs(fx).max()))
    # Invariance for every element: f_inv(A_g x) = f_inv(x).
    np.testing.assert_allclose(f_orbit, jnp.broadcast_to(fx, f_orbit.shape),
                               atol=1e-5 * float(jnp.abs(fx).max()))


def test_symmetrized_mixture_is_exactly_invariant_and_idempotent(x64):
    group = DihedralGroup(4)  # rotations and reflections
    d = group.dim
    key_m, key_c, key_x = jr.split(jr.key(2), 3)
    means = 2 * jr.normal(key_m, (3, d))
    l = 0.3 * jr.normal(key_c, (3, d, d))
    covs = l @ jnp.swapaxes(l, 1, 2) + 0.2 * jnp.eye(d)[None]  # anisotropic, not invariant
    mix = GaussianMixture(jnp.array([0.5, 0.3, 0.2]), means, covs)
    sym = symmetrize(mix, group)
    assert sym.n_components == group.order * 3
    x = 2 * jr.normal(key_x, (50, d))
    lp_g, sc_g = log_prob_and_score(sym, group.orbit(x))  # (g, n), (g, n, d); row 0 is x
    lp, sc = lp_g[0], sc_g[0]
    # Float64 round-off only: the components are permuted by every A_g, exactly in exact
    # arithmetic; 1e-10 leaves 10^5 ulp for the products and the log-sum-exp.
    np.testing.assert_allclose(lp_g, jnp.broadcast_to(lp, lp_g.shape), atol=1e-10)
    np.testing.assert_allclose(sc_g, group.orbit(sc), atol=1e-10)
    np.testing.assert_allclose(log_prob_and_score(symmetrize(sym, group), x)[0], lp, atol=1e-10)
    assert jnp.max(jnp.abs(log_prob_and_score(mix, x)[0] - lp)) > 1e-2  # mix was not invariant


def test_ring_is_invariant_under_its_dihedral_group(x64):
    target = ring(8, radius=2.0, std=0.3)
    x = 3 * jr.normal(jr.key(0), (40, 2))
    lp = log_prob_and_score(symmetrize(target, DihedralGroup(8)), jnp.concatenate([x, x]))[0]
    np.testing.assert_allclose(lp[:40], log_prob_and_score(target, x)[0], atol=1e-10)


def test_symmetrized_sample_set_is_the_orbit_set_and_idempotent(x64):
    group = DihedralGroup(3)
    x = jr.normal(jr.key(0), (5, 2))
    sx = symmetrize(x, group)
    assert sx.shape == (30, 2)
    np.testing.assert_array_equal(sx[:5], x)  # group-major, identity first
    np.testing.assert_allclose(sx[5:10], x @ group.matrices[1].T)

    def as_multiset(v):
        v = np.round(np.asarray(v), 9)
        return v[np.lexsort(v.T[::-1])]

    # S_G S_G x is |G| copies of S_G x: the same empirical measure.
    np.testing.assert_allclose(as_multiset(symmetrize(sx, group)),
                               as_multiset(np.repeat(np.asarray(sx), 6, axis=0)), atol=1e-9)


def test_equivariant_score_has_the_same_dsm_loss_on_every_orbit_copy(x64):
    """Notes §3.2: |s(a A x + s A z) + A z / s| = |s(a x + s z) + z / s| for equivariant s."""
    group = CyclicGroup(8)
    score = EquivariantScore(ScoreMLP(2, 32, 2, key=jr.key(0)), group)
    x, z = jr.normal(jr.key(1), (20, 2)), jr.normal(jr.key(2), (20, 2))
    m, s, t = 0.8, 0.6, jnp.asarray(0.4)

    def loss(x0, noise):
        return jnp.sum((batched(score, m * x0 + s * noise, t) + noise / s) ** 2, axis=-1)

    base = loss(x, z)
    for gx, gz in zip(group.orbit(x), group.orbit(z), strict=True):
        np.testing.assert_allclose(loss(gx, gz), base, rtol=1e-10)


def test_pythagoras_on_an_invariant_measure(x64):
    """Notes §3.4: on an invariant measure, |s-u|^2 = |S_G s - u|^2 + |s - S_G s|^2, u equivariant.

    The orbit set of any points is an exactly invariant measure, so the identity holds to
    float64 round-off, with no Monte-Carlo error.
    """
    group, sde = CyclicGroup(8), VPSDE(0.1, 20.0)
    u = ExactScore(ring(8, radius=2.0, std=0.3), sde)
    s = ScoreMLP(2, 32, 2, key=jr.key(0))
    pts = symmetrize(ring(8, radius=2.0, std=0.3).sample(50, key=jr.key(1)), group)
    t = jnp.asarray(0.2)
    ev = lambda f: batched(f, pts, t)
    us, ss, sym = ev(u), ev(s), ev(EquivariantScore(s, group))
    lhs = jnp.mean(jnp.sum((ss - us) ** 2, -1))
    rhs = jnp.mean(jnp.sum((sym - us) ** 2, -1)) + model_form_error(s, group, pts, t)
    np.testing.assert_allclose(rhs, lhs, rtol=1e-9)
    assert model_form_error(s, group, pts, t) > 1e-4  # a random net is far from equivariant
    assert model_form_error(EquivariantScore(s, group), group, pts, t) < 1e-20


def test_empirical_scores(x64):
    sde, group = VPSDE(0.1, 20.0), CyclicGroup(4)
    data = ring(8, radius=2.0, std=0.3).sample(16, key=jr.key(0))
    x = 2 * jr.normal(jr.key(1), (30, 2))
    t = 0.05
    # The memorising score is the score of a mixture of Diracs diffused: a mixture with tiny
    # std 1e-6 agrees up to O(std^2 / s_t^2) ~ 1e-10 relative.
    dirac = GaussianMixture.isotropic(jnp.full(16, 1 / 16), data, 1e-6).diffuse(sde, t)
    exact = log_prob_and_score(dirac, x)[1]
    np.testing.assert_allclose(batched(EmpiricalScore(data, sde), x, jnp.asarray(t)), exact,
                               atol=1e-8 * float(jnp.abs(exact).max()))
    # Notes §3.3: the score of S_G pi^N is the density-weighted orbit average, is equivariant,
    # and is not the plain average S_G[score of pi^N].
    emp = EmpiricalScore(data, sde)
    sym = EmpiricalScore(symmetrize(data, group), sde)
    a = group.matrices
    gx = group.orbit(x)  # (g, n, d)
    logp = log_prob_and_score(dirac, gx)[0]  # (g, n)
    w = jax.nn.softmax(logp, axis=0)
    weighted = jnp.einsum("gn,gji,gnj->ni", w, a, emp(gx, t))
    np.testing.assert_allclose(batched(sym, x, jnp.asarray(t)), weighted,
                               atol=1e-8 * float(jnp.abs(weighted).max()))
    assert equivariance_error(sym, group, x, t).max() < 1e-8 * float(jnp.abs(weighted).max())
    naive = batched(EquivariantScore(emp, group), x, jnp.asarray(t))
    assert jnp.max(jnp.abs(naive - weighted)) > 1e-2


def test_random_action_is_uniform_over_the_group():
    group, n = CyclicGroup(8), 8000
    x = jnp.tile(jnp.array([[1.0, 0.0]]), (n, 1))
    out = random_action(group)(x, key=jr.key(0))
    # Each output is A_g x for the element g nearest to it; the angles identify g exactly.
    idx = np.rint(np.arctan2(out[:, 1], out[:, 0]) / (2 * np.pi / 8)).astype(int) % 8
    np.testing.assert_allclose(out, np.asarray(group.matrices[idx] @ x[0]), atol=1e-6)
    counts = np.bincount(idx, minlength=8)
    p = 1 / 8
    assert np.all(np.abs(counts - n * p) <= C_SE * np.sqrt(n * p * (1 - p))), counts


def test_three_models_train_through_the_same_train():
    """Augmented and equivariant models go through the plain `train`; the group is never trained."""
    sde, group = VPSDE(0.1, 20.0), CyclicGroup(4)
    data = ring(8, radius=2.0, std=0.3).sample(64, key=jr.key(0))
    net = ScoreMLP(2, 16, 1, key=jr.key(1), sde=sde)
    kw = dict(key=jr.key(2), steps=10, batch_size=32, chunk_size=10, progress=False)
    # The plain model is `train`'s own test; here the two models that use this module.
    aug, l_aug = train(net, sde, data, augment=random_action(group), **kw)
    eqv, l_eqv = train(EquivariantScore(net, group), sde, data, **kw)
    for losses in (l_aug, l_eqv):
        assert losses.shape == (10,) and np.isfinite(losses).all()
    assert eqv.group == group  # static: untouched by the optimiser
    x, t = 2 * jr.normal(jr.key(3), (32, 2)), jnp.asarray(0.5)
    scale = float(jnp.abs(batched(eqv, x, t)).max())
    assert equivariance_error(eqv, group, x, t).max() <= 100 * EPS32 * max(scale, 1.0)
    assert equivariance_error(aug, group, x, t).max() > 1e-3


def test_no_recompilation_when_values_change():
    group = CyclicGroup(8)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def evaluate(score, x, t):
        return jax.vmap(score, in_axes=(0, None))(x, t)

    for seed, t in enumerate((0.1, 0.5, 0.9)):
        score = EquivariantScore(ScoreMLP(2, 16, 1, key=jr.key(seed)), group)
        evaluate(score, jr.normal(jr.key(seed), (10, 2)), jnp.asarray(t))
    # Positive control: a new width is a new shape, which must trace again, and the guard
    # must catch it (a guard that counts nothing would let this pass).
    wider = EquivariantScore(ScoreMLP(2, 32, 1, key=jr.key(9)), group)
    with pytest.raises(RuntimeError, match="traced"):
        evaluate(wider, jr.normal(jr.key(9), (10, 2)), jnp.asarray(0.5))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CyclicGroup(0), "n must be a positive integer"),
        (lambda: CyclicGroup(4, d=1), "d must be an integer >= 2"),
        (lambda: CyclicGroup(4, d=4, planes=((0, 1), (1, 2))), "disjoint"),
        (lambda: CyclicGroup(4, planes=((0, 2),)), "planes"),
        (lambda: DihedralGroup(0), "n must be"),
        (lambda: SignFlips(0), "d must be"),
        (lambda: SignFlips(13), "max_order"),
        (lambda: CoordinateShifts(0), "d must be"),
        (lambda: MatrixGroup(np.zeros((0, 2, 2))), "at least one element"),
        (lambda: MatrixGroup(np.zeros((2, 2, 3))), r"shape \(g, d, d\)"),
        (lambda: MatrixGroup(np.array([[[1.0, 0.1], [0.0, 1.0]]])), "orthogonal"),
        (lambda: MatrixGroup(CyclicGroup(8).matrices[:5]), "closed under products"),
        (lambda: symmetrize(jnp.ones((4, 3)), CyclicGroup(4)), "d=2"),
        (lambda: symmetrize(jnp.ones(4), CyclicGroup(4)), r"shape \(n, d\)"),
        (lambda: symmetrize(ring(4, dim=3), CyclicGroup(4)), "d=3"),
        (lambda: symmetrize(ExactScore, CyclicGroup(4), kind="vector"), "kind"),
        (lambda: EquivariantScore(ScoreMLP(3, 8, 1, key=jr.key(0)), CyclicGroup(4)), "d=3"),
        (lambda: equivariance_error(lambda x, t: x, CyclicGroup(4), jnp.ones((3, 3)), 0.1),
         "d=2"),
    ],
)
def test_bad_inputs_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_types_are_rejected():
    with pytest.raises(TypeError, match="GaussianMixture, an"):
        symmetrize("ring", CyclicGroup(4))
    with pytest.raises(TypeError, match="AbstractGroup"):
        symmetrize(jnp.ones((3, 2)), np.eye(2)[None])
    with pytest.raises((TypeError, ValueError)):  # TypeError under the test suite's beartype
        CyclicGroup(2.5)
    assert SignFlips(13, max_order=2**13).order == 2**13
