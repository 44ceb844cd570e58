"""Parameter sweeps (rom.sweep): layout, serial == MPI bit for bit, resume details, errors."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_processes import mpiexec

import fom
from fom.errors import ConvergenceError, InputError
from fom.snapshots import read_snapshots
from rom import sweep as sweep_mod
from rom.cli import main
from rom.mpi_utils import get_comm, launched_by_mpi
from rom.sweep import product_grid, sweep, sweep_plan

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "burgers1d_sweep.toml"

SMALL = """\
output_dir = "out"

[problem]
name = "burgers1d"
n_cells = 64
dt = 0.07
t_final = 3.5

[sweep]
output = "sweep.h5"
{extra}
[sweep.params]
mu1 = {{ start = 4.25, stop = 5.5, num = 3 }}
mu2 = [0.015, 0.03]
"""


def small_config(folder: Path, extra: str = "") -> Path:
    path = folder / "sweep.toml"
    path.write_text(SMALL.format(extra=extra))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MROM_"))}
    env.update(extra)
    return env


def run_cli(args: list[str], cwd: Path, n_ranks: int = 0, **env: str):
    cmd = [sys.executable, "-m", "rom.cli", *args]
    if n_ranks:
        exe = mpiexec()
        if exe is None:
            pytest.skip("mpi4py/mpiexec not installed (pip install '.[mpi]')")
        cmd = [exe, "-n", str(n_ranks), *cmd]
    return subprocess.run(cmd, cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
                          timeout=300)


# ----------------------------------------------------------------------------- config


def test_product_grid_first_parameter_slowest():
    problem = fom.get_problem("burgers1d", n_cells=64)
    mus = product_grid({"mu2": [0.015, 0.03], "mu1": {"start": 4.5, "stop": 5.0, "num": 3}},
                       problem, "x")
    assert mus.shape == (6, 2)
    np.testing.assert_array_equal(mus[:, 0], [4.5, 4.5, 4.75, 4.75, 5.0, 5.0])
    np.testing.assert_array_equal(mus[:, 1], [0.015, 0.03] * 3)


def test_plan_of_the_example_config():
    plan = sweep_plan(EXAMPLE)
    assert plan.mus.shape == (8, 2)
    assert plan.problem.n_dofs == 256 and plan.n_steps == 500
    assert plan.output == Path("output/burgers1d_sweep/sweep.h5")


def test_named_and_listed_parameters(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[problem]\nname = "burgers1d"\n[sweep]\nparams = "paper-train"\n')
    assert sweep_plan(cfg).mus.shape == (80, 2)
    cfg.write_text('[problem]\nname = "burgers1d"\n[sweep]\nparams = [[4.3, 0.021]]\n')
    np.testing.assert_array_equal(sweep_plan(cfg).mus, [[4.3, 0.021]])
    cfg.write_text('[problem]\nname = "burgers1d"\n[sweep]\nparams = [[9.0, 0.021]]\n')
    with pytest.raises(InputError, match="mu1 = 9.0 is outside"):
        sweep_plan(cfg)
    cfg.write_text('[problem]\nname = "burgers1d"\n[sweep]\nparams = [[9.0, 0.021]]\n'
                   'check_bounds = false\n')
    np.testing.assert_array_equal(sweep_plan(cfg).mus, [[9.0, 0.021]])


# ----------------------------------------------------------------------------- serial


def test_serial_sweep_writes_a_deterministic_snapshot_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = small_config(tmp_path)
    monkeypatch.delenv("MROM_TEST_PAUSE", raising=False)
    path = sweep(cfg, comm=None)
    assert path == Path("out/sweep.h5")
    err = capsys.readouterr().err
    assert err.count("done on rank 0") == 6 and "[6/6]" in err
    snap = read_snapshots(path)
    plan = sweep_plan(cfg)
    np.testing.assert_array_equal(snap.mu, plan.mus)
    # the trajectories are exactly fom.solve's
    ref = fom.solve(plan.problem, plan.mus[4], dt=0.07, t_final=3.5)
    np.testing.assert_array_equal(snap.states[4], ref.states)
    with h5py.File(path, "r") as f:
        assert "created" not in f.attrs and "wall_s" not in f["stats"]
        assert f["states"].chunks == (1, ref.t.size, 64)
        assert json.loads(f.attrs["sweep"])["kind"] == "fom"
    log = json.loads(Path("out/sweep.log.json").read_text())
    assert log["n_params"] == 6 and len(log["trajectories"]) == 6
    assert not Path("out/sweep.h5.ckpt").exists()
    assert not list(Path("out").glob("*.tmp-*"))
    # a second serial run in a fresh folder gives the same bytes
    first = tmp_path / "first.h5"
    shutil.copy(path, first)
    shutil.rmtree("out")
    sweep(cfg, progress=False, comm=None)
    assert filecmp.cmp(first, path, shallow=False)


def test_rerun_of_a_complete_sweep_does_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = small_config(tmp_path)
    path = sweep(cfg, comm=None)
    stamp = path.stat().st_mtime_ns
    sweep(cfg, comm=None)
    assert "already complete" in capsys.readouterr().err
    assert path.stat().st_mtime_ns == stamp


def test_changed_parameters_recompute_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = small_config(tmp_path)
    sweep(cfg, progress=False, comm=None)
    cfg.write_text(SMALL.format(extra="").replace("num = 3", "num = 2"))
    path = sweep(cfg, progress=False, comm=None)
    assert read_snapshots(path).n_mu == 4


def test_checkpoint_of_another_sweep_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = small_config(tmp_path)
    plan = sweep_plan(cfg)
    Path("out").mkdir()
    other = plan.checkpoint()
    other.manifest["mu"] = [[5.0, 0.02]]
    other.open()
    with pytest.raises(InputError, match="belongs to a different run"):
        sweep(cfg, progress=False, comm=None)


def test_damaged_checkpoint_part_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = small_config(tmp_path)
    ref = tmp_path / "ref.h5"
    shutil.copy(sweep(cfg, progress=False, comm=None), ref)
    shutil.rmtree("out")
    plan = sweep_plan(cfg)
    Path("out").mkdir()
    ckpt = plan.checkpoint()
    ckpt.open()
    for i in range(3):
        sweep_mod.run_one(plan, ckpt, i)
    ckpt.part(1).write_bytes(b"\x89HDF garbage from a crashed node")
    path = sweep(cfg, progress=False, comm=None)
    assert filecmp.cmp(ref, path, shallow=False)


def test_convergence_failures_keep_the_rest(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = small_config(tmp_path)
    real_solve = sweep_mod.solve

    def failing(problem, mu, **kw):
        if mu[0] == 5.5:
            raise ConvergenceError("Newton did not converge (test)", step=3, time=0.21,
                                   residual=1.0)
        return real_solve(problem, mu, **kw)

    monkeypatch.setattr(sweep_mod, "solve", failing)
    assert main(["sweep", "-q", str(cfg)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mrom: error: 2 of 6 parameters did not converge")
    assert not Path("out/sweep.h5").exists()
    assert len(list(Path("out/sweep.h5.ckpt").glob("traj_*.h5"))) == 4
    monkeypatch.setattr(sweep_mod, "solve", real_solve)
    assert main(["sweep", "-q", str(cfg)]) == 0
    assert read_snapshots("out/sweep.h5").n_mu == 6


def test_no_mpi_outside_a_launcher(monkeypatch):
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS",
                "MROM_MPI"):
        monkeypatch.delenv(var, raising=False)
    assert not launched_by_mpi()
    assert get_comm() is None
    monkeypatch.setenv("PMI_SIZE", "2")
    assert launched_by_mpi()
    monkeypatch.setenv("MROM_MPI", "0")
    assert not launched_by_mpi()


# ----------------------------------------------------------------------------- MPI


@pytest.mark.mpi
def test_mpi_sweep_of_the_example_equals_the_serial_run(tmp_path):
    """The issue's acceptance test: mpiexec -n 2 and the serial run give identical files."""
    (tmp_path / "mpi").mkdir()
    (tmp_path / "serial").mkdir()
    par = run_cli(["sweep", str(EXAMPLE)], tmp_path / "mpi", n_ranks=2)
    assert par.returncode == 0, par.stderr
    assert par.stderr.count("done on rank") == 8
    ser = run_cli(["sweep", str(EXAMPLE)], tmp_path / "serial")
    assert ser.returncode == 0, ser.stderr
    a = tmp_path / "mpi/output/burgers1d_sweep/sweep.h5"
    b = tmp_path / "serial/output/burgers1d_sweep/sweep.h5"
    assert filecmp.cmp(a, b, shallow=False)
    assert json.loads(a.with_suffix(".log.json").read_text())["n_ranks"] == 2


