"""Choosing between autoencoders trained with different seeds by running Deep LSPG on them.

On the 1D Burgers study the seed of the training changes Deep LSPG's error far more than the
recipe does: one recipe, trained on the same 64 trajectories with seeds 0, 1 and 2, gave Deep
LSPG errors of at most 1.6 %, 5.5 % and 40 % at 16 held-out trajectories, with equally low
reconstruction losses (README, "The seed matters more than the recipe"). The bad seeds'
manifolds have kinks where the ROM's shock stalls, and those show at the *training*
parameters as well: Deep LSPG run at trajectories the model was trained on gives nearly the
same errors as at held-out ones (and the same order of the seeds). So a model can be checked
with training data alone, after a refit on every trajectory, on any machine.

``[training] n_seeds = K > 1`` trains K models per ``p`` (seeds ``seed .. seed + K - 1``;
:func:`autoencoder.train.train_from_config`), runs Deep LSPG with each at every
``seed_check_every``-th trajectory trained on (the FOM states of the training file are the
reference: no FOM run, no held-out or test data), and keeps the model whose largest error
there is lowest (a run that does not converge counts as infinite; ties go to the lower mean).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from autoencoder.data import validation_trajectories
from autoencoder.settings import TRAINING_SCHEMA
from autoencoder.train import (
    seed_list,
    seed_model_dir,
    settings_from_config,
    train_from_config,
)
from fom.config import RunConfig, load_config
from fom.errors import InputError
from fom.snapshots import SnapshotSet, snapshot_paths, snapshots_from_config

from .online import load_model, model_dir, rom_options, rom_settings, run_rom, time_grid
from .processes import run_commands, threads_per_job

#: The method of the check.
CHECK_METHOD = "deep-lspg"


def check_trajectories(cfg: RunConfig, snap: SnapshotSet) -> np.ndarray:
    """Indices of the check trajectories: every ``seed_check_every``-th of those trained on
    (the validation trajectories, if any, are left out: they are not training data)."""
    tr = cfg.section("training", TRAINING_SCHEMA)
    held = validation_trajectories(snap.mu, tr["validation_every"], tr["validation_params"],
                                   cfg.where("training"))
    trained_on = np.setdiff1d(np.arange(snap.n_mu), held)
    return trained_on[::tr["seed_check_every"]]


def check_errors(cfg: RunConfig, snap: SnapshotSet, folder: Path,
                 trajectories: np.ndarray) -> np.ndarray:
    """Deep LSPG's relative error (over the trajectory) with the model in ``folder`` at the
    training trajectories ``trajectories`` (``[rom]`` solver settings; NaN where it fails)."""
    sec = rom_settings(cfg)
    opts = rom_options(sec)
    problem = snap.problem()
    dt, scheme, steps = time_grid(snap)
    manifold = load_model(folder, sec["projection"])
    return np.array([run_rom(problem, manifold, snap.mu[i], "lspg", snap.states[i],
                             scheme=scheme, dt=dt, t_final=float(snap.t[-1]), options=opts,
                             on_failure="record", steps=steps)[1] for i in trajectories])


def score(errors: np.ndarray) -> tuple[float, float]:
    """``(largest, mean)`` of a model's check errors, a failure (NaN) counted as infinite:
    the smaller tuple is the better model."""
    e = np.where(np.isfinite(errors), errors, np.inf)
    return float(np.max(e)), float(np.mean(e))


def select_by_rom(cfg: RunConfig, snap: SnapshotSet, p: int,
                  folders: list[Path]) -> tuple[int, dict[str, Any]]:
    """The :data:`autoencoder.train.Selector` of ``mrom train``: the model with the lowest
    :func:`score` of :func:`check_errors` at :func:`check_trajectories`, and the record."""
    traj = check_trajectories(cfg, snap)
    errors = [check_errors(cfg, snap, f, traj) for f in folders]
    scores = [score(e) for e in errors]
    best = min(range(len(folders)), key=lambda k: scores[k])

    def pct(v: float) -> str:
        return f"{100 * v:.3g} %" if np.isfinite(v) else "failed"

    summary = "; ".join(f"{f.name}: max {pct(s[0])}, mean {pct(s[1])}"
                        for f, s in zip(folders, scores, strict=True))
    return best, {
        "method": CHECK_METHOD, "check_trajectories": traj.tolist(),
        "check_mu": snap.mu[traj].tolist(),
        "errors": [[float(x) for x in e] for e in errors],
        "max": [s[0] for s in scores], "mean": [s[1] for s in scores],
        "models": [str(f) for f in folders], "summary": f"Deep LSPG at the check "
        f"trajectories, {summary}"}


def train_models(config: str | os.PathLike | RunConfig, latent_dims: list[int] | None = None,
                 progress: bool = True, jobs: int = 1) -> list[Path]:
    """``mrom train CONFIG``: :func:`autoencoder.train.train_from_config` with the seed
    selection of :func:`select_by_rom` (used when ``[training] n_seeds > 1``).

    With ``jobs > 1`` the seeds' models are first trained in up to ``jobs`` processes at once
    (:func:`train_seeds_in_parallel`); each process gets ``cores // jobs`` TensorFlow threads.
    """
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if jobs > 1:
        train_seeds_in_parallel(cfg, latent_dims, jobs, progress)
    return train_from_config(cfg, latent_dims, progress, select=select_by_rom)


def train_seeds_in_parallel(cfg: RunConfig, latent_dims: list[int] | None, jobs: int,
                            progress: bool) -> None:
    """Train every (p, seed) model of ``n_seeds > 1`` in up to ``jobs`` subprocesses at once
    (``python -m rom.seed_selection JSON``; their output goes to ``<seed folder>.log``).

    One TensorFlow thread trains the paper's network about as fast as two
    (``benchmarks/training_speed.py``), so on 2 cores two seeds train in about the time of
    one. A model already complete is skipped by the subprocess as by a serial run.

    Raises
    ------
    RuntimeError
        If a subprocess fails (its log is named).
    """
    arch, tr = settings_from_config(cfg)
    if tr["n_seeds"] == 1:
        return
    dims = list(latent_dims) if latent_dims else list(arch["latent_dims"])
    cfg.check_output_dir()
    if not snapshot_paths(cfg)["train"].exists():  # once, before the processes need them
        snapshots_from_config(cfg, progress=progress)
    spec = {"path": str(cfg.path), "output_dir": str(cfg.output_dir),
            "sections": cfg.sections}
    commands = [([sys.executable, "-m", "rom.seed_selection",
                  json.dumps({**spec, "p": p, "seed": s})],
                 seed_model_dir(model_dir(cfg, p), s).with_suffix(".log"))
                for p in dims for s in seed_list(tr)]
    run_commands(commands, jobs, threads_per_job(jobs),
                 started="training a seed's model (log: {log})" if progress else None)


def _train_one_seed(spec: dict[str, Any]) -> None:
    """The subprocess of :func:`train_seeds_in_parallel`: one (p, seed) model."""
    cfg = RunConfig(Path(spec["path"]), Path(spec["output_dir"]), spec["sections"])
    train_from_config(cfg, [int(spec["p"])], progress=True, only_seed=int(spec["seed"]))


if __name__ == "__main__":
    _train_one_seed(json.loads(sys.argv[1]))
