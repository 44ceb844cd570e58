"""Trial manifolds (POD and decoder), the numba least-squares kernels, error measures."""

import numpy as np
import pytest
import scipy.sparse as sp

import fom
from fom.errors import InputError
from rom.kernels import (
    csr_matmat_into,
    householder_lstsq,
    normal_equations_lstsq,
)
from rom.manifolds import AffineManifold, DecoderManifold, fit_latent, pod
from rom.metrics import projection_error, relative_error, relative_error_in_time
from rom.testing import QuadraticDecoder


@pytest.fixture(scope="module")
def trajectories():
    problem = fom.Burgers1D(n_cells=64, t_final=1.4)
    mus = [[4.25, 0.015], [5.5, 0.03], [4.8, 0.022]]
    return problem, np.array([fom.solve(problem, m).states for m in mus])


def quadratic_decoder(basis, seed=0, bias=1e-2, curvature=0.05, target="deviation"):
    rng = np.random.default_rng(seed)
    n, p = basis.shape
    psi = curvature * np.linalg.qr(rng.standard_normal((n, p)))[0]
    return QuadraticDecoder(basis, psi, bias=bias * rng.standard_normal(n), target=target)


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize(("m", "p", "k"), [(64, 1, 1), (64, 5, 1), (40, 7, 8), (7, 7, 2)])
def test_least_squares_kernels_match_numpy(m, p, k):
    rng = np.random.default_rng(m + p + k)
    a, b = rng.standard_normal((m, p)), rng.standard_normal((m, k))
    ref = np.linalg.lstsq(a, b, rcond=None)[0]
    wa, wb, x = np.empty((m, p)), np.empty((m, k)), np.empty((p, k))
    a0, b0 = a.copy(), b.copy()
    assert householder_lstsq(a, b, wa, wb, x) > 0
    np.testing.assert_allclose(x, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(a, a0)  # inputs untouched
    np.testing.assert_array_equal(b, b0)
    # Q^T b: its first p rows carry the norm of the projection of b on range(A)
    np.testing.assert_allclose(np.linalg.norm(wb[:p], axis=0),
                               np.linalg.norm(a @ ref, axis=0), rtol=1e-12)
    x2 = np.empty((p, k))
    assert normal_equations_lstsq(a, b, np.empty((p, p)), x2) > 0
    np.testing.assert_allclose(x2, ref, rtol=1e-9, atol=1e-10)


def test_least_squares_kernels_flag_rank_deficiency():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20, 3))
    a[:, 2] = a[:, 0] - 2 * a[:, 1]
    b = rng.standard_normal((20, 1))
    assert householder_lstsq(a, b, np.empty((20, 3)), np.empty((20, 1)), np.empty((3, 1))) == 0
    assert normal_equations_lstsq(a, b, np.empty((3, 3)), np.empty((3, 1))) == 0


def _lstsq_both(a):
    """``(householder_lstsq, normal_equations_lstsq)`` return values for ``A x = 1``."""
    m, p = a.shape
    b = np.ones((m, 1))
    qr = householder_lstsq(a, b, np.empty((m, p)), np.empty((m, 1)), np.empty((p, 1)))
    ne = normal_equations_lstsq(a, b, np.empty((p, p)), np.empty((p, 1)))
    return qr, ne


def _with_condition(rng, m, p, cond):
    """A random m x p matrix with singular values log-spaced from 1 to ``1 / cond``."""
    u = np.linalg.qr(rng.standard_normal((m, p)))[0]
    v = np.linalg.qr(rng.standard_normal((p, p)))[0]
    return (u * np.logspace(0, -np.log10(cond), p)) @ v.T


