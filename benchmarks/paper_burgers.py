"""The paper's 1D Burgers study (Lee & Carlberg 2019, section 6.1; docs/problems.md).

For latent dimensions p = 1, 2, 3, 5, 10 at both test parameters: the relative state errors of
Deep LSPG, Deep Galerkin, POD-LSPG and POD-Galerkin, the projection errors of both trial
manifolds, each method's online wall time and the FOM's, and each model's training time. The
autoencoders are trained on the paper's 80-parameter set with the recipe of
``examples/burgers1d.toml`` (the one ``benchmarks/select_recipe.py`` picks on validation
trajectories; one model per p, cached in ``output/burgers1d/models/p<p>`` and shared with
``mrom train``; a cached model is reused only if its manifest matches the snapshot file and
every setting).

Then the generalization table: Deep LSPG and POD-LSPG at p = 3 and 5 at the 63 centres of the
training grid's cells (``examples/burgers1d_generalization.toml``, run through ``mrom sweep``;
an existing complete result file, e.g. from an MPI run, is reused): median, 90th percentile and
maximum error, every failure, and ``generalization.png``, the error over the (mu1, mu2) plane.

    python benchmarks/paper_burgers.py [--full] [--json PATH] [--config CFG] [--out DIR]
                                       [--gen-config CFG | --no-generalization]

``--full`` adds POD-LSPG/POD-Galerkin at p = 15, 20, 30, 50. Writes ``table.md``,
``results.json``, ``errors_vs_p.png``, ``generalization.png`` (and the per-run report) to
``--out`` (default ``output/paper_burgers``), and prints the tables and the acceptance checks:
at p = 3, Deep LSPG below 1 % at both test parameters and at least 10x below POD-LSPG; Deep
LSPG and Deep Galerkin below their POD counterparts for every p <= 5 at the test parameters;
on the generalization set at p = 3, median <= 1 %, maximum <= 1.5 %, every run converged and
Deep LSPG at least 10x below POD-LSPG at every parameter. Exits with status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
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


def training_times(cfg: RunConfig, dims: list[int]) -> dict[int, dict[str, float]]:
    """Wall and CPU time of each model's training, all stages (from the manifests)."""
    out = {}
    for p in dims:
        man = json.loads((cfg.output_dir / "models" / f"p{p}" / "manifest.json").read_text())
        stages = man["training_result"]["stages"]
        out[p] = {"train_s": sum(st.get("train_time_s", math.nan) for st in stages),
                  "train_cpu_s": sum(st.get("train_cpu_s", math.nan) for st in stages),
                  "epochs": [st["epochs_run"] for st in stages]}
        if (sel := man.get("seed_selection")) is not None:  # n_seeds > 1: every seed's
            seeds = [json.loads((Path(m) / "manifest.json").read_text())  # training
                     for m in sel["models"]]
            out[p].update(
                chosen_seed=sel["chosen_seed"], check_max=sel["max"],
                seeds_train_s=sum(st.get("train_time_s", math.nan) for m in seeds
                                  for st in m["training_result"]["stages"]))
    return out


def generalization(gen_config: Path) -> dict:
    """The generalization sweep (run serially unless its result file is complete) and its
    statistics per method and p."""
    from rom.results import read_results
    from rom.sweep import sweep

    path = sweep(load_config(gen_config), progress=False, comm=None)
    rs = read_results(path)
    out: dict = {"path": str(path), "mu": rs.mu.tolist(), "runs": {}}
    for name, rec in rs.runs.items():
        e = np.asarray(rec.relative_error, dtype=np.float64)
        ok = np.isfinite(e)
        out["runs"][name] = {
            "method": rec.method, "p": rec.p, "errors": e.tolist(),
            "failures": [{"mu": rs.mu[i].tolist(), "message": f}
                         for i, f in enumerate(rec.failures) if f or not ok[i]],
            # over the converged runs (the failures are counted and listed on their own)
            "median": float(np.median(e[ok])) if ok.any() else math.inf,
            "p90": float(np.percentile(e[ok], 90)) if ok.any() else math.inf,
            "max": float(np.max(e[ok])) if ok.any() else math.inf}
    return out


