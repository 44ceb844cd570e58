"""Kill and resume: ``mrom sweep`` and ``mrom snapshots`` killed by SIGKILL at several moments,
started again with the same command, end with the same file as an uninterrupted run.

The runs are slowed down at chosen points with the ``MROM_TEST_PAUSE`` hook
(:func:`fom.snapshots.debug_pause`), so the kill lands where intended; each test checks the
state on disk at the kill, so a kill that came too late fails the test instead of passing it.
"""

from __future__ import annotations

import filecmp
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_processes import leftovers, n_parts, run, run_and_kill

SWEEP_CFG = """\
output_dir = "out"

[problem]
name = "burgers1d"
n_cells = 64
dt = 0.07
t_final = 3.5

[sweep]
output = "sweep.h5"

[sweep.params]
mu1 = { start = 4.25, stop = 5.5, num = 3 }
mu2 = [0.015, 0.03]
"""

SNAP_CFG = """\
output_dir = "out"

[problem]
name = "burgers1d"
n_cells = 64
dt = 0.07
t_final = 3.5

[snapshots]
train = [[4.25, 0.015], [4.5, 0.02], [4.75, 0.025], [5.0, 0.03], [5.25, 0.015], [5.5, 0.02]]
test = [[4.3, 0.021], [5.15, 0.0285]]
"""

N_SWEEP = 6


# ----------------------------------------------------------------------------- mrom sweep


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory) -> Path:
    """An uninterrupted serial sweep."""
    d = tmp_path_factory.mktemp("ref")
    (d / "sweep.toml").write_text(SWEEP_CFG)
    run(["sweep", "-q", "sweep.toml"], d)
    return d / "out" / "sweep.h5"


def _tmp_result_written(out: Path) -> bool:
    """The final file's temporary twin is fully written but not yet renamed."""
    return any(p.stat().st_size > 0 for p in out.glob("sweep.h5.tmp-*")
               if p.name.count(".tmp-") == 1) if out.exists() else False


SWEEP_KILLS = {
    # name: (pause spec, kill when, check of the disk state at the kill)
    "after-one-part": ("commit:0.4", lambda out: n_parts(out / "sweep.h5.ckpt") >= 1,
                       lambda out: 1 <= n_parts(out / "sweep.h5.ckpt") < N_SWEEP),
    "after-four-parts": ("commit:0.4", lambda out: n_parts(out / "sweep.h5.ckpt") >= 4,
                         lambda out: 4 <= n_parts(out / "sweep.h5.ckpt") < N_SWEEP),
    "during-assembly": ("assemble:60", _tmp_result_written,
                        lambda out: n_parts(out / "sweep.h5.ckpt") == N_SWEEP),
    "before-cleanup": ("cleanup:60", lambda out: (out / "sweep.log.json").exists(),
                       lambda out: (out / "sweep.h5.ckpt").exists()),
}


@pytest.mark.parametrize("moment", list(SWEEP_KILLS))
def test_sweep_killed_resumes_to_the_identical_file(tmp_path, sweep_reference, moment):
    pause, when, state_ok = SWEEP_KILLS[moment]
    (tmp_path / "sweep.toml").write_text(SWEEP_CFG)
    out = tmp_path / "out"
    run_and_kill(["sweep", "sweep.toml"], tmp_path, pause, lambda: when(out))
    assert state_ok(out)
    final = out / "sweep.h5"
    if moment != "before-cleanup":
        assert not final.exists()           # a partial result is never taken for a result
    res = run(["sweep", "sweep.toml"], tmp_path)
    if moment == "before-cleanup":
        assert "already complete" in res.stderr
    else:
        assert "resuming:" in res.stderr    # it continued from the checkpoint ...
        n_new = res.stderr.count("done on rank")
        assert n_new == N_SWEEP - int(res.stderr.split("resuming: ")[1].split()[0])
    assert filecmp.cmp(sweep_reference, final, shallow=False)   # ... to the same bytes
    assert leftovers(out) == []


@pytest.mark.mpi
def test_mpi_sweep_killed_resumes_under_mpi(tmp_path, sweep_reference):
    (tmp_path / "sweep.toml").write_text(SWEEP_CFG)
    out = tmp_path / "out"
    ckpt = out / "sweep.h5.ckpt"
    run_and_kill(["sweep", "sweep.toml"], tmp_path, "commit:0.4", lambda: n_parts(ckpt) >= 2,
                 n_ranks=2)
    assert 2 <= n_parts(ckpt) < N_SWEEP and not (out / "sweep.h5").exists()
    res = run(["sweep", "sweep.toml"], tmp_path, n_ranks=2)
    assert "resuming:" in res.stderr
    assert filecmp.cmp(sweep_reference, out / "sweep.h5", shallow=False)
    assert leftovers(out) == []


# ----------------------------------------------------------------------------- mrom snapshots


@pytest.fixture(scope="module")
def snapshot_reference(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("snapref")
    (d / "cfg.toml").write_text(SNAP_CFG)
    run(["snapshots", "-q", "cfg.toml"], d)
    return d / "out"


def same_snapshot_content(a: Path, b: Path) -> None:
    """Dataset for dataset and attribute for attribute, except what legitimately differs
    between two runs of ``mrom snapshots``: the ``created`` time and ``/stats/wall_s``."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert names_a == names_b
        for name in names_a:
            if isinstance(fa[name], h5py.Dataset) and name != "stats/wall_s":
                assert fa[name].dtype == fb[name].dtype
                np.testing.assert_array_equal(fa[name][()], fb[name][()], err_msg=name)
        skip = {"created"}
        assert {k: v for k, v in fa.attrs.items() if k not in skip} == \
               {k: v for k, v in fb.attrs.items() if k not in skip}


SNAP_KILLS = {
    "after-one-part": ("commit:0.4", lambda out: n_parts(out / "train.h5.ckpt") >= 1,
                       lambda out: 1 <= n_parts(out / "train.h5.ckpt") < 6),
    "after-four-parts": ("commit:0.4", lambda out: n_parts(out / "train.h5.ckpt") >= 4,
                         lambda out: 4 <= n_parts(out / "train.h5.ckpt") < 6),
    "after-writing-before-cleanup": ("assemble:60", lambda out: (out / "train.h5").exists(),
                                     lambda out: (out / "train.h5.ckpt").exists()),
}


@pytest.mark.parametrize("moment", list(SNAP_KILLS))
def test_snapshots_killed_resume_to_the_same_content(tmp_path, snapshot_reference, moment):
    pause, when, state_ok = SNAP_KILLS[moment]
    (tmp_path / "cfg.toml").write_text(SNAP_CFG)
    out = tmp_path / "out"
    run_and_kill(["snapshots", "cfg.toml"], tmp_path, pause, lambda: when(out))
    assert state_ok(out)
    kept = {}
    if moment != "after-writing-before-cleanup":
        assert not (out / "train.h5").exists()
        for part in (out / "train.h5.ckpt").glob("traj_*.h5"):
            with h5py.File(part, "r") as f:
                kept[int(part.stem.split("_")[1])] = float(f.attrs["wall_s"])
        assert kept
    run(["snapshots", "-q", "cfg.toml"], tmp_path)
    for name in ("train.h5", "test.h5"):
        same_snapshot_content(snapshot_reference / name, out / name)
    assert leftovers(out) == []
    with h5py.File(out / "train.h5", "r") as f:
        wall = f["stats/wall_s"][()]
    for i, w in kept.items():   # the trajectories committed before the kill were not redone
        assert wall[i] == w
