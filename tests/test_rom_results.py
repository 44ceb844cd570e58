"""The ROM results file: round trip, partial (failed) trajectories, validation messages."""

import h5py
import numpy as np
import pytest

import fom
from fom.errors import ConvergenceError, InputError
from rom import AffineManifold, solve_rom
from rom.results import ResultSet, RunRecord, read_results, write_results

MU = np.array([[4.3, 0.021], [5.15, 0.0285]])


@pytest.fixture(scope="module")
def setup():
    problem = fom.Burgers1D(n_cells=32, t_final=0.35)
    ref = np.array([fom.solve(problem, m).states for m in MU])
    man = AffineManifold.from_snapshots(ref, 3)
    roms = [solve_rom(problem, man, m, "lspg") for m in MU]
    return problem, ref, man, roms


def record(setup, method="pod-lspg", **kw):
    problem, ref, man, roms = setup
    return RunRecord.from_rom_results(method, roms, ref.shape[1],
                                      relative_error=[0.1, 0.2], projection_error=[0.01, 0.02],
                                      info={"pod_energy": 0.9}, **kw)


def test_round_trip(setup, tmp_path):
    problem, ref, man, roms = setup
    recs = [record(setup), record(setup, "pod-galerkin", store_states=False)]
    path = write_results(tmp_path / "r.h5", recs, mu=MU, t=roms[0].t,
                         param_names=problem.param_names, reference=ref, grid=problem.grid,
                         attrs={"problem": "burgers1d", "extra": {"a": 1}})
    assert not list(tmp_path.glob("*.tmp-*"))  # atomic: no temporary file left
    rs = read_results(path)
    assert isinstance(rs, ResultSet) and set(rs.runs) == {"pod-lspg-p3", "pod-galerkin-p3"}
    np.testing.assert_array_equal(rs.mu, MU)
    np.testing.assert_array_equal(rs.t, roms[0].t)
    np.testing.assert_array_equal(rs.reference, ref)
    np.testing.assert_array_equal(rs.grid["x"], problem.grid["x"])
    assert rs.param_names == ("mu1", "mu2") and rs.attrs["problem"] == "burgers1d"
    r = rs.runs["pod-lspg-p3"]
    assert (r.method, r.p, r.manifold, r.projection) == ("pod-lspg", 3, "pod", "lspg")
    np.testing.assert_array_equal(r.latent, np.array([x.latent for x in roms]))
    np.testing.assert_array_equal(r.states, np.array([x.states for x in roms]))
    np.testing.assert_array_equal(r.iterations, np.array([x.iterations for x in roms]))
    np.testing.assert_array_equal(r.steps, [6, 6])
    np.testing.assert_array_equal(r.relative_error, [0.1, 0.2])
    assert r.info == {"pod_energy": 0.9} and r.options["gtol"] == roms[0].options["gtol"]
    assert rs.runs["pod-galerkin-p3"].states is None
    assert [x.name for x in rs.select(p=3)] == ["pod-galerkin-p3", "pod-lspg-p3"]
    # a ResultSet can be written back unchanged
    again = read_results(write_results(tmp_path / "s.h5", rs))
    np.testing.assert_array_equal(again.runs["pod-lspg-p3"].latent, r.latent)


def test_partial_trajectory_is_kept(setup, tmp_path):
    problem, ref, man, roms = setup
    opts_fail = dict(atol=0, rtol=0, gtol=0, ftol=0, stol=0, max_iter=1)
    from rom import ROMOptions

    with pytest.raises(ConvergenceError) as info:
        solve_rom(problem, man, MU[1], "lspg", options=ROMOptions(**opts_fail))
    partial = info.value.partial
    rec = RunRecord.from_rom_results("pod-lspg", [roms[0], partial], ref.shape[1],
                                     relative_error=[0.1, np.nan],
                                     failures=["", str(info.value)])
    path = write_results(tmp_path / "r.h5", [rec], mu=MU, t=roms[0].t, reference=ref)
    r = read_results(path).runs["pod-lspg-p3"]
    np.testing.assert_array_equal(r.steps, [6, 1])
    assert np.isnan(r.latent[1, 1:]).all() and np.isfinite(r.latent[1, 0]).all()
    assert np.isnan(r.relative_error[1]) and "did not converge" in r.failures[1]


def _corrupt(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f["runs/pod-lspg-p3"].__delitem__("latent"),
     r"missing dataset /runs/pod-lspg-p3/latent"),
    (lambda f: f.__delitem__("t"), r"missing dataset /t"),
    (lambda f: (f["runs/pod-lspg-p3"].__delitem__("residuals"),
                f["runs/pod-lspg-p3"].create_dataset("residuals", data=np.zeros((2, 5)))),
     r"/runs/pod-lspg-p3/residuals has shape \(2, 5\), expected \(2, 6\)"),
    (lambda f: f["runs/pod-lspg-p3/latent"].__setitem__((0, 2, 1), np.nan),
     r"/runs/pod-lspg-p3/latent contains NaN"),
    (lambda f: f["runs/pod-lspg-p3/relative_error"].__setitem__(0, np.nan),
     r"/runs/pod-lspg-p3/relative_error is nan"),
    (lambda f: f["reference/states"].__setitem__((1, 1, 1), np.inf),
     r"/reference/states contains NaN"),
    (lambda f: f["runs/pod-lspg-p3"].attrs.__setitem__("p", 4),
     r"/runs/pod-lspg-p3 holds method pod-lspg with p = 4"),
    (lambda f: f.attrs.__setitem__("format", "other"), r"not a manifold-rom results file"),
])
def test_validation_names_file_and_dataset(setup, tmp_path, change, message):
    _, ref, _, roms = setup
    path = write_results(tmp_path / "bad.h5", [record(setup)], mu=MU, t=roms[0].t,
                         reference=ref)
    read_results(path)
    _corrupt(path, change)
    with pytest.raises(InputError, match=message) as info:
        read_results(path)
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_results(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_results(tmp_path / "junk.h5")


def test_write_rejects_inconsistent_runs(setup, tmp_path):
    _, ref, _, roms = setup
    with pytest.raises(InputError, match="duplicate"):
        write_results(tmp_path / "d.h5", [record(setup), record(setup)], mu=MU, t=roms[0].t)
    with pytest.raises(InputError, match="latent has shape"):
        write_results(tmp_path / "d.h5", [record(setup)], mu=MU[:1], t=roms[0].t)
    with pytest.raises(InputError, match="mu and the times"):
        write_results(tmp_path / "d.h5", [record(setup)])
    assert not (tmp_path / "d.h5").exists()
