"""The training-recipe selection protocol of the 1D Burgers study: validation trajectories only.

Every candidate recipe trains a p = 3 autoencoder on the paper's training grid *without* its
validation trajectories (``validation_every = 5``: 16 of the 80 parameters, held out whole),
then Deep LSPG runs at those 16 validation parameters (``mrom sweep``, ``kind = "rom"``). The
candidate's score is the *largest* of the 16 relative errors (a run that fails to converge
scores infinity; ties go to the lower mean): the study's targets bound the worst parameter of
a set, and a mean hides a parameter region where the manifold folds. The test parameters and
their snapshot file are never read: the candidate folders hold only the training snapshots.
Every candidate but the hard-example ones fits the training-time target (10 minutes per p on
a 2-core machine, every stage of both seeds of the refit on the 80 trajectories, two at once):
about 330 s of stage 0 per seed on one thread, and up to about 220 s for a fine-tuning stage
(Intel Xeon, a CPU with AVX-512; about 2x as long on a CPU with AVX2 only, where the target
is missed, and 3x before ``autoencoder`` turned TensorFlow's oneDNN kernels on there: README,
"Training time"); the hard-example candidates were trained when the weights
recomputed every snapshot's error each epoch, which took 2.8x as long (now only the training
snapshots': 1.4x). Three greedy rounds:

1. how to spend the stage-0 budget: batch size, learning rate, snapshot stride, epochs (the
   candidates cost about the same);
2. on the round-1 winner: the weights of the loss: of the initial states
   (``initial_state_weight``), and hard-example weights that favour the snapshots the model
   fits worst (``hard_example_exponent``; on the validation trajectories most of Deep LSPG's
   error is made in the few steps in which the shock leaves the domain, which few snapshots
   sample), and a penalty on the encoder's relative latent acceleration along the training
   trajectories (``latent_smoothness_weight``);
3. on the round-2 winner: no fine-tuning stage, or one of the residual fine-tuning stages
   (``autoencoder/residual.py``) that continue from it, for p = 3 only: the whole linearized
   residual, or its tangent part (``residual_projection = "tangent"``: the part Gauss-Newton
   acts on) at several weights, learning rates, lengths, strides and normalizations. They
   continue from the same stage-0 weights, so the seed's draw is common to all of them. A
   tangent stage of 20 epochs at every 2nd step takes about 220 s per seed (one thread,
   Intel Xeon): inside the target with the refit's two seeds.

The winner's ``[training]`` section, with ``validation_every = 0`` (the final model is refit
on all 80 trajectories with the same recipe and number of epochs: no decision in it depends on
data), is the recipe ``examples/burgers1d.toml`` must hold; ``--check`` exits with status 1 if
it does not. The script prints the candidates, their validation errors and training times and
writes them to ``<out>/candidates.json``. Trained candidates are cached in ``<out>/<name>/``
(a rerun only trains what is missing).

``--seeds S`` then trains the winner's recipe with seeds 1 .. S-1 as well and prints their
validation errors: the spread between seeds of one recipe, against which the differences
between candidates can be judged (it changes no choice).

    python benchmarks/select_recipe.py [--out DIR] [--config CFG] [--check] [--rounds N]
                                       [--jobs K] [--seeds S]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
P = 3

#: Keys every candidate shares (the protocol's own settings, not choices).
COMMON: dict[str, Any] = {
    "validation_every": 5,          # the 16 validation trajectories, held out whole
    "seed": 0,
    "lr_schedule": "cosine",
    "lr_min": 1e-5,
    "keep_best": False,             # as in the refit, which has no validation set
    "patience": 10_000,             # no early stopping: a fixed number of epochs
}


@dataclass
class Candidate:
    """A recipe: ``[training]`` keys (on top of :data:`COMMON`) and fine-tuning stages."""

    name: str
    what: str
    training: dict[str, Any]
    finetune: list[dict[str, Any]] = field(default_factory=list)
    parent: str | None = None       # a candidate whose model the fine-tuning continues

    def section(self) -> dict[str, Any]:
        return {**COMMON, **self.training, "finetune": copy.deepcopy(self.finetune)}


STAGE0 = {"initial_state_weight": 10.0}


def stage0(batch: int, lr: str, stride: int, epochs: int) -> Candidate:
    """A round-1 candidate; its name and description are derived from its settings (the name
    is also its folder, so a rerun finds what an earlier run trained)."""
    step = {1: "", 2: "2nd ", 3: "3rd "}.get(stride, f"{stride}th ")
    return Candidate(f"b{batch}-s{stride}-e{epochs}",
                     f"batch {batch}, lr {lr}, every {step}step, {epochs} epochs",
                     {**STAGE0, "batch_size": batch, "learning_rate": float(lr),
                      "snapshot_stride": stride, "epochs": epochs})


#: Round 1: how to spend the stage-0 budget (batch size, learning rate, snapshot stride,
#: epochs). Each costs about 440 s when refit on the 80 trajectories on 2 cores (AMD EPYC
#: Zen 4: an epoch of batch 64 at every 4th step takes 2.2 s, batch 128 1.56 s, batch 32
#: 2.8 s, batch 64 at every 2nd step 4.1 s; benchmarks/training_speed.py), which leaves the
#: fine-tuning stage room inside the 10-minute target.
ROUND1 = [stage0(64, "3e-3", 4, 200), stage0(128, "3e-3", 4, 280),
          stage0(64, "3e-3", 2, 100), stage0(32, "2e-3", 4, 150)]

#: Round 2: the weights of the loss, on the round-1 winner: of the initial states,
#: hard-example weights ``(error / mean error)^q`` recomputed every epoch
#: (:func:`autoencoder.data.hard_example_weights`), and the latent-smoothness term against the
#: uneven latent speed that goes with a kink of the manifold (``latent_smoothness_weight``).
ROUND2 = [("isw0", "initial_state_weight 0", {"initial_state_weight": 0.0}),
          ("isw30", "initial_state_weight 30", {"initial_state_weight": 30.0}),
          ("hard05", "hard-example weights q = 0.5", {"hard_example_exponent": 0.5}),
          ("hard1", "hard-example weights q = 1", {"hard_example_exponent": 1.0}),
          ("smooth1e-4", "latent smoothness 1e-4", {"latent_smoothness_weight": 1e-4}),
          ("smooth1e-3", "latent smoothness 1e-3", {"latent_smoothness_weight": 1e-3})]

#: Round 3: fine-tuning stages on top of the round-2 winner (its name is the parent).
RESIDUAL = {"residual_weight": 10.0, "learning_rate": 5e-4, "batch_size": 128,
            "snapshot_stride": 2}
HARD = {"hard_example_measure": "residual", "hard_example_terms": "residual",
        "hard_example_exponent": 1.0}


def lr(v: float) -> str:
    """A learning rate as the tables write it (``5e-4``)."""
    return f"{v:.0e}".replace("e-0", "e-")


def tangent(weight: float, **kw: Any) -> tuple[str, str, dict[str, Any]]:
    """A round-3 candidate: the tangent residual stage (``residual_projection = "tangent"``:
    only the part of the linearized residual that Gauss-Newton acts on) on top of
    :data:`RESIDUAL`, 20 epochs unless ``kw`` says otherwise; name and description from its
    settings."""
    st = {**RESIDUAL, "residual_projection": "tangent", "residual_weight": weight,
          "epochs": 20, **kw}
    norm = st.get("residual_normalization", "none")
    stride = {2: "2nd", 3: "3rd"}.get(st["snapshot_stride"], f"{st['snapshot_stride']}th")
    # the name spells out what differs from RESIDUAL (the folder of a cached candidate)
    name = (f"tan{weight:g}" + ("" if norm == "none" else f"-{norm}")
            + ("" if st["learning_rate"] == RESIDUAL["learning_rate"]
               else f"-lr{lr(st['learning_rate'])}")
            + ("" if st["snapshot_stride"] == RESIDUAL["snapshot_stride"]
               else f"-s{st['snapshot_stride']}")
            + f"-e{st['epochs']}")
    what = (f"tangent residual term (weight {weight:g}"
            + ("" if norm == "none" else f", {norm} normalization")
            + f"), batch {st['batch_size']}, lr {lr(st['learning_rate'])}, every {stride} "
            f"step, {st['epochs']} epochs")
    return name, what, st


ROUND3 = [
    ("res10-e20", "residual term (weight 10), batch 128, lr 5e-4, every 2nd step, 20 epochs",
     {**RESIDUAL, "epochs": 20}),
    ("res30-e20", "residual term (weight 30), batch 128, lr 5e-4, every 2nd step, 20 epochs",
     {**RESIDUAL, "residual_weight": 30.0, "epochs": 20}),
    ("res100-e20", "residual term (weight 100), batch 128, lr 5e-4, every 2nd step, "
     "20 epochs", {**RESIDUAL, "residual_weight": 100.0, "epochs": 20}),
    ("res10-hard-e20", "residual term (weight 10), hard-example weights by step residual on "
     "the residual term (q = 1), batch 128, lr 5e-4, every 2nd step, 20 epochs",
     {**RESIDUAL, **HARD, "epochs": 20}),
    *(tangent(w, **kw) for w, kw in [
        (10.0, {}), (30.0, {}), (100.0, {}), (1000.0, {}),
        (30.0, {"learning_rate": 1e-3}), (30.0, {"learning_rate": 2e-3}),
        (30.0, {"epochs": 10}), (30.0, {"snapshot_stride": 4}),
        *((w, {"learning_rate": 1e-3, "residual_normalization": "trajectory"})
          for w in (10.0, 30.0, 100.0)),
        (1000.0, {"residual_normalization": "trajectory"}),
        (1000.0, {"residual_normalization": "step"}),
        (30.0, {"residual_normalization": "step"})]),
]


def variant(parent: Candidate, name: str, what: str, training: dict[str, Any],
            finetune: list[dict[str, Any]] | None = None) -> Candidate:
    """``parent`` with more ``[training]`` keys, or continued by ``finetune`` stages."""
    return Candidate(f"{parent.name}+{name}", f"{parent.what}; {what}",
                     {**parent.training, **training}, finetune or [],
                     parent.name if finetune else None)


def round2(parent: Candidate) -> list[Candidate]:
    """Round 2's candidates on the round-1 winner ``parent`` (itself first)."""
    return [parent] + [variant(parent, *v) for v in ROUND2]


