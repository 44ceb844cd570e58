"""Snapshot files of multi-field 2D problems: the layout in /grid, storing every k-th step, the
Newton residuals, the CLI and config options."""

import json

import h5py
import numpy as np
import pytest
from test_fom_snapshots import run_cli

import fom
from fom.burgers2d import Burgers2D
from fom.snapshots import generate_snapshots, read_residuals, read_snapshots
from fom.steppers import BACKWARD_EULER, time_residual

SMALL = {"n": 10, "t_final": 12 * 2.0 / 1500}  # 8 x 8 interior, 12 steps


def test_cli_writes_a_burgers2d_file_with_its_layout(tmp_path, capsys):
    out = tmp_path / "f.h5"
    code, stdout, err = run_cli(["snapshots", "-q", "--problem", "burgers2d", "--mu", "1.0",
                                 "--option", "n=12", "--t-final", str(8 * 2.0 / 1500),
                                 "-o", str(out)], capsys)
    assert code == 0, err
    prob = Burgers2D(n=12)
    snap = read_snapshots(out)
    assert snap.states.shape == (1, 9, prob.n_dofs) == (1, 9, 200)
    assert snap.problem().config() == prob.config()
    assert snap.solver["newton"]["atol"] == 1e-8  # the problem's Newton tolerance
    ref = fom.solve(prob, [1.0], t_final=8 * prob.dt)
    assert np.array_equal(snap.states[0], ref.states)
    with h5py.File(out) as f:
        g = f["grid"]
        fields = [str(v) for v in g.attrs["fields"]]
        shape = tuple(int(v) for v in g.attrs["grid_shape"])
        axes = [str(v) for v in g.attrs["axes"]]
        assert fields == ["u", "v"] and shape == (10, 10) and axes == ["y", "x"]
        assert "last axis varies fastest" in str(g.attrs["order"])
        x, y = g["x"][()], g["y"][()]
    # a reader that uses only the attributes recovers u(x, y) and v(x, y) at t = 0
    u0 = snap.states[0, 0].reshape(len(fields), *shape)[fields.index("u")]
    xx, yy = np.meshgrid(x, y)  # (y, x) like grid_shape
    want = 1.0 * np.sin(2 * np.pi * xx) * np.sin(2 * np.pi * yy) * (xx <= 0.5) * (yy <= 0.5)
    np.testing.assert_allclose(u0, want, atol=1e-15)


def test_store_every_and_residuals(tmp_path):
    prob = Burgers2D(**SMALL)
    mus = [[0.9], [1.1]]
    full = generate_snapshots(prob, mus, tmp_path / "full.h5", progress=False,
                              store_residuals=True)
    part = generate_snapshots(prob, mus, tmp_path / "part.h5", progress=False, store_every=5)
    a, b = read_snapshots(full), read_snapshots(part)
    steps = [0, 5, 10, 12]  # every 5th and the last
    assert np.array_equal(b.t, a.t[steps]) and b.solver["store_every"] == 5
    assert np.array_equal(b.states, a.states[:, steps])
    assert a.solver["store_residuals"] is True and b.solver["store_residuals"] is False
    with h5py.File(part) as f:
        assert "residuals" not in f
    with pytest.raises(fom.InputError, match="no /residuals"):
        read_residuals(part)

    values, index = read_residuals(full)
    assert values.shape == (index.shape[0], prob.n_dofs)
    assert sorted(set(index[:, 0])) == [0, 1] and sorted(set(index[:, 1])) == list(range(1, 13))
    with h5py.File(full) as f:
        assert list(f["residuals"].attrs["index_columns"]) == ["mu_index", "step", "iteration"]
        iters = f["stats/iterations"][()]
    for i, mu in enumerate(mus):
        states = a.states[i]
        for n in range(1, 13):
            rows = np.flatnonzero((index[:, 0] == i) & (index[:, 1] == n))
            its = index[rows, 2]
            assert its[0] == 0 and its[-1] == iters[i, n] and np.all(np.diff(its) == 1)
            # the last iterate is the stored state: its residual is r^n(x^n), below 1e-8
            r = time_residual(prob, BACKWARD_EULER, states[n], -states[n - 1], n * prob.dt,
                              prob.dt, np.array(mu))
            np.testing.assert_allclose(values[rows[-1]], r, rtol=0, atol=1e-14)
            assert np.linalg.norm(values[rows[-1]]) <= 1e-8 < np.linalg.norm(values[rows[0]])
        # iteration 0 of step 3 is the residual at the predictor 3 x^2 - 3 x^1 + x^0
        guess = 3 * states[2] - 3 * states[1] + states[0]
        r0 = time_residual(prob, BACKWARD_EULER, guess, -states[2], 3 * prob.dt, prob.dt,
                           np.array(mu))
        row = np.flatnonzero((index[:, 0] == i) & (index[:, 1] == 3) & (index[:, 2] == 0))[0]
        np.testing.assert_allclose(values[row], r0, rtol=0, atol=1e-14)


