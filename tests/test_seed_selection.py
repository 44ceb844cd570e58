"""``[training] n_seeds``: several seeds per model, the one kept chosen by Deep LSPG at
training trajectories (rom/seed_selection.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_configs import tiny_config

from autoencoder.data import validation_trajectories
from fom.config import load_config
from fom.errors import InputError
from fom.snapshots import read_snapshots
from rom.cli import main
from rom.manifolds import DecoderManifold
from rom.metrics import relative_error
from rom.projection import solve_rom
from rom.seed_selection import check_trajectories, score

SEEDS = "n_seeds = 2\nseed_check_every = 1\nvalidation_every = 0\n"


def _config(tmp_path: Path, training: str) -> Path:
    text = tiny_config(str(tmp_path / "out")).replace("epochs = 2\n", f"epochs = 2\n{training}")
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_train_keeps_the_seed_with_the_lowest_check_error(tmp_path, capsys) -> None:
    cfg_path = _config(tmp_path, SEEDS)
    assert main(["train", str(cfg_path)]) == 0
    models = tmp_path / "out" / "models"
    seeds = [models / "p2.seeds" / f"seed{s}" for s in (0, 1)]
    man = json.loads((models / "p2" / "manifest.json").read_text())
    sel = man["seed_selection"]
    assert sel["seeds"] == [0, 1] and sel["check_trajectories"] == [0, 1, 2]
    # the recorded errors: Deep LSPG at the training trajectories, recomputed here directly
    snap = read_snapshots(tmp_path / "out" / "train.h5")
    for k, folder in enumerate(seeds):
        manifold = DecoderManifold.load(folder)
        for j, i in enumerate(sel["check_trajectories"]):
            res = solve_rom(snap.problem(), manifold, snap.mu[i], "lspg",
                            scheme="backward_euler", dt=float(snap.solver["dt"]),
                            t_final=float(snap.t[-1]))
            assert sel["errors"][k][j] == pytest.approx(
                relative_error(snap.states[i], res.states), rel=1e-9)
    # the chosen one has the lowest (largest error, mean error), and models/p2 is its copy
    scores = [score(np.array(e)) for e in sel["errors"]]
    assert scores[0] != scores[1]                       # the seeds do give other models
    best = min(range(2), key=lambda k: scores[k])
    assert sel["chosen_seed"] == best
    chosen = (seeds[best] / "exported.h5").read_bytes()
    assert (models / "p2" / "exported.h5").read_bytes() == chosen
    assert (seeds[1 - best] / "exported.h5").read_bytes() != chosen
    assert man["settings"]["training"]["seed"] == best
    # a second run keeps everything
    capsys.readouterr()
    assert main(["train", str(cfg_path)]) == 0
    assert "up to date (seed" in capsys.readouterr().out
    assert (models / "p2" / "exported.h5").read_bytes() == chosen


def test_check_trajectories_are_training_data_only(tmp_path) -> None:
    cfg = load_config(_config(tmp_path, "n_seeds = 2\nseed_check_every = 2\n"
                                        "validation_every = 2\n"))
    mu = np.array([[4.25, 0.015], [5.5, 0.03], [4.8, 0.022], [5.0, 0.02], [4.5, 0.025]])

    class Snap:
        n_mu = len(mu)

    Snap.mu = mu
    held = validation_trajectories(mu, 2, [], "t")
    got = check_trajectories(cfg, Snap())
    trained = np.setdiff1d(np.arange(len(mu)), held)
    assert held.size and not np.intersect1d(got, held).size
    np.testing.assert_array_equal(got, trained[::2])


def test_several_seeds_need_the_selection(tmp_path) -> None:
    from autoencoder.train import train_from_config

    with pytest.raises(InputError, match=r"\[training\] n_seeds: 2 models per p need a "
                                         "selection"):
        train_from_config(_config(tmp_path, SEEDS), progress=False)


def test_n_seeds_belongs_to_the_whole_model(tmp_path, capsys) -> None:
    path = _config(tmp_path, "[[training.finetune]]\nn_seeds = 2\n")
    assert main(["train", str(path)]) == 2
    assert ("[training] finetune[0] n_seeds: set it in [training] only"
            in capsys.readouterr().err)
    assert not (tmp_path / "out" / "models").exists()


def test_seeds_train_in_parallel_processes(tmp_path, capsys) -> None:
    """``mrom train --jobs 2``: each seed's model in its own process (with its log), then the
    same selection; a serial run afterwards finds everything up to date."""
    cfg_path = _config(tmp_path, SEEDS)
    assert main(["train", str(cfg_path), "--jobs", "2"]) == 0
    seeds = tmp_path / "out" / "models" / "p2.seeds"
    for s in (0, 1):
        assert (seeds / f"seed{s}" / "manifest.json").is_file()
        assert "wrote" in (seeds / f"seed{s}.log").read_text()
    man = json.loads((tmp_path / "out" / "models" / "p2" / "manifest.json").read_text())
    chosen = man["seed_selection"]["chosen_seed"]
    assert ((tmp_path / "out" / "models" / "p2" / "exported.h5").read_bytes()
            == (seeds / f"seed{chosen}" / "exported.h5").read_bytes())
    capsys.readouterr()
    assert main(["train", str(cfg_path)]) == 0
    assert "up to date (seed" in capsys.readouterr().out
    assert main(["train", str(cfg_path), "--jobs", "0"]) == 2


def test_run_commands_logs_each_and_stops_at_a_failure(tmp_path) -> None:
    import sys

    from rom.processes import run_commands, threads_per_job

    env = threads_per_job(2)
    assert env["TF_NUM_INTRAOP_THREADS"]
    ok = [([sys.executable, "-c", f"print('job {k}')"], tmp_path / f"{k}.log") for k in range(3)]
    run_commands(ok, 2, env)
    assert [(tmp_path / f"{k}.log").read_text() for k in range(3)] == [
        f"job {k}\n" for k in range(3)]
    slow = tmp_path / "slow.txt"
    bad = [([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "bad.log"),
           ([sys.executable, "-c", f"import time; time.sleep(30); open({str(slow)!r}, 'w')"],
            tmp_path / "slow.log")]
    with pytest.raises(RuntimeError, match=r"failed \(exit 3\); see .*bad\.log"):
        run_commands(bad, 2, env)
    assert not slow.exists()            # the other one was terminated, not waited for