def round3(parent: Candidate) -> list[Candidate]:
    """Round 3's candidates on the round-2 winner ``parent`` (itself first): each stage of
    :data:`ROUND3` for p = 3 only (the protocol validates no other p)."""
    return [parent] + [variant(parent, name, f"then {what}", {},
                               [{**stage, "latent_dims": [P]}])
                       for name, what, stage in ROUND3]


def machine() -> str:
    """The CPU (:func:`fom_speed.cpu_model`) and its number of cpus."""
    from fom_speed import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cpus"


def candidate_config(base: Any, cand: Candidate, out: Path) -> Any:
    """The run config of a candidate: the base config's problem, snapshots, architecture and
    solver settings, the candidate's ``[training]``, a validation ``[sweep]``."""
    from autoencoder.data import validation_trajectories
    from fom.config import RunConfig
    from fom.snapshots import read_snapshots, snapshot_paths

    folder = out / cand.name
    sections = copy.deepcopy(base.sections)
    sections["autoencoder"]["latent_dims"] = [P]
    sections["training"] = cand.section()
    train = read_snapshots(snapshot_paths(base)["train"])
    val = validation_trajectories(train.mu, COMMON["validation_every"], [], "protocol")
    sections["rom"] = {**sections.get("rom", {}), "methods": ["deep-lspg", "pod-lspg"],
                       "latent_dims": [P], "store_states": False, "on_failure": "record"}
    sections["sweep"] = {"kind": "rom", "output": "validation.h5",
                         "scheme": sections.get("snapshots", {}).get("scheme",
                                                                     "backward_euler"),
                         "params": train.mu[val].tolist()}
    return RunConfig(base.path, folder, sections)