def test_rank_test_catches_a_large_column_hiding_a_small_singular_value():
    """The unpivoted QR of ``[[1, 1e8], [0, 1], [0, 0]]`` has ``|R_11| = |R_22| = 1``, but
    ``1 / cond = 1e-16``: both kernels must call it rank deficient."""
    a = np.array([[1.0, 1e8], [0.0, 1.0], [0.0, 0.0]])
    assert 1 / np.linalg.cond(a) < 1e-15
    assert _lstsq_both(a) == (0.0, 0.0)


@pytest.mark.parametrize("cond", [1.0, 10.0, 1e3, 1e6, 1e8, 1e10])
@pytest.mark.parametrize(("m", "p"), [(50, 6), (256, 10), (9, 1)])
def test_rank_test_bounds_the_inverse_condition_number(m, p, cond):
    """``1 / (p cond) <= e <= 1 / cond`` (to round-off) for the QR kernel; the same for the
    normal equations while ``cond`` is below ``1 / sqrt(m eps)``, 0 beyond ``1 / sqrt(eps)``."""
    rng = np.random.default_rng(int(m + p + np.log10(cond)))
    a = _with_condition(rng, m, p, cond) * 10.0 ** rng.uniform(-3, 3)
    inv = 1 / np.linalg.cond(a)
    qr, ne = _lstsq_both(a)
    assert inv / p * (1 - 1e-3) <= qr <= inv * (1 + 1e-3)
    if cond <= 1e6:
        assert inv / p * (1 - 1e-3) <= ne <= inv * (1 + 1e-3)
    elif p > 1:  # cond(A^T A) >= 1e16: not numerically positive definite
        assert ne == 0.0


@pytest.mark.parametrize("cond", [1e15, 1e16, 1e18, np.inf])
def test_rank_test_refuses_numerically_rank_deficient_matrices(cond):
    rng = np.random.default_rng(5)
    a = _with_condition(rng, 40, 5, 1e300 if cond == np.inf else cond)
    if cond == np.inf:  # exactly rank deficient: one column a combination of two others
        a[:, 4] = a[:, 0] - 3 * a[:, 2]
    assert _lstsq_both(a) == (0.0, 0.0)


def test_fit_latent_falls_back_to_the_minimum_norm_step_on_rank_deficiency():
    """A linear decoder ``g(z) = A z`` with the rank-deficient ``A`` above: the fallback
    (``numpy.linalg.lstsq``, minimum norm) gives the step, not ``R^{-1} Q^T r`` (|z| ~ 1e8)."""
    a = np.array([[1.0, 1e8], [0.0, 1.0], [0.0, 0.0]])
    target = np.array([1.0, 2.0, 3.0])
    manifold = DecoderManifold(QuadraticDecoder(a, np.zeros_like(a)))
    z = fit_latent(manifold, target, np.zeros(2))
    np.testing.assert_allclose(z, np.linalg.lstsq(a, target, rcond=None)[0], rtol=1e-12)
    assert np.linalg.norm(z) < 1e-7


def test_sparse_product_matches_scipy():
    rng = np.random.default_rng(2)
    n, p = 30, 4
    mat = sp.random(n, n, density=0.2, format="csr", random_state=rng) + sp.identity(n)
    mat = sp.csr_matrix(mat)
    b, b0 = rng.standard_normal((n, p)), rng.standard_normal((n, p))
    ref = 0.7 * b0 - 0.3 * (mat @ b)
    out = np.empty((n, p))
    csr_matmat_into(mat.indptr, mat.indices, mat.data, b, -0.3, 0.7, b0, out)
    np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-14)


# ----------------------------------------------------------------------------- POD


@pytest.mark.parametrize("n_snap", [10, 200])  # fewer and more snapshots than N (QR branch)
def test_pod_matches_svd(n_snap):
    rng = np.random.default_rng(n_snap)
    x = rng.standard_normal((n_snap, 50)) @ np.diag(np.logspace(0, -3, 50))
    basis, s = pod(x)
    u, s_ref, _ = np.linalg.svd(x.T, full_matrices=False)
    np.testing.assert_allclose(s, s_ref, rtol=1e-10)
    k = 5  # well-separated leading singular vectors agree up to sign
    np.testing.assert_allclose(np.abs(basis[:, :k].T @ u[:, :k]), np.eye(k), atol=1e-8)
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-12)
    assert np.all(basis[np.argmax(np.abs(basis), axis=0), np.arange(basis.shape[1])] > 0)


