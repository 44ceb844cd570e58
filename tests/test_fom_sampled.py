"""Sampled (hyper-reduction) operators and the sparse modified-Newton FOM solver."""

import numpy as np
import pytest

from fom import Burgers1D, InputError, NewtonOptions, solve
from fom.sparse_newton import diagonal_positions

MU = np.array([4.7, 0.022])


def random_rows(rng, n):
    rows = np.unique(rng.integers(0, n, rng.integers(1, 30)))
    if rng.random() < 0.5:
        rows = np.unique(np.concatenate([rows, [0, n - 1]]))  # both boundary cells
    return rows


def test_burgers1d_sample_rows_bit_identical_to_full():
    prob = Burgers1D(n_cells=64)
    rng = np.random.default_rng(3)
    for _ in range(50):
        w = rng.uniform(-2.0, 6.0, 64)
        w[rng.integers(0, 64, 10)] = 0.0  # flux kinks: sonic points and equal states
        rows = random_rows(rng, 64)
        op = prob.sample(rows)
        x_st = w[op.stencil]
        full_f, full_j = prob.velocity(w, 0.0, MU), prob.jacobian(w, 0.0, MU).toarray()
        assert np.array_equal(op.velocity(x_st, 0.0, MU), full_f[rows])
        assert np.array_equal(op.jacobian(x_st, 0.0, MU).toarray(), full_j[rows][:, op.stencil])
        # the stencil is exactly what the rows read: every other column of the rows is zero
        rest = np.setdiff1d(np.arange(64), op.stencil)
        assert not np.any(full_j[rows][:, rest])
        assert np.array_equal(op.stencil[op.row_pos], rows)


def test_sample_of_all_rows_is_the_fused_kernel():
    prob = Burgers1D(n_cells=32)
    op = prob.sample(np.arange(32))
    indptr, indices = prob.jacobian_structure()
    assert np.array_equal(op.indptr, indptr) and np.array_equal(op.indices, indices)


@pytest.mark.parametrize("rows, message", [
    (np.array([], dtype=int), "non-empty"),
    (np.array([0.5]), "integers"),
    (np.array([3, 3]), "distinct"),
    (np.array([64]), r"\[0, 64\)"),
])
def test_bad_sample_rows(rows, message):
    with pytest.raises(InputError, match=message):
        Burgers1D(n_cells=64).sample(rows)


@pytest.mark.parametrize("scheme", ["backward_euler", "bdf2"])
def test_sparse_solver_matches_newton_to_the_tolerance(scheme):
    prob = Burgers1D(n_cells=128, dt=0.07, t_final=7.0)
    opts = NewtonOptions(atol=1e-10, rtol=0.0)
    ref = solve(prob, MU, scheme=scheme, options=opts, method="generic")
    got = solve(prob, MU, scheme=scheme, options=opts, method="sparse")
    assert np.all(got.residuals[1:] <= 1e-10)
    # both states solve r = 0 to 1e-10 and dr/dx is well conditioned (I - dt df/dx)
    assert np.max(np.abs(got.states - ref.states)) < 1e-9
    # the factors are reused: far fewer factorizations than linear solves
    assert got.stats["factorizations"] < got.stats["solves"] / 2


def test_sparse_solver_reports_every_newton_residual():
    prob = Burgers1D(n_cells=32, dt=0.07, t_final=0.7)
    seen = []
    res = solve(prob, MU, method="sparse",
                callback=lambda n, k, r: seen.append((n, k, np.linalg.norm(r))))
    steps = [n for n, _, _ in seen]
    assert sorted(set(steps)) == list(range(1, 11))
    last = {n: (k, r) for n, k, r in seen}
    for n in range(1, 11):
        assert last[n][0] == res.iterations[n]
        assert last[n][1] == pytest.approx(res.residuals[n], rel=1e-12, abs=1e-300)


def test_diagonal_positions_requires_the_diagonal():
    with pytest.raises(InputError, match="diagonal"):
        diagonal_positions(np.array([0, 1, 2]), np.array([1, 0]))
