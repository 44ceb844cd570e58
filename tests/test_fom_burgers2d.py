"""2D viscous Burgers FOM: Jacobian = finite differences, restricted rows and sampled operators
bit-identical to the full rows, numba kernels = the independent NumPy/SciPy implementation,
time order, the problem's settings."""

import numpy as np
import pytest
from numerics import central_difference_jacobian

import fom
from fom.burgers2d import Burgers2D
from fom.burgers2d_numpy import Burgers2DNumPy
from fom.solve import time_grid

MU = np.array([1.0])


def random_state(rng, prob, scale=1.0):
    """A random state with both signs of u and v (the upwinding never switches side)."""
    return scale * rng.standard_normal(prob.n_dofs)


def boundary_adjacent_rows(prob):
    """Rows of both fields whose node touches the boundary (corners and edges)."""
    m = prob.m
    ij = [(0, 0), (m - 1, 0), (0, m - 1), (m - 1, m - 1), (0, m // 2), (m // 2, 0),
          (m - 1, m // 2), (m // 2, m - 1)]
    k = np.array([j * m + i for i, j in ij])
    return np.concatenate([k, m * m + k])


def test_design_settings():
    prob = fom.get_problem("burgers2d")
    assert prob.n == 60 and prob.m == 58 and prob.n_dofs == 6728
    assert prob.fields == ("u", "v") and prob.grid_shape == (58, 58)
    assert prob.image_shape == (58, 58, 2)
    assert prob.reynolds == 1e4 and prob.t_final == 2.0
    assert time_grid(prob.dt, prob.t_final)[1] == 1500
    assert prob.param_bounds.tolist() == [[0.85, 1.15]]
    opts = prob.newton_defaults()
    assert (opts.atol, opts.rtol, opts.stol) == (1e-8, 0.0, 0.0)
    np.testing.assert_array_equal(prob.grid["x"], np.arange(1, 59) / 59)
    np.testing.assert_array_equal(prob.grid["y"], np.arange(1, 59) / 59)
    for n in (128, 256):  # 512^2 runs in benchmarks/fom_speed.py
        assert Burgers2D(n=n).n_dofs == 2 * (n - 2) ** 2


def test_initial_state_layout():
    """u = v = mu sin(2 pi x) sin(2 pi y) for x, y <= 0.5, x fastest in each component."""
    prob = Burgers2D(n=11)  # nodes at multiples of 0.1: x = 0.5 is a node
    x0 = prob.initial_state([0.9])
    m = prob.m
    u = x0[:m * m].reshape(m, m)  # (y, x)
    assert np.array_equal(x0[:m * m], x0[m * m:])
    for j in range(m):
        for i in range(m):
            xi, yj = (i + 1) / 10, (j + 1) / 10
            want = 0.9 * np.sin(2 * np.pi * xi) * np.sin(2 * np.pi * yj) \
                if xi <= 0.5 and yj <= 0.5 else 0.0
            assert u[j, i] == pytest.approx(want, abs=1e-15)
    assert u[0, 1] != 0.0 and u[0, 6] == 0.0  # x = 0.2 inside, x = 0.7 outside


@pytest.mark.parametrize("seed", range(3))
def test_jacobian_matches_central_differences(seed):
    rng = np.random.default_rng(seed)
    prob = Burgers2D(n=9, reynolds=50.0)  # a moderate Re so diffusion and convection both count
    x = random_state(rng, prob)
    jac = prob.jacobian(x, 0.0, MU).toarray()
    fd = central_difference_jacobian(lambda v: prob.velocity(v, 0.0, MU), x)
    assert np.linalg.norm(fd - jac) / np.linalg.norm(jac) < 1e-6
    assert np.abs(fd - jac).max() / np.abs(jac).max() < 1e-6


def test_jacobian_structure_and_fused_kernel():
    prob = Burgers2D(n=8)
    indptr, indices = prob.jacobian_structure()
    m = prob.m
    # six entries per row, one fewer per boundary neighbour
    i = np.tile(np.arange(m), m)
    j = np.repeat(np.arange(m), m)
    per_node = 6 - (i == 0) - (i == m - 1) - (j == 0) - (j == m - 1)
    np.testing.assert_array_equal(np.diff(indptr), np.tile(per_node, 2))
    for r in range(prob.n_dofs):  # sorted, containing the diagonal
        cols = indices[indptr[r]:indptr[r + 1]]
        assert np.all(np.diff(cols) > 0) and r in cols
    rng = np.random.default_rng(3)
    x = random_state(rng, prob)
    f, data = np.empty(prob.n_dofs), np.full(indices.size, np.nan)
    prob.velocity_jacobian_into(x, 0.0, MU, f, data)
    assert np.array_equal(f, prob.velocity(x, 0.0, MU))
    jac = prob.jacobian(x, 0.0, MU)
    assert np.array_equal(data, jac.data) and np.array_equal(indices, jac.indices)


@pytest.mark.parametrize("seed", range(3))
def test_numba_kernels_equal_the_numpy_implementation(seed):
    rng = np.random.default_rng(seed)
    prob, ref = Burgers2D(n=13), Burgers2DNumPy(n=13)
    x = random_state(rng, prob)
    f, g = prob.velocity(x, 0.0, MU), ref.velocity(x, 0.0, MU)
    assert np.abs(f - g).max() <= 1e-13 * np.abs(g).max()
    a, b = prob.jacobian(x, 0.0, MU), ref.jacobian(x, 0.0, MU)
    assert abs(a - b).max() <= 1e-13 * abs(b).max()


def test_restricted_rows_are_bit_identical_to_full_rows():
    rng = np.random.default_rng(11)
    prob = Burgers2D(n=10)
    x = random_state(rng, prob)
    f = prob.velocity(x, 0.0, MU)
    jac = prob.jacobian(x, 0.0, MU)
    for trial in range(6):
        rows = np.unique(np.concatenate([
            rng.choice(prob.n_dofs, size=1 + 5 * trial, replace=False),
            rng.choice(boundary_adjacent_rows(prob), size=4, replace=False)]))
        assert np.array_equal(prob.velocity_rows(x, 0.0, MU, rows), f[rows])
        jr = prob.jacobian_rows(x, 0.0, MU, rows)
        full = jac[rows]
        assert jr.shape == (rows.size, prob.n_dofs)
        assert np.array_equal(jr.indptr, full.indptr)
        assert np.array_equal(jr.indices, full.indices)
        assert np.array_equal(jr.data, full.data)


def test_rows_read_only_their_stencil():
    rng = np.random.default_rng(5)
    prob = Burgers2D(n=10)
    x = random_state(rng, prob)
    rows = np.concatenate([boundary_adjacent_rows(prob), [27, 64 + 27]])
    st = prob.stencil(rows)
    assert np.all(np.isin(rows, st))
    y = np.full(prob.n_dofs, np.nan)
    y[st] = x[st]
    assert np.array_equal(prob.velocity_rows(y, 0.0, MU, rows), prob.velocity(x, 0.0, MU)[rows])
    assert np.array_equal(prob.jacobian_rows(y, 0.0, MU, rows).data,
                          prob.jacobian(x, 0.0, MU)[rows].data)
    # the stencil of an interior u row: its 5-point neighbourhood in u and v at the node
    m = prob.m
    k = 3 * m + 4
    assert prob.stencil(np.array([k])).tolist() == [k - m, k - 1, k, k + 1, k + m, m * m + k]


def test_bad_config_and_inputs():
    with pytest.raises(fom.InputError, match="burgers2d: n must be an integer >= 3"):
        Burgers2D(n=2)
    with pytest.raises(fom.InputError, match="burgers2d: n must be an integer >= 3"):
        Burgers2D(n=60.5)
    with pytest.raises(fom.InputError, match="burgers2d: reynolds must be a positive number"):
        Burgers2D(reynolds=-1.0)
    with pytest.raises(fom.InputError, match="unknown option 'nx'"):
        fom.get_problem("burgers2d", nx=60)
    prob = Burgers2D(n=6)
    with pytest.raises(fom.InputError, match="takes 1 parameters"):
        prob.initial_state([1.0, 2.0])
    with pytest.raises(fom.InputError, match=r"rows must lie in \[0, 32\)"):
        prob.velocity_rows(np.zeros(32), 0.0, MU, np.array([32]))


def test_sampled_operator_is_bit_identical_to_the_full_rows():
    rng = np.random.default_rng(21)
    prob = Burgers2D(n=11)
    edge = boundary_adjacent_rows(prob)
    for _ in range(20):
        x = random_state(rng, prob)
        rows = np.unique(np.concatenate([
            rng.choice(prob.n_dofs, size=rng.integers(1, 40), replace=False),
            rng.choice(edge, size=rng.integers(0, 5), replace=False)]))
        op = prob.sample(rows)
        x_st = x[op.stencil]
        f, jac = prob.velocity(x, 0.0, MU), prob.jacobian(x, 0.0, MU).toarray()
        assert np.array_equal(op.velocity(x_st, 0.0, MU), f[rows])
        assert np.array_equal(op.jacobian(x_st, 0.0, MU).toarray(), jac[rows][:, op.stencil])
        assert np.array_equal(op.stencil, prob.stencil(rows))
        assert np.array_equal(op.stencil[op.row_pos], rows)
        # the stencil is exactly what the rows read
        rest = np.setdiff1d(np.arange(prob.n_dofs), op.stencil)
        assert not np.any(jac[rows][:, rest])
        # the hot path writes the same numbers into caller buffers
        fb, db = np.empty(op.n_rows), np.empty(op.nnz)
        op.velocity_jacobian_into(x_st, 0.0, MU, fb, db)
        assert np.array_equal(fb, f[rows])


def test_sample_of_all_rows_is_the_fused_kernel_and_rows_may_repeat():
    prob = Burgers2D(n=9)
    op = prob.sample(np.arange(prob.n_dofs))
    indptr, indices = prob.jacobian_structure()
    assert np.array_equal(op.indptr, indptr) and np.array_equal(op.indices, indices)
    assert np.array_equal(op.stencil, np.arange(prob.n_dofs))
    x = np.random.default_rng(2).standard_normal(prob.n_dofs)
    rows = np.array([70, 3, 70, 0])  # unsorted, repeated: velocity_rows keeps the order
    assert np.array_equal(prob.velocity_rows(x, 0.0, MU, rows), prob.velocity(x, 0.0, MU)[rows])
    with pytest.raises(fom.InputError, match="distinct"):
        prob.sample(rows)


@pytest.mark.parametrize("scheme", ["backward_euler", "bdf2"])
def test_numba_fom_equals_the_numpy_fom(scheme):
    """The sparse modified-Newton FOM over the numba kernels and the plain Newton FOM (spsolve
    every iteration) over the NumPy/SciPy implementation give the same trajectory."""
    opts = fom.NewtonOptions(atol=1e-12, rtol=0.0, stol=0.0)
    kw = {"t_final": 60 * 2.0 / 1500, "scheme": scheme, "options": opts}
    fast = fom.solve(Burgers2D(n=16), [1.1], method="sparse", **kw)
    ref = fom.solve(Burgers2DNumPy(n=16), [1.1], method="generic", **kw)
    assert fast.solver["newton"]["atol"] == 1e-12
    assert fast.stats["factorizations"] < fast.stats["solves"] / 10
    assert np.linalg.norm(fast.states - ref.states) / np.linalg.norm(ref.states) < 1e-10
    # with the problem's own tolerance (1e-8 on ||r||) both stay within it of each other
    kw.pop("options")
    fast = fom.solve(Burgers2D(n=16), [1.1], method="sparse", **kw)
    ref = fom.solve(Burgers2DNumPy(n=16), [1.1], method="generic", **kw)
    assert np.all(fast.residuals[1:] <= 1e-8) and np.all(ref.residuals[1:] <= 1e-8)
    assert np.linalg.norm(fast.states - ref.states) / np.linalg.norm(ref.states) < 1e-7


@pytest.mark.parametrize(("scheme", "order"), [("backward_euler", 1), ("bdf2", 2)])
def test_time_order_of_accuracy(scheme, order):
    prob = Burgers2D(n=12)
    opts = fom.NewtonOptions(atol=1e-13, rtol=0.0, stol=0.0)
    t_final = 0.2
    ref = fom.solve(prob, [1.0], dt=t_final / 1280, t_final=t_final, scheme="bdf2",
                    options=opts).states[-1]
    errs = [np.linalg.norm(fom.solve(prob, [1.0], dt=t_final / k, t_final=t_final,
                                     scheme=scheme, options=opts).states[-1] - ref)
            for k in (20, 40, 80)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - order) < 0.1), rates


def test_store_every_keeps_every_kth_step_and_the_last():
    prob = Burgers2D(n=10)
    full = fom.solve(prob, [0.9], t_final=10 * prob.dt)
    part = fom.solve(prob, [0.9], t_final=10 * prob.dt, store_every=4)
    steps = [0, 4, 8, 10]
    assert np.array_equal(part.t, full.t[steps])
    assert np.array_equal(part.states, full.states[steps])
    assert np.array_equal(part.iterations, full.iterations[steps])
    assert part.solver["store_every"] == 4 and full.solver["store_every"] == 1
    with pytest.raises(fom.InputError, match="store_every must be a positive integer"):
        fom.solve(prob, [0.9], t_final=10 * prob.dt, store_every=0)


def test_extrapolating_predictor_saves_solves_and_keeps_the_states():
    from fom.sparse_newton import integrate_sparse
    from fom.steppers import BACKWARD_EULER
    from fom.trajectory import TrajectoryStore

    prob = Burgers2D(n=16)
    runs = {}
    for predictor in (0, 2):  # the previous state; the quadratic extrapolation
        opts = fom.NewtonOptions(atol=1e-11, rtol=0.0, stol=0.0, predictor=predictor)
        store = TrajectoryStore(prob.initial_state(MU), 80, 1, history=predictor + 1)
        failed, stats = integrate_sparse(prob, MU, BACKWARD_EULER, prob.dt, opts, store)
        assert failed == 0 and np.all(store.residuals[1:] <= 1e-11)
        runs[predictor] = (store.states, stats)
    (a, sa), (b, sb) = runs[0], runs[2]
    assert sb.solves < 0.8 * sa.solves
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-9
    with pytest.raises(fom.InputError, match="predictor must be an integer"):
        fom.NewtonOptions(predictor=-1)


def test_failure_keeps_the_stored_steps_before_it():
    prob = Burgers2D(n=10)
    opts = fom.NewtonOptions(atol=1e-30, rtol=0.0, stol=0.0, max_iter=3)  # unreachable
    with pytest.raises(fom.ConvergenceError) as info:
        fom.solve(prob, MU, t_final=10 * prob.dt, options=opts, store_every=4)
    err = info.value
    assert err.step == 1 and err.partial.t.tolist() == [0.0]
    assert np.array_equal(err.partial.states[0], prob.initial_state(MU))
    assert "step 1" in str(err) and "after 3 iterations" in str(err)


def test_amortized_refactoring_renews_stale_factors():
    """With refactoring within a step switched off, the factors of step 1 serve the whole run
    unless the extra iterations they cost are counted (refactor_after)."""
    from fom.sparse_newton import integrate_sparse
    from fom.steppers import BACKWARD_EULER
    from fom.trajectory import TrajectoryStore

    prob = Burgers2D(n=24, dt=2.0 / 150)  # 10x the step: the Jacobian changes fast
    opts = prob.newton_defaults()
    runs = {}
    for after in (None, 5):
        store = TrajectoryStore(prob.initial_state(MU), 100, 1)
        failed, stats = integrate_sparse(prob, MU, BACKWARD_EULER, prob.dt, opts, store,
                                         refactor_ratio=0.99, refactor_after=after)
        assert failed == 0 and np.all(store.residuals[1:] <= 1e-8)
        runs[after] = (store.states, stats)
    (a, sa), (b, sb) = runs[None], runs[5]
    assert sa.factorizations == 1 < sb.factorizations  # 1 against 25
    assert sb.solves < 0.6 * sa.solves  # fresher factors: 356 solves against 802
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-7