@pytest.mark.parametrize("shape", [(40, 70), (300, 50)])  # X^T X smaller, X X^T smaller
def test_pod_gram_route_matches_svd(shape, monkeypatch):
    """The Gram route for a few leading modes (large problems; forced here on a small one)
    gives the SVD's leading vectors and singular values, an orthonormal basis and the same
    signs; all singular values to the route's stated accuracy."""
    import rom.manifolds as M

    rng = np.random.default_rng(shape[0])
    n_snap, n = shape
    r = min(shape)
    x = (rng.standard_normal((n_snap, r)) @ np.diag(np.logspace(0, -3, r))
         @ np.linalg.qr(rng.standard_normal((n, r)))[0].T)
    u, s_ref, _ = np.linalg.svd(x.T, full_matrices=False)
    monkeypatch.setattr(M, "GRAM_MIN_SIZE", 10)
    k = 6
    basis, s = pod(x, k)
    assert basis.shape == (n, k) and s.shape == (r,)
    np.testing.assert_allclose(s[:k], s_ref[:k], rtol=1e-12)
    eps = np.finfo(float).eps
    np.testing.assert_allclose(s, s_ref, rtol=1e-6, atol=10 * np.sqrt(eps * r) * s_ref[0])
    np.testing.assert_allclose(np.abs(basis.T @ u[:, :k]), np.eye(k), atol=1e-10)
    np.testing.assert_allclose(basis.T @ basis, np.eye(k), atol=1e-13)
    exact, _ = pod(x)
    np.testing.assert_allclose(basis, exact[:, :k], atol=1e-10)  # same signs
    # a last wanted singular value below GRAM_MIN_RATIO * s_1: the exact route, unchanged
    monkeypatch.setattr(M, "GRAM_MIN_RATIO", 0.99)
    np.testing.assert_array_equal(pod(x, k)[0], exact[:, :k])
    with pytest.raises(InputError, match="n_modes must lie"):
        pod(x, r + 1)


