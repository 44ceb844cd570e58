"""ROM sweeps (``[sweep] kind = "rom"``): the FOM reference and the configured ROMs at every
parameter, one :mod:`rom.results` file; serial == MPI == resumed after SIGKILL, byte for byte.

Tiny settings: 64 cells, 50 steps, a POD basis from 3 training trajectories and, for the runs
in subprocesses, a decoder trained for 2 epochs (as in tests/test_pipeline.py, ~7 s, once per
module); in-process runs use the analytic decoder of :mod:`rom.testing`.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_processes import clean_env, command, leftovers, n_parts, run, run_and_kill
from tiny_configs import tiny_config

import fom
from fom.errors import ConvergenceError, InputError
from fom.snapshots import read_snapshots, snapshots_from_config
from rom.cli import main
from rom.metrics import relative_error
from rom.online import roms_from_config
from rom.report import report
from rom.results import read_results
from rom.sweep import RomSuite, sweep, sweep_plan
from rom.testing import quadratic_decoder_loader

SWEEP = """
[sweep]
kind = "rom"
output = "{output}"
params = {params}
{sweep}
"""
PARAMS = "[[4.3, 0.021], [4.8, 0.022], [5.15, 0.0285], [5.5, 0.03]]"
N_PARAMS = 4
#: what the subprocess runs compute: two POD ROMs, Deep LSPG on the trained decoder and both
#: hyper-reduced ROMs on a sample mesh of 20 of the 64 rows (built by each run)
CLI_ROM = ('methods = ["deep-lspg", "pod-lspg", "pod-galerkin", "hr-deep-lspg", "hr-pod-lspg"]'
           '\nlatent_dims = [2]\n\n[hyperreduction]\nn_samples = 20\nn_basis = 10')


def write_config(folder: Path, rom: str = CLI_ROM, sweep_extra: str = "",
                 name: str = "run.toml", params: str = PARAMS,
                 output: str = "rom_sweep.h5") -> Path:
    path = folder / name
    path.write_text(tiny_config("out", rom, SWEEP.format(output=output, params=params,
                                                        sweep=sweep_extra)))
    return path


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """``out/`` with the snapshot files and a decoder trained for 2 epochs (models/p2)."""
    d = tmp_path_factory.mktemp("inputs")
    cfg = write_config(d)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        snapshots_from_config(cfg, progress=False)
    finally:
        os.chdir(cwd)
    res = subprocess.run(command(["train", "-q", "run.toml"]), cwd=d, env=clean_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (d / "out/models/p2/manifest.json").exists()
    return d / "out"


def workdir(inputs: Path, tmp: Path, rom: str = CLI_ROM, params: str = PARAMS) -> Path:
    """A fresh folder with a copy of the inputs and the config ``run.toml``."""
    shutil.copytree(inputs, tmp / "out")
    write_config(tmp, rom, params=params)
    return tmp


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """An uninterrupted serial ``mrom sweep`` (in a subprocess, as the user runs it)."""
    d = workdir(inputs, tmp_path_factory.mktemp("ref"))
    res = run(["sweep", "run.toml"], d)
    assert res.stderr.count("done on rank 0") == N_PARAMS
    return d / "out" / "rom_sweep.h5"


# ----------------------------------------------------------------------------- in-process


def test_serial_rom_sweep_file_and_errors(inputs, tmp_path, monkeypatch, capsys):
    """Layout, determinism, errors equal to direct solves and to ``mrom rom``, report."""
    rom = 'methods = ["deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin"]\n' \
          'latent_dims = [2, 3]'
    d = workdir(inputs, tmp_path, rom)
    monkeypatch.chdir(d)
    (d / "out/models/p3").mkdir()  # the analytic loader stands in for the trained models
    train = read_snapshots("out/train.h5")
    load = quadratic_decoder_loader(train.states)
    path = sweep("run.toml", comm=None, load_decoder=load)
    assert path == Path("out/rom_sweep.h5")
    assert capsys.readouterr().err.count("done on rank 0") == N_PARAMS
    rs = read_results(path)
    plan = sweep_plan("run.toml")
    np.testing.assert_array_equal(rs.mu, plan.mus)
    names = [f"{m}-p{p}" for m in ("deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin")
             for p in (2, 3)]
    assert sorted(rs.runs) == sorted(names)
    # the reference is fom.solve's trajectory, the errors are those of the stored states
    for i, mu in enumerate(plan.mus):
        ref = fom.solve(plan.problem, mu, dt=plan.dt, t_final=plan.n_steps * plan.dt)
        np.testing.assert_array_equal(rs.reference[i], ref.states)
    for rec in rs.runs.values():
        assert np.all(rec.steps == rs.t.size) and rec.failures == [""] * N_PARAMS
        # measured: 0.028-0.111 (analytic decoder and POD at p = 2, 3)
        assert np.all(np.isfinite(rec.relative_error)) and np.all(rec.relative_error < 0.2)
        assert np.all(np.isfinite(rec.projection_error))
        assert np.all(np.isnan(rec.wall_s))  # not recorded: timings are in the log
        for i in range(N_PARAMS):
            assert rec.relative_error[i] == relative_error(rs.reference[i], rec.states[i])
    assert rs.runs["pod-lspg-p3"].relative_error[0] < rs.runs["pod-lspg-p2"].relative_error[0]
    # deterministic content only; timings in the sidecar log
    with h5py.File(path, "r") as f:
        assert "created" not in f.attrs and "wall_s" not in f["runs/pod-lspg-p2"]
        assert json.loads(f.attrs["sweep"]) == {"format": 1, "kind": "rom"}
        assert f["reference/states"].chunks == (1, rs.t.size, 64)
    log = json.loads(Path("out/rom_sweep.log.json").read_text())
    assert len(log["trajectories"]) == N_PARAMS
    assert set(log["trajectories"][0]["roms"]) == set(names)
    assert log["trajectories"][0]["roms"]["pod-lspg-p2"]["wall_s"] > 0
    assert leftovers(Path("out")) == []

    # the same ROMs as `mrom rom` at the shared parameter (4.3, 0.021), bit for bit
    online = read_results(roms_from_config("run.toml", progress=False, load_decoder=load))
    for name in names:
        a, b = rs.runs[name], online.runs[name]
        np.testing.assert_array_equal(a.states[0], b.states[0])
        np.testing.assert_array_equal(a.latent[0], b.latent[0])
        assert a.relative_error[0] == b.relative_error[0]
        assert a.projection_error[0] == b.projection_error[0] and a.info == b.info

    # a complete file is kept; `mrom report` reads it
    stamp = path.stat().st_mtime_ns
    sweep("run.toml", comm=None, load_decoder=load)
    assert "already complete" in capsys.readouterr().err
    assert path.stat().st_mtime_ns == stamp
    out = report(path, quiet=True)
    assert (out / "report.md").read_text().count("| ok |") == len(names) * N_PARAMS


def test_hyper_reduced_sweep_equals_mrom_rom(inputs, tmp_path, monkeypatch):
    """HR methods in a sweep: the runs of ``mrom rom`` at the shared parameter, bit for bit,
    on the sample mesh the sweep built (pinned by its checksum)."""
    rom = ('methods = ["hr-deep-lspg", "hr-pod-lspg"]\nlatent_dims = [2]\n\n'
           '[hyperreduction]\nn_samples = 20\nn_basis = 10\nmethod = "gnat"')
    d = workdir(inputs, tmp_path, rom)
    monkeypatch.chdir(d)
    load = quadratic_decoder_loader(read_snapshots("out/train.h5").states)
    rs = read_results(sweep("run.toml", progress=False, comm=None, load_decoder=load))
    mesh = Path("out/sample_mesh.h5")
    plan = sweep_plan("run.toml")
    assert plan.rom["sample_mesh"]["sha256"] == fom.snapshots.file_checksum(mesh)
    online = read_results(roms_from_config("run.toml", progress=False, load_decoder=load))
    for name in ("hr-deep-lspg-p2", "hr-pod-lspg-p2"):
        a, b = rs.runs[name], online.runs[name]
        assert np.all(a.steps == rs.t.size) and np.all(np.isfinite(a.relative_error))
        np.testing.assert_array_equal(a.latent[0], b.latent[0])
        assert a.relative_error[0] == b.relative_error[0] and a.info == b.info
        assert a.info["hyperreduction"] == "gnat" and a.info["n_samples"] == 20
    # a sample mesh replaced after the plan was made is refused, not used
    suite = RomSuite(plan, load)
    mesh.write_bytes(mesh.read_bytes() + b"\0")
    with pytest.raises(InputError, match="out/sample_mesh.h5 is missing or changed since"):
        suite.manifolds()


def test_pod_lspg_with_the_full_basis_reproduces_the_fom(inputs, tmp_path, monkeypatch):
    """At a training parameter, POD-LSPG on the full basis is the FOM to round-off."""
    rom = ('methods = ["pod-lspg"]\nlatent_dims = [64]\n'
           'atol = 1e-14\nrtol = 1e-14\ngtol = 0.0\nftol = 0.0\nstol = 0.0')
    d = workdir(inputs, tmp_path, rom, params="[[4.25, 0.015], [4.8, 0.022]]")
    monkeypatch.chdir(d)
    rs = read_results(sweep("run.toml", progress=False, comm=None))
    rec = rs.runs["pod-lspg-p64"]
    assert rec.info["pod_energy"] == pytest.approx(1.0)
    assert np.all(rec.relative_error < 1e-12), rec.relative_error
    np.testing.assert_allclose(rec.states, rs.reference, rtol=0, atol=1e-10)
    assert np.all(rec.projection_error < 1e-12)


def test_rom_failures_are_recorded_or_stop_the_parameter(inputs, tmp_path, monkeypatch,
                                                          capsys):
    import rom.online as online

    real = online.solve_rom

    def flaky(problem, manifold, mu, method, **kw):
        if mu[0] == 5.5 and method == "galerkin":
            res = real(problem, manifold, mu, method, **{**kw, "t_final": 0.14})
            raise ConvergenceError("ROM did not converge at step 3 (t = 0.21)", step=3,
                                   time=0.21, residual=1.0, partial=res)
        return real(problem, manifold, mu, method, **kw)

    monkeypatch.setattr(online, "solve_rom", flaky)
    rom = 'methods = ["pod-lspg", "pod-galerkin"]\nlatent_dims = [2]'
    d = workdir(inputs, tmp_path, rom)
    monkeypatch.chdir(d)
    rs = read_results(sweep("run.toml", progress=False, comm=None))
    gal = rs.runs["pod-galerkin-p2"]
    assert gal.steps.tolist() == [51, 51, 51, 3] and np.isnan(gal.relative_error[3])
    assert "step 3" in gal.failures[3] and np.all(np.isfinite(gal.relative_error[:3]))
    assert np.all(np.isfinite(rs.runs["pod-lspg-p2"].relative_error))
    # on_failure = "raise": that parameter fails (exit 3), the others are kept
    write_config(d, rom + '\non_failure = "raise"', name="raise.toml", output="raise.h5")
    capsys.readouterr()
    assert main(["sweep", "-q", "raise.toml"]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mrom: error: 1 of 4 parameters did not converge")
    assert "pod-galerkin-p2" in err
    assert n_parts(Path("out/raise.h5.ckpt")) == 3 and not Path("out/raise.h5").exists()


def test_bad_rom_sweep_inputs_are_input_errors(inputs, tmp_path, monkeypatch):
    d = workdir(inputs, tmp_path, 'methods = ["deep-lspg"]\nlatent_dims = [5]')
    monkeypatch.chdir(d)
    with pytest.raises(InputError, match=r"models/p5.*do not exist.*mrom train"):
        sweep("run.toml", comm=None)
    write_config(d, 'methods = ["pod-lspg"]\nlatent_dims = [200]')
    with pytest.raises(InputError, match="exceeds the rank 64 of the POD basis"):
        sweep("run.toml", comm=None)
    assert not Path("out/rom_sweep.h5.ckpt").exists()
    Path("out/train.h5").unlink()
    write_config(d, 'methods = ["pod-lspg"]\nlatent_dims = [2]')
    with pytest.raises(InputError, match=r"training snapshot file .* does not exist"):
        sweep("run.toml", comm=None)


# ----------------------------------------------------------------------------- subprocesses


@pytest.mark.mpi
def test_mpi_rom_sweep_equals_the_serial_run(inputs, reference, tmp_path):
    """``mpiexec -n 2 mrom sweep`` and the serial run write the same bytes (deep + POD)."""
    d = workdir(inputs, tmp_path)
    res = run(["sweep", "run.toml"], d, n_ranks=2)
    assert res.stderr.count("done on rank") == N_PARAMS
    out = d / "out" / "rom_sweep.h5"
    assert filecmp.cmp(reference, out, shallow=False)
    assert json.loads(out.with_suffix(".log.json").read_text())["n_ranks"] == 2
    rs = read_results(out)
    for rec in rs.runs.values():
        assert np.all(np.isfinite(rec.relative_error)) and np.all(rec.steps == rs.t.size)
    assert rs.runs["deep-lspg-p2"].info["model_dir"] == "out/models/p2"
    hr = rs.runs["hr-deep-lspg-p2"].info
    assert hr["n_samples"] == 20 and hr["sample_mesh"] == "out/sample_mesh.h5"
    assert leftovers(d / "out") == []


@pytest.mark.mpi
def test_killed_rom_sweep_resumes_under_mpi_to_the_same_file(inputs, reference, tmp_path):
    """SIGKILL after one committed parameter; the same command under MPI finishes the rest."""
    d = workdir(inputs, tmp_path)
    out = d / "out"
    ckpt = out / "rom_sweep.h5.ckpt"
    run_and_kill(["sweep", "run.toml"], d, "commit:2", lambda: n_parts(ckpt) >= 1)
    assert n_parts(ckpt) == 1 and not (out / "rom_sweep.h5").exists()
    res = run(["sweep", "run.toml"], d, n_ranks=2)
    assert "resuming: 1 of 4" in res.stderr and res.stderr.count("done on rank") == 3
    assert filecmp.cmp(reference, out / "rom_sweep.h5", shallow=False)
    assert leftovers(out) == []


def test_rom_sweep_killed_during_assembly_resumes_to_the_same_file(inputs, reference,
                                                                    tmp_path):
    d = workdir(inputs, tmp_path)
    out = d / "out"

    def tmp_written() -> bool:
        return any(p.stat().st_size > 0 for p in out.glob("rom_sweep.h5.tmp-*")
                   if p.name.count(".tmp-") == 1)

    run_and_kill(["sweep", "run.toml"], d, "assemble:60", tmp_written)
    assert n_parts(out / "rom_sweep.h5.ckpt") == N_PARAMS
    assert not (out / "rom_sweep.h5").exists()
    res = run(["sweep", "run.toml"], d)
    assert f"resuming: {N_PARAMS} of {N_PARAMS}" in res.stderr
    assert "done on rank" not in res.stderr
    assert filecmp.cmp(reference, out / "rom_sweep.h5", shallow=False)
    assert leftovers(out) == []


def test_example_rom_sweep_config_is_valid():
    from fom.config import load_config
    from rom.online import rom_settings
    from rom.sweep import SWEEP_SCHEMA, sweep_parameters

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" /
                      "burgers1d_rom_sweep.toml")
    sec = cfg.section("sweep", SWEEP_SCHEMA)
    assert sec["kind"] == "rom"
    problem = fom.get_problem("burgers1d")
    assert sweep_parameters(sec["params"], problem, "x").shape == (6, 2)
    assert rom_settings(cfg)["methods"] == ["pod-lspg", "pod-galerkin"]


def test_rom_sweep_without_states_keeps_the_errors(inputs, tmp_path, monkeypatch):
    """``store_states = false``: no states in the file, the same errors."""
    rom = 'methods = ["pod-lspg"]\nlatent_dims = [2]'
    d = workdir(inputs, tmp_path, rom)
    monkeypatch.chdir(d)
    full = read_results(sweep("run.toml", progress=False, comm=None))
    write_config(d, rom + "\nstore_states = false", output="lean.h5")
    lean = read_results(sweep("run.toml", progress=False, comm=None))
    assert lean.reference is None and lean.runs["pod-lspg-p2"].states is None
    np.testing.assert_array_equal(lean.runs["pod-lspg-p2"].relative_error,
                                  full.runs["pod-lspg-p2"].relative_error)
    np.testing.assert_array_equal(lean.runs["pod-lspg-p2"].latent,
                                  full.runs["pod-lspg-p2"].latent)
