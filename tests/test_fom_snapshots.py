"""Snapshot files: layout, round trip, checkpoint/resume, CLI, and bad inputs."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import fom
from fom.snapshots import (
    generate_snapshots,
    paper_test_params,
    paper_train_grid,
    read_snapshots,
    write_snapshots,
)
from rom.cli import main

SMALL = {"n_cells": 32, "t_final": 0.7}


def test_paper_grids():
    grid = paper_train_grid()
    assert grid.shape == (80, 2)
    assert grid[0].tolist() == [4.25, 0.015]
    assert grid[-1] == pytest.approx([5.5, 0.03])
    assert np.unique(grid[:, 0]).size == 10 and np.unique(grid[:, 1]).size == 8
    assert paper_test_params().tolist() == [[4.3, 0.021], [5.15, 0.0285]]


def test_round_trip(tmp_path):
    prob = fom.Burgers1D(**SMALL)
    mus = [[4.3, 0.021], [5.0, 0.02]]
    out = generate_snapshots(prob, mus, tmp_path / "s.h5", progress=False)
    snap = read_snapshots(out)
    assert snap.states.shape == (2, 11, 32)
    assert snap.mu.tolist() == mus and snap.param_names == ("mu1", "mu2")
    assert snap.t[0] == 0.0 and snap.t[-1] == pytest.approx(0.7)
    assert np.array_equal(snap.grid["x"], prob.x)
    for i, mu in enumerate(mus):
        assert np.array_equal(snap.states[i], fom.solve(prob, mu).states)
    assert snap.problem().config() == prob.config()
    assert snap.solver["scheme"] == "backward_euler" and snap.solver["dt"] == 0.07
    assert {"created", "version", "problem"} <= set(snap.attrs)
    with h5py.File(out) as f:
        assert f["states"].chunks == (1, 11, 32)
        assert f["states"].dtype == np.float64
    assert not (tmp_path / "s.h5.ckpt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def test_resume_skips_committed_trajectories(tmp_path, monkeypatch):
    prob = fom.Burgers1D(**SMALL)
    mus = [[4.3, 0.021], [5.0, 0.02], [5.2, 0.025]]
    out = tmp_path / "s.h5"
    calls = []
    real = fom.snapshots.solve

    def failing_solve(problem, mu, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the job is killed during the third trajectory
        calls.append(mu)
        return real(problem, mu, **kw)

    monkeypatch.setattr(fom.snapshots, "solve", failing_solve)
    with pytest.raises(KeyboardInterrupt):
        generate_snapshots(prob, mus, out, progress=False)
    assert not out.exists()
    assert len(list((tmp_path / "s.h5.ckpt").glob("traj_*.h5"))) == 2
    calls.clear()
    monkeypatch.setattr(fom.snapshots, "solve", lambda p, mu, **kw: (calls.append(mu),
                                                                     real(p, mu, **kw))[1])
    generate_snapshots(prob, mus, out, progress=False)
    assert len(calls) == 1 and np.allclose(calls[0], mus[2])
    snap = read_snapshots(out)
    for i, mu in enumerate(mus):
        assert np.array_equal(snap.states[i], real(prob, mu).states)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    prob = fom.Burgers1D(**SMALL)
    out = tmp_path / "s.h5"
    (tmp_path / "s.h5.ckpt").mkdir()
    (tmp_path / "s.h5.ckpt" / "manifest.json").write_text(json.dumps({"problem": "other"}))
    with pytest.raises(fom.InputError, match="different run"):
        generate_snapshots(prob, [[4.3, 0.021]], out, progress=False)


def _write_valid(path):
    prob = fom.Burgers1D(**SMALL)
    return write_snapshots(path, prob, [fom.solve(prob, [4.3, 0.021])])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.__delitem__("states"), "missing dataset /states"),
        (lambda f: (f.__delitem__("t"), f.create_dataset("t", data=np.arange(5.0))),
         "/t has 5"),
        (lambda f: f["states"].__setitem__((0, 3, 4), np.nan), "NaN or Inf"),
        (lambda f: (f.__delitem__("mu"), f.create_dataset("mu", data=np.ones((1, 2), "i4"))),
         "dtype int32"),
        (lambda f: f.attrs.__delitem__("solver"), "attribute 'solver'"),
        (lambda f: f.attrs.__setitem__("problem_config", "{not json"), "not valid JSON"),
    ],
)
def test_reader_rejects_bad_files(tmp_path, mutate, message):
    path = _write_valid(tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(fom.InputError, match=message) as info:
        read_snapshots(path)
    assert str(path) in str(info.value)


def test_reader_rejects_truncated_and_missing_files(tmp_path):
    path = _write_valid(tmp_path / "s.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(fom.InputError, match="not a readable HDF5"):
        read_snapshots(path)
    with pytest.raises(fom.InputError, match="does not exist"):
        read_snapshots(tmp_path / "nope.h5")


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_the_test_parameter_file(tmp_path, capsys):
    out = tmp_path / "test.h5"
    code, stdout, _ = run_cli(["snapshots", "-q", "--problem", "burgers1d", "--mu", "4.3,0.021",
                               "--mu", "5.15,0.0285", "-o", str(out)], capsys)
    assert code == 0 and "wrote" in stdout
    snap = read_snapshots(out)
    assert snap.states.shape == (2, 501, 256)
    assert np.array_equal(snap.states[1], fom.solve(fom.Burgers1D(), [5.15, 0.0285]).states)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mu", "nan,0.02"], "finite"),
        (["--mu", "inf,0.02"], "finite"),
        (["--mu", "4.3"], "takes 2 parameters"),
        (["--mu", "4.3,0.02,1"], "takes 2 parameters"),
        (["--mu", "4.3,abc"], "comma-separated numbers"),
        (["--grid", "paper-everything"], "unknown parameter grid"),
    ],
)
def test_cli_bad_parameters(tmp_path, capsys, args, message):
    out = tmp_path / "x.h5"
    code, _, err = run_cli(["snapshots", "--problem", "burgers1d", *args, "-o", str(out)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mrom: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_cli_unknown_problem_and_unwritable_path(tmp_path, capsys):
    code, _, err = run_cli(["snapshots", "--problem", "heat3d", "--mu", "1,2", "-o",
                            str(tmp_path / "x.h5")], capsys)
    assert code == 2 and "unknown problem 'heat3d'" in err and err.count("\n") == 1
    code, _, err = run_cli(["snapshots", "--problem", "burgers1d", "--mu", "4.3,0.021", "-o",
                            str(tmp_path / "missing" / "x.h5")], capsys)
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run_cli(["snapshots", "--problem", "burgers1d", "--mu", "4.3,0.021",
                                "-o", str(ro / "x.h5")], capsys)
        if code == 0:  # running as root: permissions are not enforced
            pytest.skip("file permissions are not enforced for this user")
        assert code == 2 and "not writable" in err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]


def test_cli_from_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'output_dir = "{tmp_path / "out"}"\n[problem]\nname = "burgers1d"\n'
                   'n_cells = 32\nt_final = 0.7\n[snapshots]\ntrain = [[4.3, 0.021], [5.0, 0.02]]'
                   '\ntest = "paper-test"\n')
    proc = subprocess.run([sys.executable, "-m", "rom.cli", "snapshots", "-q", str(cfg)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_snapshots(tmp_path / "out" / "train.h5").states.shape == (2, 11, 32)
    assert read_snapshots(tmp_path / "out" / "test.h5").mu.tolist() == [[4.3, 0.021],
                                                                         [5.15, 0.0285]]
    cfg.write_text(cfg.read_text().replace("n_cells = 32", "n_cels = 32"))
    proc = subprocess.run([sys.executable, "-m", "rom.cli", "snapshots", str(cfg)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "c.toml [problem]" in proc.stderr and "n_cels" in proc.stderr
    assert proc.stderr.count("\n") == 1