def test_affine_manifold_from_trajectories(trajectories):
    problem, traj = trajectories
    man = AffineManifold.from_snapshots(traj, 4)
    dev = (traj - traj[:, :1]).reshape(-1, problem.n_dofs)
    s_ref = np.linalg.svd(dev, compute_uv=False)
    np.testing.assert_allclose(man.singular_values, s_ref, rtol=1e-9, atol=1e-12 * s_ref[0])
    assert man.p == 4 and man.n_dofs == problem.n_dofs
    assert man.energy() == pytest.approx((s_ref[:4] ** 2).sum() / (s_ref**2).sum())
    p99 = AffineManifold.p_for_energy(man.singular_values, 0.99)
    assert man.energy(p99) >= 0.99 > man.energy(p99 - 1) if p99 > 1 else True
    assert AffineManifold.from_snapshots(traj, energy=0.99).p == p99
    # truncation shares the SVD
    np.testing.assert_array_equal(man.truncate(2).basis, man.basis[:, :2])
    with pytest.raises(InputError, match="p must be"):
        man.truncate(5)
    with pytest.raises(InputError, match="exactly one"):
        AffineManifold.from_snapshots(traj)
    bad = traj.copy()
    bad[0, 1, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        AffineManifold.from_snapshots(bad, 2)
    with pytest.raises(InputError, match="n_mu, n_t, N"):
        AffineManifold.from_snapshots(traj[0], 2)  # 2D needs center="none"


@pytest.mark.parametrize("center", ["initial", "none"])
def test_affine_initial_condition_and_projection(trajectories, center):
    problem, traj = trajectories
    man = AffineManifold.from_snapshots(traj, 3, center=center)
    x0 = traj[1, 0]
    x_ref, z0 = man.initial_condition(x0)
    if center == "initial":  # the basis spans deviations from x0: the ROM starts at z = 0
        np.testing.assert_array_equal(x_ref, x0)
        np.testing.assert_array_equal(z0, 0)
    else:  # z0 is the best fit of x0 in the span (least squares, computed here by numpy) and
        # x_ref the remainder, orthogonal to the basis
        z_fit = np.linalg.lstsq(man.basis, x0, rcond=None)[0]
        np.testing.assert_allclose(z0, z_fit, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(man.basis.T @ x_ref, 0, atol=1e-12)
        assert np.linalg.norm(x_ref) > 1e-3 * np.linalg.norm(x0)
    proj = man.project(traj[1], x_ref)
    # orthogonal projection: idempotent, error orthogonal to the basis, best approximation
    np.testing.assert_allclose(man.project(proj, x_ref), proj, atol=1e-12)
    np.testing.assert_allclose((traj[1] - proj) @ man.basis, 0, atol=1e-10)
    g, jac = man.decode_with_jacobian(np.ones(3))
    np.testing.assert_array_equal(jac, man.basis)
    rows = np.array([0, 5, 63])
    gr, jr = man.decode_rows(np.ones(3), rows)
    np.testing.assert_array_equal(gr, g[rows])
    np.testing.assert_array_equal(jr, jac[rows])


# ----------------------------------------------------------------------------- decoder


@pytest.mark.parametrize("target", ["deviation", "raw"])
def test_decoder_manifold_initial_condition_is_exact(trajectories, target):
    problem, traj = trajectories
    basis = AffineManifold.from_snapshots(traj, 3).basis
    dec = quadratic_decoder(basis, target=target)
    man = DecoderManifold(dec)
    x0 = traj[0, 0]
    x_ref, z0 = man.initial_condition(x0)
    # Remark 3.1 evaluated independently: z0 = h(u), u = 0 (deviation) or x0 (raw), is a
    # stationary point of |g(z) - u|^2 (the quadratic decoder's encoder is a least-squares
    # fit), and x_ref = x0 - g(z0) with g from its formula b + Phi z + Psi z^2 / 2
    u = np.zeros_like(x0) if target == "deviation" else x0
    g0 = dec.bias + dec.phi @ z0 + 0.5 * dec.psi @ (z0 * z0)
    jac0 = dec.phi + dec.psi * z0[None, :]
    grad = np.linalg.norm(jac0.T @ (g0 - u))
    assert grad <= 1e-8 * np.linalg.norm(jac0) * np.linalg.norm(g0 - u)
    assert np.linalg.norm(z0) > 1e-3                # the bias makes h(u) != 0
    np.testing.assert_allclose(x_ref, x0 - g0, rtol=0, atol=1e-13)
    assert np.abs(x_ref - x0).max() > 1e-3  # the bias makes x_ref != x0 (Remark 3.1)


def test_decoder_jacobian_and_rows(trajectories):
    _, traj = trajectories
    man = DecoderManifold(quadratic_decoder(AffineManifold.from_snapshots(traj, 3).basis))
    z = np.array([0.3, -1.2, 2.0])
    g, jac = man.decode_with_jacobian(z)
    h = 1e-6
    fd = np.column_stack([(man.decode(z + h * e) - man.decode(z - h * e)) / (2 * h)
                          for e in np.eye(3)])
    np.testing.assert_allclose(jac, fd, rtol=1e-7, atol=1e-9)
    rows = np.array([1, 7, 40])
    gr, jr = man.decode_rows(z, rows)
    np.testing.assert_allclose(gr, g[rows], rtol=1e-14)
    np.testing.assert_allclose(jr, jac[rows], rtol=1e-14)
    with pytest.raises(InputError, match="latent state"):
        man.decode(np.zeros(2))


def test_decoder_projection_encoder_and_lsq(trajectories):
    _, traj = trajectories
    dec = quadratic_decoder(AffineManifold.from_snapshots(traj, 3).basis, curvature=0.3)
    man = DecoderManifold(dec)
    x_ref, z0 = man.initial_condition(traj[2, 0])
    # states on the trial manifold are reproduced by the least-squares fit; the encoder
    # reproduces them only if g(h(0)) = 0 (no bias: the trial manifold is x0 + g)
    zs = np.array([[0.5, -0.3, 0.2], [1.0, 2.0, -1.0]])
    on = np.array([x_ref + man.decode(z) for z in zs])
    np.testing.assert_allclose(man.project(on, x_ref, "lsq"), on, atol=1e-9)
    assert np.abs(man.project(on, x_ref, "encoder") - on).max() > 1e-6
    unbiased = DecoderManifold(quadratic_decoder(dec.phi, curvature=0.3, bias=0.0))
    xr0, _ = unbiased.initial_condition(traj[2, 0])
    on0 = np.array([xr0 + unbiased.decode(z) for z in zs])
    np.testing.assert_allclose(unbiased.project(on0, xr0, "encoder"), on0, atol=1e-9)
    # off the manifold, the least-squares fit is never worse than the encoder
    e_enc = projection_error(man, traj[2], x_ref)
    e_lsq = projection_error(DecoderManifold(dec, projection="lsq"), traj[2], x_ref)
    assert 0 < e_lsq <= e_enc * (1 + 1e-12)


def test_fit_latent_recovers_latent_state(trajectories):
    _, traj = trajectories
    man = DecoderManifold(quadratic_decoder(AffineManifold.from_snapshots(traj, 3).basis,
                                            curvature=0.5))
    z_true = np.array([0.7, -0.4, 1.3])
    z = fit_latent(man, man.decode(z_true), np.zeros(3))
    np.testing.assert_allclose(z, z_true, atol=1e-9)


def test_decoder_manifold_rejects_incomplete_objects(tmp_path):
    with pytest.raises(InputError, match="lacks 'encode'"):
        DecoderManifold(type("X", (), {"p": 1, "n_dofs": 3, "decode": None,
                                       "decode_with_jacobian": None, "decode_rows": None})())
    with pytest.raises(InputError, match="does not exist"):
        DecoderManifold.load(tmp_path / "models" / "p3")


# ----------------------------------------------------------------------------- metrics


def test_relative_error_definition():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((6, 10))
    rom = ref + 1e-3 * rng.standard_normal((6, 10))
    expected = np.sqrt(((ref - rom) ** 2).sum() / (ref**2).sum())
    assert relative_error(ref, rom) == pytest.approx(expected, rel=1e-14)
    assert relative_error(ref, ref) == 0.0
    per_step = relative_error_in_time(ref, rom)
    np.testing.assert_allclose(per_step, np.linalg.norm(ref - rom, axis=1)
                               / np.linalg.norm(ref, axis=1))
    rom[2, 3] = np.nan
    assert relative_error(ref, rom) == np.inf
    with pytest.raises(InputError, match="shape"):
        relative_error(ref, rom[:5])


def test_projection_error_of_pod_is_best_linear(trajectories):
    _, traj = trajectories
    man = AffineManifold.from_snapshots(traj, 3)
    x0 = traj[0, 0]
    e = projection_error(man, traj[0])
    # any other combination of the basis vectors is worse
    rng = np.random.default_rng(4)
    coef = (traj[0] - x0) @ man.basis + 1e-3 * rng.standard_normal((traj.shape[1], 3))
    assert e < relative_error(traj[0], x0 + coef @ man.basis.T)
    assert projection_error(AffineManifold.from_snapshots(traj, 6), traj[0]) < e