def test_residuals_of_the_stored_steps_only(tmp_path):
    prob = Burgers2D(**SMALL)
    out = generate_snapshots(prob, [[1.0]], tmp_path / "s.h5", progress=False, store_every=4,
                             store_residuals=True)
    _, index = read_residuals(out)
    assert sorted(set(index[:, 1])) == [4, 8, 12]


def test_config_options_and_regeneration(tmp_path):
    cfg = tmp_path / "c.toml"
    body = (f'output_dir = "{tmp_path / "out"}"\n[problem]\nname = "burgers2d"\nn = 8\n'
            f't_final = {6 * 2.0 / 1500!r}\n[snapshots]\ntrain = [[0.9], [1.1]]\n'
            'test = [[1.0]]\nstore_every = 3\n')
    cfg.write_text(body)
    from fom.config import load_config
    from fom.snapshots import snapshots_from_config

    train, test = snapshots_from_config(load_config(cfg), progress=False)
    snap = read_snapshots(train)
    assert snap.states.shape == (2, 3, 72) and snap.t.size == 3
    stamp = train.stat().st_mtime_ns
    snapshots_from_config(load_config(cfg), progress=False)
    assert train.stat().st_mtime_ns == stamp  # same settings: kept
    cfg.write_text(body + "store_residuals = true\n")
    snapshots_from_config(load_config(cfg), progress=False)
    assert train.stat().st_mtime_ns != stamp  # other storage options: regenerated
    assert read_residuals(train)[0].shape[1] == 72
    cfg.write_text(body.replace("store_every = 3", "store_every = 0"))
    with pytest.raises(fom.InputError, match="store_every"):
        snapshots_from_config(load_config(cfg), progress=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--store-every", "0"], "--store-every must be a positive integer"),
    (["--option", "n"], "expected KEY=VALUE"),
    (["--option", "m=3"], "unknown option 'm'"),
])
def test_cli_bad_storage_options(tmp_path, capsys, args, message):
    code, _, err = run_cli(["snapshots", "--problem", "burgers2d", "--mu", "1.0", *args,
                            "-o", str(tmp_path / "x.h5")], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_burgers1d_stride_through_its_compiled_integrator(tmp_path):
    prob = fom.Burgers1D(n_cells=32, t_final=0.7)
    res = fom.solve(prob, [4.3, 0.021], store_every=3)
    full = fom.solve(prob, [4.3, 0.021])
    assert res.t.size == 5 and np.array_equal(res.states, full.states[[0, 3, 6, 9, 10]])
    assert json.loads(json.dumps(res.solver))["store_every"] == 3


def test_snapshot_set_exposes_the_newton_residuals(tmp_path):
    prob = Burgers2D(**SMALL)
    with_res = generate_snapshots(prob, [[1.0]], tmp_path / "a.h5", progress=False,
                                  store_residuals=True)
    without = generate_snapshots(prob, [[1.0]], tmp_path / "b.h5", progress=False)
    assert read_snapshots(without).newton_residuals is None
    np.testing.assert_array_equal(read_snapshots(with_res).newton_residuals,
                                  read_residuals(with_res)[0])