@pytest.mark.mpi
@pytest.mark.parametrize("n_ranks, root_computes", [(2, "0"), (3, "1")])
def test_mpi_load_balancing_variants_equal_serial(tmp_path, n_ranks, root_computes):
    """Rank 0 as pure dispatcher (all work on rank 1), and two workers plus rank 0."""
    cfg = small_config(tmp_path)
    ser = run_cli(["sweep", str(cfg)], tmp_path)
    assert ser.returncode == 0, ser.stderr
    ref = tmp_path / "ref.h5"
    shutil.move(tmp_path / "out/sweep.h5", ref)
    par = run_cli(["sweep", str(cfg)], tmp_path, n_ranks=n_ranks,
                  MROM_SWEEP_ROOT_COMPUTES=root_computes)
    assert par.returncode == 0, par.stderr
    if root_computes == "0":
        assert par.stderr.count("done on rank 1") == 6
    assert filecmp.cmp(ref, tmp_path / "out/sweep.h5", shallow=False)


@pytest.mark.mpi
def test_mpi_bad_config_gives_one_error_line(tmp_path):
    cfg = small_config(tmp_path, extra='kind = "banana"')
    res = run_cli(["sweep", str(cfg)], tmp_path, n_ranks=2)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [f"mrom: error: {cfg} [sweep] kind: must be one of fom, rom, got 'banana'"]
    assert not (tmp_path / "out").exists()
