"""The paper's 1D Burgers study (Lee & Carlberg 2019, section 6.1; design.md problem 1).

For latent dimensions p = 1, 2, 3, 5, 10 at both test parameters: the relative state errors of
Deep LSPG, Deep Galerkin, POD-LSPG and POD-Galerkin, the projection errors of both trial
manifolds, each method's online wall time and the FOM's. The autoencoders are trained on the
paper's 80-parameter set with the settings of ``examples/burgers1d.toml`` (one model per p,
cached in ``output/burgers1d/models/p<p>`` and shared with ``mrom train``; a cached model is
reused only if its manifest matches the snapshot file and every setting).

    python benchmarks/paper_burgers.py [--full] [--json PATH] [--config CFG] [--out DIR]

``--full`` adds POD-LSPG/POD-Galerkin at p = 15, 20, 30, 50. Writes ``table.md``,
``results.json``, ``errors_vs_p.png`` (and the per-run report) to ``--out``
(default ``output/paper_burgers``), and prints the table and the acceptance checks of the
study: Deep LSPG below 1 % at p = 3 and at least 10x below POD-LSPG; Deep LSPG and Deep
Galerkin below their POD counterparts for every p <= 5. Exits with status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fom
from fom.atomic import write_text_atomic
from fom.config import RunConfig, load_config
from fom.snapshots import read_snapshots, snapshot_paths, snapshots_from_config

ROOT = Path(__file__).resolve().parents[1]
DIMS = [1, 2, 3, 5, 10]
POD_EXTRA = [15, 20, 30, 50]
METHODS = ["deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin"]
LABEL = {"deep-lspg": "Deep LSPG", "deep-galerkin": "Deep Galerkin", "pod-lspg": "POD-LSPG",
         "pod-galerkin": "POD-Galerkin"}


def with_dims(cfg: RunConfig, dims: list[int], methods: list[str]) -> RunConfig:
    """A copy of ``cfg`` that trains and runs ``methods`` at latent dimensions ``dims``."""
    sections = copy.deepcopy(cfg.sections)
    sections.setdefault("autoencoder", {})["latent_dims"] = dims
    rom = sections.setdefault("rom", {})
    rom["latent_dims"], rom["methods"] = dims, methods
    return RunConfig(cfg.path, cfg.output_dir, sections)


def fom_wall_times(cfg: RunConfig) -> list[float]:
    """Wall time of the numba FOM at each test parameter (kernels warmed up first)."""
    test = read_snapshots(snapshot_paths(cfg)["test"])
    problem = test.problem()
    fom.solve(problem, test.mu[0])
    out = []
    for mu in test.mu:
        t0 = time.perf_counter()
        fom.solve(problem, mu)
        out.append(time.perf_counter() - t0)
    return out


def fmt(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{100 * v:.3g} %"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "burgers1d.toml")
    parser.add_argument("--out", type=Path, default=Path("output/paper_burgers"))
    parser.add_argument("--full", action="store_true", help="add POD at p = 15, 20, 30, 50")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--dims", type=int, nargs="+", default=DIMS, help="latent dimensions")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from autoencoder.train import train_from_config
    from rom.online import roms_from_config
    from rom.report import report
    from rom.results import read_results

    base = load_config(args.config)
    cfg = with_dims(base, args.dims, METHODS)
    args.out.mkdir(parents=True, exist_ok=True)
    snapshots_from_config(cfg, progress=False)
    t0 = time.perf_counter()
    train_from_config(cfg, progress=True)
    train_s = time.perf_counter() - t0
    fom_s = fom_wall_times(cfg)

    files = [roms_from_config(cfg, progress=True, results_path=args.out / "deep_and_pod.h5")]
    if args.full:
        pod_cfg = with_dims(base, POD_EXTRA, ["pod-lspg", "pod-galerkin"])
        files.append(roms_from_config(pod_cfg, progress=True,
                                      results_path=args.out / "pod_large_p.h5"))
    report(files[0], out_dir=args.out, quiet=True, state_p=3 if 3 in args.dims else None)

    rows, err = [], {}
    for path in files:
        rs = read_results(path)
        for rec in rs.runs.values():
            for i, mu in enumerate(rs.mu.tolist()):
                rows.append({"method": rec.method, "p": rec.p, "mu": mu,
                             "error": float(rec.relative_error[i]),
                             "wall_s": float(rec.wall_s[i])})
                err[(rec.method, rec.p, i)] = float(rec.relative_error[i])
                kind = "projection-" + ("deep" if rec.method.startswith("deep") else "pod")
                if (kind, rec.p, i) not in err:
                    err[(kind, rec.p, i)] = float(rec.projection_error[i])
                    rows.append({"method": kind, "p": rec.p, "mu": mu,
                                 "error": float(rec.projection_error[i]), "wall_s": None})
        mus = rs.mu.tolist()
    for i, mu in enumerate(mus):
        rows.append({"method": "fom", "p": None, "mu": mu, "error": 0.0, "wall_s": fom_s[i]})

    # ---------------------------------------------------------------- table
    cols = [*METHODS, "projection-deep", "projection-pod"]
    heads = [*(LABEL[m] for m in METHODS), "proj. decoder", "proj. POD"]
    ps = sorted({r["p"] for r in rows if r["p"] is not None})
    lines = []
    for i, mu in enumerate(mus):
        lines += [f"\n**mu = ({mu[0]:g}, {mu[1]:g})**, relative state error "
                  f"(FOM {fom_s[i]:.3f} s)\n", "| p | " + " | ".join(heads) + " |",
                  "|---:|" + "---:|" * len(heads)]
        for p in ps:
            lines.append(f"| {p} | " + " | ".join(fmt(err.get((c, p, i), math.nan))
                                                   for c in cols) + " |")
    walls = {}
    for r in rows:
        if r["wall_s"] is not None and r["method"] != "fom":
            walls.setdefault((r["method"], r["p"]), []).append(r["wall_s"])
    lines += ["\nOnline wall time per trajectory (s), mean over the test parameters; "
              f"FOM {np.mean(fom_s):.3f} s\n",
              "| p | " + " | ".join(LABEL[m] for m in METHODS) + " |",
              "|---:|" + "---:|" * len(METHODS)]
    for p in ps:
        lines.append(f"| {p} | " + " | ".join(
            f"{np.mean(walls[(m, p)]):.3f}" if (m, p) in walls else "—" for m in METHODS) + " |")

    # ---------------------------------------------------------------- checks
    checks = []
    for i, mu in enumerate(mus):
        d3, p3 = err.get(("deep-lspg", 3, i), math.nan), err.get(("pod-lspg", 3, i), math.nan)
        checks.append((f"mu={mu}: Deep LSPG at p=3 below 1 % ({fmt(d3)})", d3 < 0.01))
        checks.append((f"mu={mu}: Deep LSPG at p=3 >= 10x below POD-LSPG "
                       f"({p3 / d3 if d3 > 0 else math.nan:.1f}x)", 10 * d3 <= p3))
        for p in (q for q in ps if q <= 5):
            for deep, pod in (("deep-lspg", "pod-lspg"), ("deep-galerkin", "pod-galerkin")):
                a, b = err.get((deep, p, i), math.nan), err.get((pod, p, i), math.nan)
                if math.isfinite(b) or math.isfinite(a):
                    checks.append((f"mu={mu}: {LABEL[deep]} below {LABEL[pod]} at p={p} "
                                   f"({fmt(a)} vs {fmt(b)})", a < b))
    lines.append("\nChecks of the study:\n")
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks]

    machine = (f"{platform.machine()}, {os.cpu_count()} cpus, Python "
               f"{platform.python_version()}")
    text = (f"# Paper study: 1D Burgers, errors vs p\n\nmachine: {machine}; training (or "
            f"loading cached models) {train_s:.0f} s\n" + "\n".join(lines) + "\n")
    print(text)
    write_text_atomic(args.out / "table.md", text)
    payload = {"rows": rows, "fom_s": fom_s, "train_s": train_s, "machine": machine,
               "checks": [{"check": t, "pass": ok} for t, ok in checks]}
    write_text_atomic(args.out / "results.json", json.dumps(payload, indent=1))
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1))
    print(f"figures: {args.out / 'errors_vs_p.png'}, {args.out / 'states.png'}")
    return payload


if __name__ == "__main__":
    failed = [c["check"] for c in main()["checks"] if not c["pass"]]
    if failed:
        print(f"{len(failed)} check(s) FAILED", file=sys.stderr)
    sys.exit(1 if failed else 0)
