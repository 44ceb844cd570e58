"""The flame's recipe selection on held-out training trajectories only (README "Flame results").

Two of the 16 training trajectories, the interior grid points (A1, E2) and (A2, E1) (indices
6 and 9 of the A-slowest 4 x 4 grid), are held out whole (``[training] validation_params``).
A candidate trains a p = 3 model (``examples/flame2d.toml`` with the candidate's
``[training]`` keys on top) on the other 14 and is scored by Deep LSPG's relative error at the
two held-out parameters against their FOM trajectories from the training file; POD-LSPG on the
same 14 trajectories and both projection errors are printed beside it. The test file is never
opened. Writes ``<out>/<name>/p<p>`` (the model) and ``<out>/<name>/result_p<p>.json``.

    python benchmarks/flame_select.py NAME '{"snapshot_stride": 6, "epochs": 120}' [--p P]

The candidates compared for ``examples/flame2d.toml`` (batch 64, lr 2e-3 cosine, initial
state weighted 10x, on top): ``A`` = ``'{"epochs": 60}'``, ``B`` = ``'{"snapshot_stride": 6,
"epochs": 120}'`` (first round), then ``C`` = ``'{"epochs": 300}'`` (every 3rd step) and ``D`` =
``'{"epochs": 150, "snapshot_stride": 1}'``. Run two at once with ``TF_NUM_INTRAOP_THREADS=1``
each.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = [6, 9]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("training", help="JSON object of [training] keys")
    parser.add_argument("--p", type=int, default=3)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "flame2d.toml")
    parser.add_argument("--out", type=Path, default=Path("output/flame_select"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from autoencoder.settings import AUTOENCODER_SCHEMA, TRAINING_SCHEMA, check_architecture
    from autoencoder.train import restriction_from_config, train_model
    from fom.config import RunConfig, load_config, parse_section
    from fom.snapshots import read_snapshots, snapshot_paths
    from rom.manifolds import AffineManifold, DecoderManifold
    from rom.metrics import field_errors, projection_error
    from rom.online import rom_options, rom_settings, run_rom

    base = load_config(args.config)
    snap = read_snapshots(snapshot_paths(base)["train"])
    sections = copy.deepcopy(base.sections)
    sections["autoencoder"]["latent_dims"] = [args.p]
    sections["training"].update(json.loads(args.training))
    sections["training"]["validation_every"] = 0
    sections["training"]["validation_params"] = [snap.mu[i].tolist() for i in HELD_OUT]
    cfg = RunConfig(base.path, base.output_dir, sections)
    arch = check_architecture(parse_section(sections["autoencoder"], AUTOENCODER_SCHEMA,
                                            cfg.where("autoencoder")), cfg.where("autoencoder"))
    tr = parse_section(sections["training"], TRAINING_SCHEMA, cfg.where("training"))
    folder = args.out / args.name / f"p{args.p}"
    t0, c0 = time.perf_counter(), time.process_time()
    train_model(snap, restriction_from_config(cfg, arch), args.p, arch, tr, folder)
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0

    keep = [i for i in range(snap.n_mu) if i not in HELD_OUT]
    rest = dataclasses.replace(snap, mu=snap.mu[keep], states=snap.states[keep])
    manifolds = {"deep": DecoderManifold.load(folder),
                 "pod": AffineManifold.from_snapshots(rest, args.p, center="initial")}
    problem, opts = snap.problem(), rom_options(rom_settings(cfg))
    res = {"name": args.name, "training": json.loads(args.training), "p": args.p,
           "train_wall_s": train_s, "train_cpu_s": cpu_s, "val": []}
    for i in HELD_OUT:
        x = snap.states[i]
        row: dict = {"mu": snap.mu[i].tolist()}
        for kind, m in manifolds.items():
            t1 = time.perf_counter()
            r, err, fail = run_rom(problem, m, snap.mu[i], "lspg", x, scheme="backward_euler",
                                   dt=problem.dt, t_final=problem.t_final, options=opts)
            fields = (field_errors(x, r.states, len(problem.fields))[0].tolist() if not fail
                      else [float("nan")] * len(problem.fields))
            row[kind] = {"lspg": err, "fields": fields, "proj": projection_error(m, x),
                         "wall_s": time.perf_counter() - t1, "failure": fail}
        res["val"].append(row)
        print(json.dumps(row), flush=True)
    res["score"] = float(np.mean([r["deep"]["lspg"] for r in res["val"]]))
    print(f"{args.name}: validation Deep LSPG mean {100 * res['score']:.3g} % "
          f"(train {train_s:.0f} s wall, {cpu_s:.0f} s CPU)")
    from fom.atomic import write_text_atomic
    write_text_atomic(args.out / args.name / f"result_p{args.p}.json", json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