def prepare_folder(base: Any, cfg: Any, parent: Path | None) -> None:
    """The candidate folder: the training snapshots (a hard link; no test file), and for a
    fine-tuning candidate a copy of its parent's trained model to continue from."""
    from fom.snapshots import snapshot_paths

    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    src, dst = snapshot_paths(base)["train"], snapshot_paths(cfg)["train"]
    if not dst.exists():
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    model = cfg.output_dir / "models" / f"p{P}"
    if parent is not None and not (model / "manifest.json").exists():
        shutil.copytree(parent / "models" / f"p{P}", model, dirs_exist_ok=True)


def evaluate(base: Any, cand: Candidate, out: Path) -> dict[str, Any]:
    """Train a candidate (or load it from its folder) and run the ROMs at the validation
    parameters."""
    from autoencoder.train import train_from_config
    from rom.results import read_results
    from rom.sweep import sweep

    cfg = candidate_config(base, cand, out)
    prepare_folder(base, cfg, out / cand.parent if cand.parent else None)
    t0 = time.perf_counter()
    train_from_config(cfg, progress=False)
    wall = time.perf_counter() - t0
    man = json.loads((cfg.output_dir / "models" / f"p{P}" / "manifest.json").read_text())
    stages = man["training_result"]["stages"]
    path = sweep(cfg, progress=False, comm=None)
    rs = read_results(path)
    deep, pod = rs.runs[f"deep-lspg-p{P}"], rs.runs[f"pod-lspg-p{P}"]
    err = np.where(np.isfinite(deep.relative_error), deep.relative_error, np.inf)
    return {
        "name": cand.name, "what": cand.what, "parent": cand.parent,
        "training": cand.section(),
        "validation_mu": rs.mu.tolist(),
        "deep_lspg": deep.relative_error.tolist(), "pod_lspg": pod.relative_error.tolist(),
        "failures": [f for f in deep.failures if f],
        "score": float(np.max(err)), "mean": float(np.mean(err)),
        "median": float(np.median(err)), "max": float(np.max(err)),
        "train_s": sum(s.get("train_time_s", 0.0) for s in stages),
        "train_cpu_s": sum(s.get("train_cpu_s", 0.0) for s in stages),
        "stages": stages, "call_s": wall,
    }


