"""1D Burgers FOM: flux and Jacobian exactness, row restriction, conservation, time order."""

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from numerics import central_difference_jacobian

import fom
from fom.burgers1d import godunov_flux
from fom.burgers1d_numpy import Burgers1DNumPy
from fom.tridiagonal import solve_tridiagonal

MU = np.array([4.3, 0.021])


def random_state(rng, n, lo=-3.0, hi=5.5, gap=1e-3):
    """Random state with shocks and sign changes, kept ``gap`` away from the flux's kinks."""
    while True:
        w = rng.uniform(lo, hi, n)
        ul = np.concatenate(([MU[0]], w))
        ur = np.concatenate((w, [w[-1]]))
        if np.all(np.abs(w) > gap) and np.all(np.abs(ul + ur) > gap):
            return w


@pytest.mark.parametrize(
    ("ul", "ur", "flux", "dl", "dr"),
    [
        (2.0, 1.0, 2.0, 2.0, 0.0),     # shock moving right: upwind is left
        (1.0, -3.0, 4.5, 0.0, -3.0),   # shock moving left: upwind is right
        (1.0, 2.0, 0.5, 1.0, 0.0),     # rarefaction, both positive
        (-2.0, -1.0, 0.5, 0.0, -1.0),  # rarefaction, both negative
        (-1.0, 2.0, 0.0, 0.0, 0.0),    # transonic rarefaction: sonic flux 0
        (3.0, 3.0, 4.5, 3.0, 0.0),     # constant state
    ],
)
def test_godunov_flux_cases(ul, ur, flux, dl, dr):
    f, a, b = godunov_flux(ul, ur)
    assert (f, a, b) == pytest.approx((flux, dl, dr), abs=1e-15)
    # the derivatives are those of the flux's actual one-sided branch
    h = 1e-7
    assert (godunov_flux(ul + h, ur)[0] - godunov_flux(ul - h, ur)[0]) / (2 * h) == \
        pytest.approx(dl, abs=1e-6)
    assert (godunov_flux(ul, ur + h)[0] - godunov_flux(ul, ur - h)[0]) / (2 * h) == \
        pytest.approx(dr, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_jacobian_matches_central_differences(seed):
    rng = np.random.default_rng(seed)
    prob = fom.Burgers1D(n_cells=64)
    w = random_state(rng, prob.n_dofs)
    assert np.any(np.diff(w) < 0) and np.any(w < 0) and np.any(w > 0)
    jac = prob.jacobian(w, 0.0, MU).toarray()
    fd = central_difference_jacobian(lambda v: prob.velocity(v, 0.0, MU), w)
    rel = np.linalg.norm(fd - jac) / np.linalg.norm(jac)
    assert rel < 1e-6


def test_jacobian_is_tridiagonal_csr():
    prob = fom.Burgers1D(n_cells=32)
    jac = prob.jacobian(np.linspace(-1, 2, 32), 0.0, MU)
    assert jac.format == "csr" and jac.shape == (32, 32)
    dense = jac.toarray()
    assert np.all(np.triu(dense, 2) == 0) and np.all(np.tril(dense, -2) == 0)


def test_row_restricted_velocity_and_jacobian_equal_full_rows():
    rng = np.random.default_rng(7)
    prob = fom.Burgers1D(n_cells=50)
    w = rng.uniform(-2, 5, 50)
    rows = np.array([0, 3, 17, 18, 30, 49])
    f = prob.velocity(w, 0.0, MU)
    jac = prob.jacobian(w, 0.0, MU)
    assert np.array_equal(prob.velocity_rows(w, 0.0, MU, rows), f[rows])
    assert np.array_equal(prob.jacobian_rows(w, 0.0, MU, rows).toarray(), jac[rows].toarray())


def test_rows_read_only_their_stencil():
    rng = np.random.default_rng(8)
    prob = fom.Burgers1D(n_cells=40)
    w = rng.uniform(0.5, 5, 40)
    rows = np.array([0, 10, 39])
    stencil = prob.stencil(rows)
    assert stencil.tolist() == [0, 1, 9, 10, 11, 38, 39]
    scrambled = w.copy()
    outside = np.setdiff1d(np.arange(40), stencil)
    scrambled[outside] = np.nan
    assert np.array_equal(prob.velocity_rows(scrambled, 0.0, MU, rows),
                          prob.velocity_rows(w, 0.0, MU, rows))
    assert np.array_equal(prob.jacobian_rows(scrambled, 0.0, MU, rows).toarray(),
                          prob.jacobian_rows(w, 0.0, MU, rows).toarray())


def test_discrete_conservation_per_step():
    """dx * sum(w^n - w^{n-1}) = dt * (F_in - F_out + dx * sum(source)) at every step."""
    prob = fom.Burgers1D()
    res = fom.solve(prob, MU)
    w_new, w_old = res.states[1:], res.states[:-1]
    f_in = np.array([godunov_flux(MU[0], w[0])[0] for w in w_new])
    f_out = 0.5 * w_new[:, -1] ** 2
    change = prob.dx * (w_new - w_old).sum(axis=1)
    balance = prob.dt * (f_in - f_out + prob.dx * prob.source(MU).sum())
    assert np.max(np.abs(change - balance)) < 1e-10
    assert np.max(np.abs(change)) > 1e-2  # the balance is not trivially zero


@pytest.mark.parametrize(("scheme", "order"), [("backward_euler", 1.0), ("bdf2", 2.0)])
def test_time_order_of_accuracy(scheme, order):
    """Smooth setting: inflow equals the initial state, so only the smooth source drives w."""
    prob = fom.Burgers1D(n_cells=64, w_init=4.3, t_final=2.0)
    ref = fom.solve(prob, MU, dt=2.0 / 2560, scheme="bdf2").states[-1]
    errs = [np.linalg.norm(fom.solve(prob, MU, dt=dt, scheme=scheme).states[-1] - ref)
            for dt in (0.1, 0.05, 0.025)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - order) < 0.15), rates