def generalization_figure(gen: dict, train_mu: np.ndarray, test_mu: np.ndarray,
                          path: Path) -> None:
    """Deep LSPG's error (and its ratio to POD-LSPG's) over the (mu1, mu2) plane."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    mu = np.asarray(gen["mu"])
    ps = sorted({r["p"] for r in gen["runs"].values() if r["method"] == "deep-lspg"})
    fig, axes = plt.subplots(2, len(ps), figsize=(5.2 * len(ps), 8), squeeze=False)
    for k, p in enumerate(ps):
        deep = np.asarray(gen["runs"][f"deep-lspg-p{p}"]["errors"])
        pod = np.asarray(gen["runs"][f"pod-lspg-p{p}"]["errors"])
        for row, (vals, title, cmap) in enumerate((
                (100 * deep, f"Deep LSPG error (%), p = {p}", "viridis"),
                (pod / deep, f"POD-LSPG error / Deep LSPG error, p = {p}", "magma"))):
            ax = axes[row, k]
            sc = ax.scatter(mu[:, 0], mu[:, 1], c=vals, s=90, marker="s", cmap=cmap,
                            norm=LogNorm())
            bad = ~np.isfinite(vals)
            ax.scatter(mu[bad, 0], mu[bad, 1], marker="x", c="red", s=90, label="failed")
            ax.scatter(train_mu[:, 0], train_mu[:, 1], s=8, c="0.5", label="training")
            ax.scatter(test_mu[:, 0], test_mu[:, 1], s=80, marker="*", c="k", label="test")
            fig.colorbar(sc, ax=ax)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("mu1")
            ax.set_ylabel("mu2")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    from rom.plots import save_figure
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "burgers1d.toml")
    parser.add_argument("--gen-config", type=Path,
                        default=ROOT / "examples" / "burgers1d_generalization.toml",
                        help="the generalization sweep (its output_dir must hold the models)")
    parser.add_argument("--no-generalization", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("output/paper_burgers"))
    parser.add_argument("--full", action="store_true", help="add POD at p = 15, 20, 30, 50")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--dims", type=int, nargs="+", default=DIMS, help="latent dimensions")
    parser.add_argument("--jobs", type=int, default=1,
                        help="with [training] n_seeds > 1: seeds trained at once (mrom train "
                             "--jobs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from select_recipe import machine

    from rom.online import roms_from_config
    from rom.report import report
    from rom.results import read_results
    from rom.seed_selection import train_models

    base = load_config(args.config)
    dims = sorted(set(args.dims) | (set() if args.no_generalization else {3, 5}))
    cfg = with_dims(base, dims, METHODS)
    args.out.mkdir(parents=True, exist_ok=True)
    snapshots_from_config(cfg, progress=False)
    t0 = time.perf_counter()
    train_models(cfg, progress=True, jobs=args.jobs)
    train_s = time.perf_counter() - t0
    times = training_times(cfg, dims)
    fom_s = fom_wall_times(cfg)

    files = [roms_from_config(cfg, progress=True, results_path=args.out / "deep_and_pod.h5")]
    if args.full:
        pod_cfg = with_dims(base, POD_EXTRA, ["pod-lspg", "pod-galerkin"])
        files.append(roms_from_config(pod_cfg, progress=True,
                                      results_path=args.out / "pod_large_p.h5"))
    report(files[0], out_dir=args.out, quiet=True, state_p=3 if 3 in dims else None)

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

    # ---------------------------------------------------------------- test table
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
    lines += ["\nTraining time per model, all stages (wall and CPU seconds; the CPU time "
              "counts every thread); with n_seeds > 1 the chosen seed, the largest Deep LSPG "
              "error of each seed at the check trajectories and the training time of all "
              "seeds (their wall times add up even when they ran at once)\n",
              "| p | epochs per stage | wall (s) | CPU (s) | chosen seed | check max per seed "
              "| all seeds (s) |", "|---:|---|---:|---:|---:|---|---:|"]
    for p in dims:
        t = times[p]
        check = ", ".join(f"{100 * v:.3g} %" for v in t.get("check_max", []))
        lines.append(f"| {p} | {' + '.join(map(str, t['epochs']))} | {t['train_s']:.0f} | "
                     f"{t['train_cpu_s']:.0f} | {t.get('chosen_seed', '—')} | {check or '—'} "
                     f"| {t.get('seeds_train_s', t['train_s']):.0f} |")

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

    # ---------------------------------------------------------------- generalization
    gen = None
    if not args.no_generalization:
        gen = generalization(args.gen_config)
        test = read_snapshots(snapshot_paths(cfg)["test"])
        train = read_snapshots(snapshot_paths(cfg)["train"])
        generalization_figure(gen, train.mu, test.mu, args.out / "generalization.png")
        n_gen = len(gen["mu"])
        lines += [f"\nGeneralization: {n_gen} parameters at the centres of the training "
                  f"grid's cells ({gen['path']})\n",
                  "Median, 90th percentile and maximum over the runs that converged; the "
                  "failures are listed below the table.\n",
                  "| method | p | median | 90th percentile | max | failures | "
                  "min POD / Deep ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(gen["runs"].values(), key=lambda r: (r["p"], r["method"])):
            ratio = "—"
            if r["method"] == "deep-lspg":
                pod = np.asarray(gen["runs"][f"pod-lspg-p{r['p']}"]["errors"])
                ratio = f"{np.nanmin(pod / np.asarray(r['errors'])):.1f}x"
            lines.append(f"| {LABEL[r['method']]} | {r['p']} | {fmt(r['median'])} | "
                         f"{fmt(r['p90'])} | {fmt(r['max'])} | {len(r['failures'])} | "
                         f"{ratio} |")
        for r in gen["runs"].values():
            for f in r["failures"]:
                lines.append(f"- failure: {LABEL[r['method']]} p={r['p']} at mu={f['mu']}: "
                             f"{f['message'] or 'NaN error'}")
        d3 = gen["runs"]["deep-lspg-p3"]
        e3 = np.asarray(d3["errors"])
        ratio3 = np.asarray(gen["runs"]["pod-lspg-p3"]["errors"]) / e3
        checks += [
            (f"generalization, Deep LSPG at p=3: median <= 1 % ({fmt(d3['median'])})",
             d3["median"] <= 0.01),
            (f"generalization, Deep LSPG at p=3: max <= 1.5 % ({fmt(d3['max'])} over the "
             f"converged runs)", d3["max"] <= 0.015 and not d3["failures"]),
            (f"generalization, Deep LSPG at p=3: all {n_gen} runs converged "
             f"({len(d3['failures'])} failures)", not d3["failures"]),
            (f"generalization, Deep LSPG at p=3 >= 10x below POD-LSPG at every parameter "
             f"(min {np.nanmin(ratio3):.1f}x over the converged runs)",
             bool(np.all(ratio3 >= 10))),
        ]
    lines.append("\nChecks of the study:\n")
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks]

    text = (f"# Paper study: 1D Burgers, errors vs p\n\nmachine: {machine()}; load average "
            f"{os.getloadavg()[0]:.1f}; training (or loading cached models) {train_s:.0f} s\n"
            + "\n".join(lines) + "\n")
    print(text)
    write_text_atomic(args.out / "table.md", text)
    payload = {"rows": rows, "fom_s": fom_s, "train_s": train_s, "training": times,
               "machine": machine(), "generalization": gen,
               "checks": [{"check": t, "pass": ok} for t, ok in checks]}
    write_text_atomic(args.out / "results.json", json.dumps(payload, indent=1))
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1))
    print(f"figures: {args.out / 'errors_vs_p.png'}, {args.out / 'states.png'}"
          + ("" if gen is None else f", {args.out / 'generalization.png'}"))
    return payload


if __name__ == "__main__":
    failed = [c["check"] for c in main()["checks"] if not c["pass"]]
    if failed:
        print(f"{len(failed)} check(s) FAILED", file=sys.stderr)
    sys.exit(1 if failed else 0)