def is_done(cand: Candidate, out: Path) -> bool:
    """Whether a candidate's model and validation results are in its folder."""
    return (out / cand.name / "validation.h5").is_file()


def train_in_parallel(cands: list[Candidate], args: argparse.Namespace) -> None:
    """Train and validate ``cands`` in up to ``args.jobs`` subprocesses at once (each one
    ``--candidate JSON``; logs in ``<out>/<name>.log``), each with its share of the cores as
    TensorFlow threads (:func:`rom.processes.threads_per_job`)."""
    from rom.processes import run_commands, threads_per_job

    run_commands([([sys.executable, __file__, "--config", str(args.config), "--out",
                    str(args.out), "--candidate", json.dumps(asdict(c))],
                   args.out / f"{c.name}.log") for c in cands],
                 args.jobs, threads_per_job(args.jobs))


def fmt(v: float) -> str:
    return "fail" if not math.isfinite(v) else f"{100 * v:.3g} %"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| candidate | recipe | max (score) | mean | median | POD-LSPG mean | train (s) | "
             "train CPU (s) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['what']} | {fmt(r['max'])} | {fmt(r['mean'])} | "
                     f"{fmt(r['median'])} | {fmt(float(np.nanmean(r['pod_lspg'])))} | "
                     f"{r['train_s']:.0f} | {r['train_cpu_s']:.0f} |")
    return "\n".join(lines)


def recipe(section: dict[str, Any]) -> dict[str, Any]:
    """A ``[training]`` section as a recipe: validated, without the validation split and the
    keys that do not change the trained model."""
    from autoencoder.settings import RUN_CONTROL_KEYS, TRAINING_SCHEMA, training_stages
    from fom.config import parse_section

    tr = parse_section(section, TRAINING_SCHEMA, "recipe")
    # patience and keep_best act on the validation loss only: no effect in the refit; the
    # refit's seeds (n_seeds, checked on training data) are how it is trained, not a recipe
    drop = {"validation_every", "validation_params", "patience", "keep_best", "n_seeds",
            "seed_check_every", *RUN_CONTROL_KEYS}
    return {"stages": [({k: v for k, v in st.items() if k not in drop}, dims)
                       for st, dims in training_stages(tr, "recipe")]}


