"""2D premixed H2-air flame FOM: setting, Jacobian, sampled rows, convergence, conservation,
bounds, time order."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from fom import Flame2D, InputError, NewtonOptions, get_problem, solve
from fom.solve import time_grid

MU = np.array([5.5e12, 6.0e3])
W_H2, W_O2, W_H2O = 2.016, 31.9, 18.0
Q = 9800.0


def random_state(prob, rng, negative=False):
    """A state with every field in its physical range (optionally some negative Y's, kept
    away from 0 so that central differences do not straddle the clipping of the rate)."""
    nc = prob.n_cells
    ys = [rng.uniform(0.002, 0.03, nc), rng.uniform(0.02, 0.23, nc), rng.uniform(0.0, 0.25, nc)]
    if negative:
        for y in ys[:2]:
            flip = rng.random(nc) < 0.2
            y[flip] = -y[flip]
    return np.concatenate([rng.uniform(300.0, 2500.0, nc), *ys])


def test_benchmark_setting():
    prob = get_problem("flame2d")
    assert prob.fields == ("T", "Y_H2", "Y_O2", "Y_H2O")
    assert prob.grid_shape == (32, 64) and prob.n_dofs == 8192 and prob.image_shape == (32, 64, 4)
    assert prob.dt == 1e-4 and time_grid(prob.dt, prob.t_final)[1] == 600
    assert np.array_equal(prob.param_bounds, [[2.3375e12, 6.5e12], [5.6255e3, 9.0e3]])
    assert prob.dx == pytest.approx(1.8 / 64) and prob.dy == pytest.approx(0.9 / 32)
    x0 = prob.as_fields(prob.initial_state(MU))
    assert np.all(x0[0] == 300.0) and np.all(x0[1:] == 0.0)
    # left-edge faces: y in [j dy, (j+1) dy] with dy = 0.028125; the window [0.3, 0.6]
    # covers faces 11..20 and one third of faces 10 and 21
    inflow, outer = np.array([950.0, 0.0282, 0.2259, 0.0]), np.array([300.0, 0, 0, 0])
    g = prob.left_values
    for j in range(32):
        if 11 <= j <= 20:
            expected = inflow
        elif j in (10, 21):
            expected = inflow / 3 + 2 * outer / 3
        else:
            expected = outer
        np.testing.assert_allclose(g[:, j], expected, rtol=1e-14, atol=0)
    # the inflow of every species through the left edge is that of the 0.3 cm window
    np.testing.assert_allclose(g.sum(axis=1) * prob.dy, 0.3 * inflow + 0.6 * outer, rtol=1e-13)
    again = get_problem("flame2d", **prob.config())
    assert again.config() == prob.config()
    # the face-centre rule: faces 11..20 (centres 0.31..0.58 cm) only
    centre = Flame2D(inflow_faces="centre").left_values
    assert np.array_equal(np.flatnonzero(centre[0] == 950.0), np.arange(11, 21))
    assert np.all(centre[0][np.r_[0:11, 21:32]] == 300.0)


def test_kinetics_of_one_cell():
    """Rate (2) and sources (3) at a hand-computed state: one cell, no transport."""
    prob = Flame2D(nx=2, ny=2, kappa=0.0, velocity=0.0)
    temp, y1, y2, y3 = 1500.0, 0.02, 0.2, 0.05
    x = np.repeat([temp, y1, y2, y3], 4)
    rho = 1.39e-3
    omega = MU[0] * (rho * y1 / W_H2) ** 2 * (rho * y2 / W_O2) * np.exp(-MU[1] / (8.314472 * temp))
    s_h2o = 2 * W_H2O / rho * omega
    f = prob.as_fields(prob.velocity(x, 0.0, MU))[:, 0, 0]
    np.testing.assert_allclose(f, [Q * s_h2o, -2 * W_H2 / rho * omega, -W_O2 / rho * omega,
                                   s_h2o], rtol=1e-13)


def test_kinetics_are_defined_at_unphysical_states():
    prob = Flame2D(nx=2, ny=2, kappa=0.0, velocity=0.0)
    for state in ([-50.0, 0.02, 0.2, 0.0], [0.0, 0.02, 0.2, 0.0], [1e-300, 0.02, 0.2, 0.0],
                  [1500.0, -0.01, 0.2, 0.0], [1500.0, 0.02, -0.1, 0.0]):
        x = np.repeat(state, 4)
        f = prob.velocity(x, 0.0, MU)
        jac = prob.jacobian(x, 0.0, MU).toarray()
        assert np.all(f == 0.0) and np.all(jac == 0.0), state


@pytest.mark.parametrize("seed", range(3))
def test_jacobian_matches_central_differences(seed):
    rng = np.random.default_rng(seed)
    prob = Flame2D(nx=6, ny=4)
    x = random_state(prob, rng, negative=seed > 0)
    mu = np.array([rng.uniform(2.3375e12, 6.5e12), rng.uniform(5.6255e3, 9.0e3)])
    jac = prob.jacobian(x, 0.0, mu).toarray()
    fd = np.empty_like(jac)
    for k in range(prob.n_dofs):
        h = 1e-6 * max(1.0, abs(x[k])) if k < prob.n_cells else 1e-7
        e = np.zeros(prob.n_dofs)
        e[k] = h
        fd[:, k] = (prob.velocity(x + e, 0.0, mu) - prob.velocity(x - e, 0.0, mu)) / (2 * h)
    # the reaction is on and matters: its entries are orders above the transport's
    assert np.abs(jac[:prob.n_cells, prob.n_cells:2 * prob.n_cells]).max() > 1e4
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-6 * np.abs(jac).max())
    # the structure holds every dependence: outside it the differences vanish exactly
    indptr, indices = prob.jacobian_structure()
    assert np.all(np.diff(indptr) <= 8)
    inside = np.zeros_like(jac, dtype=bool)
    inside[np.repeat(np.arange(prob.n_dofs), np.diff(indptr)), indices] = True
    assert np.all(fd[~inside] == 0.0) and np.all(jac[~inside] == 0.0)


def test_sampled_rows_bit_identical_to_full():
    prob = Flame2D(nx=10, ny=6)
    rng = np.random.default_rng(4)
    n = prob.n_dofs
    corners = [c * prob.n_cells + j * prob.nx + i for c in range(4)
               for j in (0, prob.ny - 1) for i in (0, prob.nx - 1)]
    for trial in range(20):
        x = random_state(prob, rng, negative=True)
        rows = np.unique(rng.integers(0, n, rng.integers(1, 40)))
        if trial % 2:
            rows = np.unique(np.concatenate([rows, corners]))
        op = prob.sample(rows)
        f, jac = prob.velocity(x, 0.0, MU), prob.jacobian(x, 0.0, MU).toarray()
        x_st = x[op.stencil]
        assert np.array_equal(op.velocity(x_st, 0.0, MU), f[rows])
        assert np.array_equal(op.jacobian(x_st, 0.0, MU).toarray(), jac[rows][:, op.stencil])
        assert np.array_equal(op.stencil[op.row_pos], rows)
        shuffled = rng.permutation(rows)
        assert np.array_equal(prob.velocity_rows(x, 0.0, MU, shuffled), f[shuffled])
        assert np.array_equal(prob.jacobian_rows(x, 0.0, MU, shuffled).toarray(),
                              jac[shuffled])
        assert np.array_equal(prob.stencil(rows), op.stencil)
        # the rows read nothing outside the stencil
        y = x.copy()
        rest = np.setdiff1d(np.arange(n), op.stencil)
        y[rest] = rng.uniform(-1e3, 1e3, rest.size)
        assert np.array_equal(prob.velocity_rows(y, 0.0, MU, rows), f[rows])
    full = prob.sample(np.arange(n))
    assert np.array_equal(full.indptr, prob.jacobian_structure()[0])
    assert np.array_equal(full.indices, prob.jacobian_structure()[1])


def _manufactured_error(nx, velocity):
    """Steady solution of the transport part (reaction off: A = 0) with a manufactured source;
    ``w = 1 + sin(pi x / (2 Lx)) cos(pi y / Ly)`` meets the boundary conditions (w = 1 on the
    left edge, zero normal gradient on the others). Returns the cell-weighted L2 error of the
    first field (the transport does not couple the fields)."""
    lx, ly, kappa = 1.8, 0.9, 2.0
    prob = Flame2D(nx=nx, ny=nx // 2, velocity=velocity, inflow_values=[1.0] * 4,
                   outer_values=[1.0] * 4)
    mu = np.array([0.0, 7.0e3])
    nc = prob.n_cells
    xx, yy = np.meshgrid(prob.x, prob.y)
    a, b = np.pi / (2 * lx), np.pi / ly
    h, k = np.sin(a * xx), np.cos(b * yy)
    exact = 1.0 + h * k
    # S = -(kappa Lap(w) - U w_x)
    source = kappa * (a**2 + b**2) * h * k + velocity * a * np.cos(a * xx) * k
    jac = prob.jacobian(prob.initial_state(mu), 0.0, mu).tocsc()[:nc, :nc]
    rhs = -(prob.velocity(np.zeros(prob.n_dofs), 0.0, mu)[:nc] + source.ravel())
    err = spla.spsolve(jac, rhs) - exact.ravel()
    return np.sqrt(np.mean(err**2))


def test_manufactured_solution_convergence():
    """Central diffusion is second order; upwind advection makes the operator first order
    (approached from below: first- and second-order errors partly cancel on coarse grids)."""
    grids = (32, 64, 128, 256)
    for velocity, order, tol in ((0.0, 2.0, 0.02), (50.0, 1.0, 0.15)):
        errors = np.array([_manufactured_error(nx, velocity) for nx in grids])
        observed = np.log2(errors[:-1] / errors[1:])
        print(f"U = {velocity}: errors {errors}, observed orders {observed}")
        assert abs(observed[-1] - order) < tol
        assert np.all(observed > order - 0.2)
    # the upwind order tends to 1: the finest pair is closer than the one before
    assert abs(observed[-1] - 1.0) < abs(observed[-2] - 1.0)


def _boundary_flux(prob, x):
    """Net transport flux into the domain per field, from the face fluxes (4)-(5)."""
    w = prob.as_fields(x)
    g = prob.left_values
    u, kappa = prob.velocity_x, prob.kappa
    inflow = (u * g + 2 * kappa * (g - w[:, :, 0]) / prob.dx).sum(axis=1) * prob.dy
    outflow = (u * w[:, :, -1]).sum(axis=1) * prob.dy
    return inflow - outflow


def test_transport_conserves_species_and_reaction_conserves_elements():
    prob = Flame2D(nx=12, ny=8)
    rng = np.random.default_rng(11)
    vol = prob.dx * prob.dy
    x = random_state(prob, rng)
    flux = _boundary_flux(prob, x)
    # reaction off (A = 0): the total of every field changes by its boundary flux only
    f0 = prob.as_fields(prob.velocity(x, 0.0, np.array([0.0, MU[1]])))
    total = f0.sum(axis=(1, 2)) * vol
    np.testing.assert_allclose(total, flux, rtol=1e-12, atol=1e-12 * np.abs(flux).max())
    # reaction on: hydrogen atoms (Y_H2/W_H2 + Y_H2O/W_H2O) and T - Q Y_H2O are conserved
    f = prob.as_fields(prob.velocity(x, 0.0, MU)).sum(axis=(1, 2)) * vol
    assert abs(f[1] - flux[1]) > 1e-3 * abs(flux[1])  # the reaction does change Y_H2
    h_atoms = np.array([0.0, 1 / W_H2, 0.0, 1 / W_H2O])
    assert h_atoms @ f == pytest.approx(h_atoms @ flux, rel=1e-11)
    energy = np.array([1.0, 0.0, 0.0, -Q])
    assert energy @ f == pytest.approx(energy @ flux, rel=1e-11)


def test_backward_euler_run_conserves_species_without_reaction():
    """Over a converged backward-Euler run with the reaction off, the change of each total is
    dt times the sum of the boundary fluxes at the new states (to the Newton tolerance)."""
    prob = Flame2D(nx=16, ny=8, t_final=2e-3)
    res = solve(prob, [0.0, MU[1]], options=NewtonOptions(atol=1e-11, rtol=0.0))
    vol = prob.dx * prob.dy
    totals = prob.as_fields(res.states).sum(axis=(2, 3)) * vol
    fluxes = np.array([_boundary_flux(prob, s) for s in res.states[1:]])
    change = totals[-1] - totals[0]
    np.testing.assert_allclose(change, prob.dt * fluxes.sum(axis=0), rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(change[:3]) > 0)


def test_converged_run_keeps_mass_fractions_in_bounds():
    """Backward Euler at the most reactive corner of the box, until the flame stands."""
    prob = Flame2D(nx=32, ny=16, t_final=0.03)
    res = solve(prob, [6.5e12, 5.6255e3])
    assert np.all(res.residuals[1:] <= 1e-8)
    w = prob.as_fields(res.states)
    temp, y_h2, y_o2, y_h2o = w[:, 0], w[:, 1], w[:, 2], w[:, 3]
    assert y_h2o.max() > 0.05 and temp.max() > 1500.0  # the flame burns
    tol = 1e-12
    assert y_h2.min() >= -tol and y_o2.min() >= -tol and y_h2o.min() >= -tol
    assert y_h2.max() <= 0.0282 + tol and y_o2.max() <= 0.2259 + tol
    # hydrogen atoms are transported only: bounded by the inflow's
    z_h = y_h2 / W_H2 + y_h2o / W_H2O
    assert z_h.max() <= 0.0282 / W_H2 * (1 + 1e-9)
    # T - Q Y_H2O is transported only: between the boundary values 300 and 950
    theta = temp - Q * y_h2o
    assert theta.min() >= 300.0 - 1e-7 and theta.max() <= 950.0 + 1e-7
    assert temp.min() >= 300.0 - 1e-7


def test_time_step_convergence_of_backward_euler_and_bdf2():
    """Errors at t = 2e-3 s (20 default steps) against a BDF2 reference with dt / 32."""
    prob = Flame2D(nx=8, ny=4)
    t_final = 2e-3
    opts = NewtonOptions(atol=1e-12, rtol=0.0, stol=1e-15)
    ref = solve(prob, MU, dt=t_final / 640, t_final=t_final, scheme="bdf2",
                options=opts).states[-1]
    assert prob.as_fields(ref)[3].max() > 1e-3  # the reaction runs (it alone makes H2O)
    for scheme, order in (("backward_euler", 1.0), ("bdf2", 2.0)):
        errs = np.array([
            np.linalg.norm(solve(prob, MU, dt=t_final / m, t_final=t_final, scheme=scheme,
                                 options=opts).states[-1] - ref) for m in (10, 20, 40)])
        observed = np.log2(errs[:-1] / errs[1:])
        print(f"{scheme}: errors {errs}, observed orders {observed}")
        assert abs(observed[-1] - order) < 0.1 and abs(observed[0] - order) < 0.15


def test_sparse_solver_matches_newton():
    prob = Flame2D(nx=16, ny=8, t_final=3e-3)
    opts = NewtonOptions(atol=1e-10, rtol=0.0)
    ref = solve(prob, MU, options=opts, method="generic")
    got = solve(prob, MU, options=opts, method="sparse")
    assert np.max(np.abs(got.states - ref.states)) < 1e-9
    assert got.stats["factorizations"] < got.stats["solves"] / 4


@pytest.mark.parametrize(("config", "message"), [
    ({"nx": 1}, "nx must be an integer >= 2"),
    ({"velocity": -1.0}, "velocity must be a number >= 0"),
    ({"inflow_window": [0.5, 1.2]}, "inflow_window must satisfy"),
    ({"inflow_faces": "nodes"}, "inflow_faces must be 'average' or 'centre'"),
    ({"inflow_values": [950.0, 0.02]}, "inflow_values must be a list of 4"),
    ({"molecular_weights": [2.0, 0.0, 18.0]}, "molecular_weights must be positive"),
    ({"image_shape": [64, 64, 4]}, "image_shape"),
    ({"colour": 3}, "unknown option 'colour'"),
])
def test_bad_config_is_one_line_input_error(config, message):
    with pytest.raises(InputError, match=message) as err:
        get_problem("flame2d", **config)
    assert "\n" not in str(err.value)


def test_negative_parameters_are_refused():
    prob = Flame2D(nx=4, ny=2)
    with pytest.raises(InputError, match="parameter E must be >= 0"):
        prob.velocity(prob.initial_state(MU), 0.0, [1e12, -5.0])


def test_example_config_is_the_benchmark_setting():
    from pathlib import Path

    from fom.config import load_config
    from fom.snapshots import SNAPSHOTS_SCHEMA, parameter_list, problem_from_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "flame2d.toml")
    prob = problem_from_config(cfg)
    assert prob.config() == Flame2D().config()
    sec = cfg.section("snapshots", SNAPSHOTS_SCHEMA)
    train = parameter_list(sec["train"], prob, "train")
    assert train.shape == (16, 2)
    assert sorted(set(train[:, 0])) == pytest.approx([2.3375e12, 3.725e12, 5.1125e12, 6.5e12])
    assert sorted(set(train[:, 1])) == pytest.approx([5625.5, 6750.3333, 7875.1667, 9000.0])
    for corner in ([2.3375e12, 5.6255e3], [6.5e12, 9.0e3], [2.3375e12, 9.0e3]):
        assert np.any(np.all(train == corner, axis=1))
    test = parameter_list(sec["test"], prob, "test")
    assert np.array_equal(test, [[3.0e12, 7.0e3], [5.5e12, 6.0e3]])
    assert np.array_equal(parameter_list("flame2d-test", prob, "test"), test)


@pytest.mark.parametrize("order", range(6))
def test_extrapolation_weights_are_exact_for_polynomials(order):
    from fom.sparse_newton import extrapolation_weights

    w = extrapolation_weights(order)
    rng = np.random.default_rng(order)
    coeffs = rng.standard_normal(order + 2)
    t_past = -np.arange(1, order + 2, dtype=float)  # the last order + 1 states at t = -1, -2, ..
    exact = np.polynomial.polynomial.polyval(t_past, coeffs[:-1])
    assert w @ exact == pytest.approx(coeffs[0], abs=1e-10)  # degree <= order: exact at t = 0
    one_more = np.polynomial.polynomial.polyval(t_past, coeffs)
    assert abs(w @ one_more - coeffs[0]) > 1e-3  # degree order + 1: not exact


def test_predictor_saves_iterations_and_changes_nothing_beyond_the_tolerance():
    prob = Flame2D(nx=16, ny=8, t_final=0.01)
    mu = [6.5e12, 5.6255e3]
    runs = {q: solve(prob, mu, options=NewtonOptions(atol=1e-9, rtol=0.0, predictor=q))
            for q in (0, 1, 4)}
    solves = {q: r.stats["solves"] for q, r in runs.items()}
    assert solves[4] < 0.75 * solves[1] < 0.9 * solves[0]  # 361, 493, 579
    for q in (1, 4):
        assert np.max(np.abs(runs[q].states - runs[0].states)) < 1e-8
        assert np.all(runs[q].residuals[1:] <= 1e-9)
    assert prob.newton_defaults().predictor == 4


def test_failed_predicted_step_is_retried_from_the_previous_state(monkeypatch):
    from fom import sparse_newton

    prob = Flame2D(nx=8, ny=4, t_final=2e-3)
    original = sparse_newton.SparseNewton.step
    starts: dict[int, list[np.ndarray]] = {}

    def step(self, x, hist, t, alpha0, bdt, step=0, callback=None):
        starts.setdefault(step, []).append(x.copy())
        if step > 1 and len(starts[step]) == 1:  # the first attempt of every step fails
            return 0, 1.0, False
        return original(self, x, hist, t, alpha0, bdt, step, callback)

    monkeypatch.setattr(sparse_newton.SparseNewton, "step", step)
    res = solve(prob, MU, options=NewtonOptions(atol=1e-10, rtol=0.0, predictor=2))
    monkeypatch.undo()
    ref = solve(prob, MU, options=NewtonOptions(atol=1e-10, rtol=0.0, predictor=0))
    assert np.max(np.abs(res.states - ref.states)) < 1e-9
    # step n first starts from the extrapolation, then again from x^{n-1}
    for n in range(2, 21):
        first, retry = starts[n]
        assert np.array_equal(retry, res.states[n - 1])
        assert not np.array_equal(first, retry)


def test_factorization_without_pivoting_falls_back_to_partial_pivoting(monkeypatch):
    import scipy.sparse.linalg

    from fom import sparse_newton

    calls = []
    splu = scipy.sparse.linalg.splu

    def fake_splu(a, **kw):
        calls.append(kw)
        if kw.get("diag_pivot_thresh") == 0.0:
            raise RuntimeError("Factor is exactly singular")
        return splu(a, **kw)

    monkeypatch.setattr(sparse_newton.spla, "splu", fake_splu)
    prob = Flame2D(nx=8, ny=4, t_final=1e-3)
    res = solve(prob, MU)
    assert calls[0] == prob.lu_options() and calls[1] == {"permc_spec": "COLAMD"}
    assert all(kw == {"permc_spec": "COLAMD"} for kw in calls[1:])
    monkeypatch.undo()
    ref = solve(prob, MU)
    assert np.max(np.abs(res.states - ref.states)) < 1e-7


def test_pod_deim_cpp_variant_config():
    """examples/flame2d_pod_deim_cpp.toml: the default setting with only the public C++ code's
    molecular weights, gas constant and 80 x 40 grid changed (docs/problems.md)."""
    from pathlib import Path

    from fom.config import load_config
    from fom.snapshots import problem_from_config

    root = Path(__file__).resolve().parents[1] / "examples"
    default = problem_from_config(load_config(root / "flame2d.toml")).config()
    variant = problem_from_config(load_config(root / "flame2d_pod_deim_cpp.toml")).config()
    changed = {k for k in default if default[k] != variant[k]}
    assert changed == {"nx", "ny", "image_shape", "molecular_weights", "gas_constant"}
    assert (variant["nx"], variant["ny"], variant["gas_constant"]) == (80, 40, 8.314)
    assert list(variant["molecular_weights"]) == [2.0, 32.0, 18.0]