def test_bdf2_starts_with_one_backward_euler_step():
    prob = fom.Burgers1D(n_cells=32, t_final=0.7)
    be = fom.solve(prob, MU, scheme="backward_euler")
    bdf = fom.solve(prob, MU, scheme="bdf2")
    assert np.array_equal(be.states[1], bdf.states[1])
    assert not np.allclose(be.states[2], bdf.states[2], atol=1e-12)


@pytest.mark.parametrize("scheme", ["backward_euler", "bdf2"])
def test_compiled_and_generic_newton_agree(scheme):
    prob = fom.Burgers1D(n_cells=64, t_final=7.0)
    a = fom.solve(prob, MU, scheme=scheme)
    b = fom.solve(prob, MU, scheme=scheme, method="generic")
    assert np.max(np.abs(a.states - b.states)) < 1e-12
    assert np.array_equal(a.iterations, b.iterations)


def test_independent_numpy_implementation_agrees():
    prob, ref = fom.Burgers1D(), Burgers1DNumPy()
    for mu in ([4.3, 0.021], [5.15, 0.0285]):
        a = fom.solve(prob, mu)
        b = fom.solve(ref, mu)
        assert a.states.shape == (501, 256)
        assert np.max(np.abs(a.states - b.states)) < 1e-10
        assert a.residuals.max() < 1e-10


def test_design_settings():
    prob = fom.Burgers1D()
    assert prob.n_dofs == 256 and prob.dx == pytest.approx(100 / 256)
    assert prob.x[0] == pytest.approx(50 / 256) and prob.x[-1] == pytest.approx(100 - 50 / 256)
    res = fom.solve(prob, MU)
    assert res.t.shape == (501,) and res.t[-1] == pytest.approx(35.0)
    assert np.all(res.states[0] == 1.0)
    assert res.states[-1, 0] == pytest.approx(MU[0], rel=0.01)  # inflow reached the first cell


def test_newton_failure_reports_step_and_keeps_partial_result():
    prob = fom.Burgers1D(n_cells=32, t_final=3.5)
    opts = fom.NewtonOptions(max_iter=1)
    with pytest.raises(fom.ConvergenceError) as info:
        fom.solve(prob, MU, options=opts)
    err = info.value
    assert err.step == 1 and err.time == pytest.approx(0.07)
    assert "step 1" in str(err) and "residual" in str(err)
    assert err.partial.states.shape == (1, 32)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 41])
def test_tridiagonal_solver_with_pivoting(n):
    rng = np.random.default_rng(n)
    dl, d, du = rng.normal(size=n - 1), rng.normal(size=n) * 0.1, rng.normal(size=n - 1)
    b = rng.normal(size=n)
    ab = np.zeros((3, n))
    ab[0, 1:], ab[1], ab[2, :-1] = du, d, dl
    expected = sla.solve_banded((1, 1), ab, b)
    x = b.copy()
    assert solve_tridiagonal(dl.copy(), d.copy(), du.copy(), x)
    assert np.allclose(x, expected, rtol=1e-10, atol=1e-12)


def test_tridiagonal_solver_reports_singular_matrix():
    z = np.zeros(3)
    assert not solve_tridiagonal(np.zeros(2), z.copy(), np.zeros(2), np.ones(3))


def test_bad_parameters_and_states():
    prob = fom.Burgers1D(n_cells=16)
    with pytest.raises(fom.InputError, match="takes 2 parameters"):
        prob.initial_state([4.3])
    with pytest.raises(fom.InputError, match="finite"):
        fom.solve(prob, [np.nan, 0.02])
    with pytest.raises(fom.InputError, match="outside its range"):
        prob.check_mu([9.0, 0.02], check_bounds=True)
    with pytest.raises(fom.InputError, match="shape"):
        prob.check_state(np.zeros(3))
    with pytest.raises(fom.InputError, match="whole number of steps"):
        fom.solve(prob, MU, dt=0.07, t_final=1.0)
    with pytest.raises(fom.InputError, match="unknown time scheme"):
        fom.solve(prob, MU, scheme="rk4")
    with pytest.raises(fom.InputError, match="image_shape"):
        fom.Burgers1D(n_cells=16, image_shape=(3, 3, 1))
    with pytest.raises(fom.InputError, match="unknown problem"):
        fom.get_problem("heat3d")


def test_fused_velocity_jacobian_fills_the_declared_csr_structure():
    rng = np.random.default_rng(3)
    prob = fom.Burgers1D(n_cells=20)
    w = rng.uniform(-2, 5, 20)
    indptr, indices = prob.jacobian_structure()
    f, data = np.empty(20), np.empty(indices.size)
    prob.velocity_jacobian_into(w, 0.0, MU, f, data)
    assert np.array_equal(f, prob.velocity(w, 0.0, MU))
    fused = sp.csr_matrix((data, indices, indptr), shape=(20, 20)).toarray()
    expected = Burgers1DNumPy(n_cells=20).jacobian(w, 0.0, MU).toarray()
    assert np.allclose(fused, expected, rtol=0, atol=1e-13)
    assert np.count_nonzero(fused) > 20 and np.abs(fused).max() > 0.1
    # a subclass that redefines the model does not inherit the fused kernel
    assert Burgers1DNumPy().jacobian_structure() is None