def main(argv: list[str] | None = None) -> int:
    from fom.atomic import write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "burgers1d.toml",
                        help="problem, snapshots, architecture and ROM settings")
    parser.add_argument("--out", type=Path, default=Path("output/select_recipe"))
    parser.add_argument("--rounds", type=int, default=3, choices=(1, 2, 3),
                        help="stop after this round")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train up to this many candidates of a round at once")
    parser.add_argument("--candidate", help=argparse.SUPPRESS)  # one candidate (JSON)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the config's [training] is the winner's recipe")
    parser.add_argument("--seeds", type=int, default=1,
                        help="also train the winner with seeds 1 .. SEEDS-1 and print their "
                             "validation errors (the seed spread; it changes no choice)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fom.config import load_config
    from fom.snapshots import snapshot_paths, snapshots_from_config

    base = load_config(args.config)
    if not snapshot_paths(base)["train"].exists():
        snapshots_from_config(base, progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.candidate:  # a worker of train_in_parallel
        evaluate(base, Candidate(**json.loads(args.candidate)), args.out)
        return 0
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, Any] = {"machine": machine(), "p": P, "common": COMMON, "rounds": []}

    def evaluate_all(cands: list[Candidate], title: str) -> list[dict[str, Any]]:
        """Train (``--jobs`` at once) and validate ``cands``; their rows, in order."""
        if args.jobs > 1:
            train_in_parallel([c for c in cands if not is_done(c, args.out)], args)
        rows = []
        for cand in cands:
            print(f"{title}: {cand.name} ({cand.what}) ...", flush=True)
            row = evaluate(base, cand, args.out)
            rows.append(row)
            print(f"  validation Deep LSPG max {fmt(row['max'])}, mean {fmt(row['mean'])}, "
                  f"{len(row['failures'])} failures; training {row['train_s']:.0f} s "
                  f"({row['train_cpu_s']:.0f} s CPU)", flush=True)
        return rows

    def run_round(cands: list[Candidate], title: str) -> dict[str, Any]:
        rows = evaluate_all(cands, title)
        best = min(rows, key=lambda r: (r["score"], r["mean"]))
        results["rounds"].append({"title": title, "candidates": rows, "winner": best["name"]})
        write_text_atomic(args.out / "candidates.json", json.dumps(results, indent=1))
        print(f"\n{title}\n\n{table(rows)}\n\nwinner: {best['name']}\n", flush=True)
        return best

    def winner(cands: list[Candidate], row: dict[str, Any]) -> Candidate:
        return next(c for c in cands if c.name == row["name"])

    cands = ROUND1
    best = run_round(cands, "round 1: stage-0 budget")
    if args.rounds >= 2:
        cands = round2(winner(cands, best))
        best = run_round(cands, "round 2: weights of the loss")
    if args.rounds >= 3:
        cands = round3(winner(cands, best))
        best = run_round(cands, "round 3: fine-tuning stages")
    if args.seeds > 1:
        parent = winner(cands, best)
        # every stage from scratch with another seed (not continued from the winner's model)
        spread = [parent] + [Candidate(f"{parent.name}+seed{k}", f"{parent.what}; seed {k}",
                                       {**parent.training, "seed": k},
                                       copy.deepcopy(parent.finetune))
                             for k in range(1, args.seeds)]
        rows = evaluate_all(spread, "seed spread")
        results["seed_spread"] = rows
        print(f"\nseed spread of the winner (no choice is made here)\n\n{table(rows)}\n",
              flush=True)
    chosen = {**best["training"], "validation_every": 0}
    results["chosen"] = {"name": best["name"], "training": chosen}
    write_text_atomic(args.out / "candidates.json", json.dumps(results, indent=1))
    print(f"chosen recipe ({best['name']}), refit on every training trajectory:\n"
          f"{json.dumps(chosen, indent=1)}")
    print(f"wrote {args.out / 'candidates.json'}")
    if args.check:
        have = recipe(base.sections.get("training", {}))
        if have != recipe(chosen):
            print(f"FAIL: the [training] recipe of {args.config} is not the protocol's choice",
                  file=sys.stderr)
            return 1
        print(f"PASS: {args.config} holds the protocol's choice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
