"""The 2D viscous Burgers ROM study (docs/problems.md, section 3: the setting of the NM-ROM study).

Runs the pipeline through the package's functions on a config (default
``examples/burgers2d.toml``):

1. the snapshot files (``fom.snapshots.snapshots_from_config``; kept when they exist) and one
   autoencoder per latent dimension (``autoencoder.train.train_from_config``, which skips a
   model trained with the same data and settings);
2. at the config's test parameters (mu = 1.0): Deep LSPG, Deep Galerkin, POD-LSPG and
   POD-Galerkin at p = 2, 3, 5, 10 (``--dims``; default the config's ``[autoencoder]
   latent_dims`` if it lists several), through ``rom.online.roms_from_config``, with NM-ROM's
   error measures per field (u, v: the relative error over the trajectory and the largest
   relative error of a step, ``rom.metrics.field_errors``), the projection errors of both
   trial manifolds, and the wall time of each ROM and of the FOM, measured in this run (the
   ROM results are recomputed unless ``--reuse``);
3. the predictive sweep mu = 0.85, 0.86, ..., 1.15 (31 values) of Deep LSPG and POD-LSPG at
   one p (``--sweep-p``; default the config's chosen p: its ``[rom] latent_dims`` if that
   names one p, else its ``[autoencoder] latent_dims`` if that names one) through
   ``rom.sweep.sweep``: the same run, and the same file, as
   ``mpiexec -n 2 mrom sweep examples/burgers2d_sweep.toml`` (a complete sweep file is
   reused, so a sweep run under MPI first is read, not recomputed). The study lists every mu
   where Deep LSPG's error exceeds 1 % and every run that did not converge.

Figures (``--figures DIR``, default ``output/burgers2d_study/``): ``fields_u.png`` and
``fields_v.png`` (the fields at t = 0, T/2, T for the FOM, Deep LSPG and POD-LSPG at the
sweep's p, images on the snapshot file's ``/grid``, ``rom.plots.field_figure``) and
``error_vs_mu.png`` (each field's error over the sweep, Deep LSPG and POD-LSPG). The results
files, ``table.md`` and ``results.json`` go there too.

Acceptance checks (printed PASS/FAIL; exit status 1 if one fails): at each test parameter,
Deep LSPG with some p <= 10 within 0.5 % in u and in v and at least 10x below POD-LSPG at the
same p in both; every run of the sweep converged.

    python benchmarks/burgers2d_study.py [--config CFG] [--dims P ...] [--sweep-p P]
        [--json PATH] [--figures DIR] [--reuse]

``--json PATH`` writes ``{"rows": [{"method", "p", "mu", "error_u", "error_v",
"max_error_u", "max_error_v", "wall_s", ...}], "fom_wall_s": ...}``: a row per ROM run at a
test parameter (``"set": "test"``), per trial manifold's projection error (methods
``projection-deep`` and ``projection-pod``: the whole state's error in ``"error"``) and per
run of the sweep (``"set": "sweep"``; their wall times are those of the sweep's log).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fom.atomic import make_output_folder, write_text_atomic
from fom.config import RunConfig, load_config
from fom.errors import ConvergenceError, InputError
from fom.snapshots import read_snapshots, snapshot_paths, snapshots_from_config

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fom_speed import cpu_model  # noqa: E402
from paper_burgers import LABEL, METHODS, fmt, fom_wall_times, with_dims  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIMS = [2, 3, 5, 10]
SWEEP_METHODS = ["deep-lspg", "pod-lspg"]
#: The predictive sweep: mu = 0.85, 0.86, ..., 1.15.
SWEEP_PARAMS = {"mu": {"start": 0.85, "stop": 1.15, "num": 31}}
TARGET = 0.005        # Deep LSPG's error in each field at some p <= 10 ...
FACTOR = 10.0         # ... and at least this factor below POD-LSPG's at the same p
SWEEP_FLAG = 0.01     # sweep parameters where Deep LSPG's error exceeds 1 % are listed


# ----------------------------------------------------------------------------- configs


def _single(values: Any) -> int | None:
    ok = (isinstance(values, list) and len(values) == 1 and isinstance(values[0], int)
          and not isinstance(values[0], bool))
    return int(values[0]) if ok else None


def study_dims(cfg: RunConfig) -> list[int]:
    """The study's latent dimensions: the config's ``[autoencoder] latent_dims`` if it lists
    more than one, else p = 2, 3, 5, 10."""
    dims = cfg.sections.get("autoencoder", {}).get("latent_dims")
    if isinstance(dims, list) and len(dims) > 1:
        return sorted({int(p) for p in dims})
    return list(DIMS)


def chosen_p(cfg: RunConfig) -> int | None:
    """The config's chosen latent dimension: its ``[rom] latent_dims`` if that names one p,
    else its ``[autoencoder] latent_dims`` if that names one; None otherwise."""
    for section in ("rom", "autoencoder"):
        p = _single(cfg.sections.get(section, {}).get("latent_dims"))
        if p is not None:
            return p
    return None


def with_roms(cfg: RunConfig, dims: list[int], methods: list[str],
              store_states: bool) -> RunConfig:
    """A copy of ``cfg`` running ``methods`` at ``dims`` (storing the states or not)."""
    out = with_dims(cfg, dims, methods)
    out.sections["rom"]["store_states"] = store_states
    return out


def sweep_config(cfg: RunConfig, p: int) -> RunConfig:
    """The predictive sweep of ``cfg`` (``[sweep] kind = "rom"``) with Deep LSPG and POD-LSPG
    at ``p``, without states: what ``examples/burgers2d_sweep.toml`` holds for
    ``examples/burgers2d.toml``. The output is ``sweep_p<p>.h5`` in ``output_dir``."""
    sections = copy.deepcopy(cfg.sections)
    rom = sections.setdefault("rom", {})
    rom.update({"methods": list(SWEEP_METHODS), "latent_dims": [p], "store_states": False})
    sections["sweep"] = {"kind": "rom", "output": f"sweep_p{p}.h5",
                         "params": copy.deepcopy(SWEEP_PARAMS)}
    return RunConfig(cfg.path, cfg.output_dir, sections)


# ----------------------------------------------------------------------------- rows


def _mu(values: np.ndarray) -> float | list[float]:
    return float(values[0]) if values.size == 1 else [float(v) for v in values]


def result_rows(rs: Any, kind: str, walls: dict[tuple[str, int], list[float]] | None = None
                ) -> list[dict[str, Any]]:
    """The JSON rows of a results file: per run and parameter, the whole state's error, each
    field's trajectory error (``error_<field>``) and largest per-step error
    (``max_error_<field>``), the wall time (``walls[(method, p)][i]`` if given, else the
    file's; None if neither has it) and whether it converged; for ``kind = "test"`` also a
    row per trial manifold's projection error (``projection-deep``, ``projection-pod``)."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    fields = rs.fields
    for rec in sorted(rs.runs.values(), key=lambda r: (METHODS.index(r.method)
                                                       if r.method in METHODS else 99, r.p)):
        for i in range(rs.mu.shape[0]):
            logged = (walls or {}).get((rec.method, rec.p), [])
            wall = logged[i] if i < len(logged) else float(rec.wall_s[i])
            row: dict[str, Any] = {"set": kind, "method": rec.method, "p": rec.p,
                                   "mu": _mu(rs.mu[i]),
                                   "error": float(rec.relative_error[i])}
            for c, name in enumerate(fields):
                fe, me = rec.field_error, rec.max_step_field_error
                row[f"error_{name}"] = float(fe[i, c]) if fe is not None else math.nan
                row[f"max_error_{name}"] = float(me[i, c]) if me is not None else math.nan
            row["wall_s"] = wall if math.isfinite(wall) else None
            row["converged"] = bool(rec.steps[i] == rs.t.size and not rec.failures[i])
            rows.append(row)
            manifold = "deep" if rec.method.startswith("deep") else "pod"
            if kind == "test" and (manifold, rec.p, i) not in seen:
                seen.add((manifold, rec.p, i))
                rows.append({"set": kind, "method": f"projection-{manifold}", "p": rec.p,
                             "mu": _mu(rs.mu[i]),
                             "error": float(rec.projection_error[i]),
                             **{f"{k}_{name}": None for name in fields
                                for k in ("error", "max_error")},
                             "wall_s": None, "converged": None})
    return rows


def sweep_walls(log_path: Path) -> dict[tuple[str, int], list[float]]:
    """Wall time of each sweep run per parameter, from the sweep's log (``<stem>.log.json``)."""
    try:
        log = json.loads(log_path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[tuple[str, int], list[float]] = {}
    for traj in sorted(log.get("trajectories", []), key=lambda t: t["index"]):
        for name, run in traj["roms"].items():
            method, p = name.rsplit("-p", 1)
            out.setdefault((method, int(p)), []).append(float(run["wall_s"]))
    return out


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or Inf float replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- checks


def acceptance_checks(rows: list[dict[str, Any]], fields: tuple[str, ...],
                      mus: list[Any]) -> list[tuple[str, bool]]:
    """The study's checks: at each test parameter, Deep LSPG with some p <= 10 within
    :data:`TARGET` in every field and :data:`FACTOR` times below POD-LSPG at the same p in
    every field; every run of the sweep converged (one check, failing without a sweep)."""
    def err(method: str, p: int, mu: Any) -> list[float]:
        for r in rows:
            if r["set"] == "test" and r["method"] == method and r["p"] == p and r["mu"] == mu:
                return [r[f"error_{f}"] for f in fields]
        return [math.nan] * len(fields)

    checks = []
    for mu in mus:
        ps = sorted({r["p"] for r in rows if r["set"] == "test" and r["method"] == "deep-lspg"
                     and r["mu"] == mu and r["p"] <= 10})
        notes, ok = [], False
        for p in ps:
            deep, pod = err("deep-lspg", p, mu), err("pod-lspg", p, mu)
            good = all(d <= TARGET and FACTOR * d <= q for d, q in zip(deep, pod, strict=True))
            ok = ok or good
            ratios = "/".join(f"{q / d:.1f}x" if d > 0 else "inf" for d, q in
                              zip(deep, pod, strict=True))
            notes.append(f"p={p}: {'/'.join(fmt(d) for d in deep)} "
                         f"({ratios} below POD-LSPG){' <-' if good else ''}")
        checks.append((f"mu = {mu}: Deep LSPG with some p <= 10 within {fmt(TARGET)} in "
                       f"{' and '.join(fields)} and >= {FACTOR:g}x below POD-LSPG at the same "
                       f"p [{'; '.join(notes) or 'no Deep LSPG run'}]", ok))
    sweep = [r for r in rows if r["set"] == "sweep"]
    failed = [f"{r['method']}-p{r['p']} at mu = {r['mu']}" for r in sweep if not r["converged"]]
    checks.append((f"every sweep run converged ({len(sweep) - len(failed)} of {len(sweep)}"
                   f"{': not ' + ', '.join(failed) if failed else ''})",
                   bool(sweep) and not failed))
    return checks


# ----------------------------------------------------------------------------- figures


def field_figures(results: Path, test_path: Path, folder: Path) -> list[Path]:
    """``fields_<field>.png``: the FOM, Deep LSPG and POD-LSPG fields at t = 0, T/2, T at the
    first test parameter, on the test snapshot file's ``/grid``."""
    from rom.plots import field_figure, save_figure
    from rom.results import read_results

    rs = read_results(results)
    test = read_snapshots(test_path)
    problem = test.problem()
    if rs.reference is None or len(problem.grid_shape) != 2:
        return []
    idx = sorted({int(np.argmin(np.abs(rs.t - v))) for v in
                  (0.0, rs.t[-1] / 2, rs.t[-1])})
    rows = [("FOM", rs.reference[0, idx])]
    for method in ("deep-lspg", "pod-lspg"):
        for rec in rs.select(method):
            if rec.states is not None:
                rows.append((f"{LABEL[method]} (p = {rec.p})", rec.states[0, idx]))
    out = []
    for name in problem.fields:
        fig = field_figure(rows, rs.t[idx], fields=problem.fields,
                           grid_shape=problem.grid_shape, grid=test.grid, show=[name],
                           title=f"{problem.name}, mu = {_mu(rs.mu[0])}")
        out.append(save_figure(fig, folder / f"fields_{name}.png"))
    return out


def sweep_figure(rows: list[dict[str, Any]], fields: tuple[str, ...], path: Path) -> Path:
    """``error_vs_mu.png``: each field's relative trajectory error over the sweep, one panel
    per field, Deep LSPG and POD-LSPG (a run that did not converge: a cross at the bottom)."""
    import matplotlib.pyplot as plt

    from rom.plots import save_figure

    style = {"deep-lspg": ("tab:red", "o"), "pod-lspg": ("tab:blue", "^")}
    fig, axes = plt.subplots(1, len(fields), figsize=(5.5 * len(fields), 4), squeeze=False)
    sweep = [r for r in rows if r["set"] == "sweep"]
    for c, name in enumerate(fields):
        ax = axes[0, c]
        for method, (color, marker) in style.items():
            runs = sorted((r for r in sweep if r["method"] == method), key=lambda r: r["mu"])
            if not runs:
                continue
            mu = [r["mu"] for r in runs]
            err = [100 * r[f"error_{name}"] if r["converged"] else np.nan for r in runs]
            ax.plot(mu, err, color=color, marker=marker, ms=4,
                    label=f"{LABEL[method]} (p = {runs[0]['p']})")
            bad = [r["mu"] for r in runs if not r["converged"]]
            if bad:
                ax.plot(bad, [100 * SWEEP_FLAG] * len(bad), "x", color=color, ms=8,
                        label=f"{LABEL[method]}: not converged")
        ax.axhline(100 * SWEEP_FLAG, color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("mu")
        ax.set_ylabel(f"relative error in {name} (%)")
        ax.set_title(f"{name}: error over the trajectory")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- tables


def study_table(rows: list[dict[str, Any]], fields: tuple[str, ...], mu: Any,
               fom_s: float) -> list[str]:
    heads = [*(f"error {f}" for f in fields), *(f"max/step {f}" for f in fields)]
    lines = [f"\n**mu = {mu}**: relative errors per field (over the trajectory, and the "
             f"largest of a step), whole-state projection errors, wall times (FOM "
             f"{fom_s:.2f} s)\n",
             "| method | p | " + " | ".join(heads) + " | wall (s) | ROM/FOM time |",
             "|---|---:|" + "---:|" * (len(heads) + 2)]
    order = [*METHODS, "projection-deep", "projection-pod"]
    for r in sorted((r for r in rows if r["set"] == "test" and r["mu"] == mu),
                    key=lambda r: (r["p"], order.index(r["method"]))):
        if r["method"].startswith("projection"):
            kind = "decoder" if r["method"].endswith("deep") else "POD"
            lines.append(f"| {kind} projection | {r['p']} | {fmt(r['error'])} (whole state)"
                         + " |" * len(heads) + " | |")
            continue
        vals = [r[f"error_{f}"] for f in fields] + [r[f"max_error_{f}"] for f in fields]
        wall = r["wall_s"]
        lines.append(f"| {LABEL[r['method']]} | {r['p']} | " + " | ".join(fmt(v) for v in vals)
                     + (f" | {wall:.2f} | {wall / fom_s:.2f} |" if wall is not None
                        else " | — | — |"))
    return lines


def sweep_table(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> list[str]:
    sweep = [r for r in rows if r["set"] == "sweep"]
    if not sweep:
        return []
    methods = [m for m in SWEEP_METHODS if any(r["method"] == m for r in sweep)]
    heads = [f"{LABEL[m]} {f}" for m in methods for f in fields]
    lines = ["\nSweep: relative error per field over the trajectory "
             f"(p = {sweep[0]['p']}; '—': did not converge)\n",
             "| mu | " + " | ".join(heads) + " |", "|---:|" + "---:|" * len(heads)]
    by = {(r["method"], r["mu"]): r for r in sweep}
    for mu in sorted({r["mu"] for r in sweep}):
        vals = []
        for m in methods:
            r = by.get((m, mu))
            vals += [fmt(r[f"error_{f}"]) if r and r["converged"] else "—" for f in fields]
        lines.append(f"| {mu:.4g} | " + " | ".join(vals) + " |")
    over = [f"{r['mu']:.4g}" for r in sorted(sweep, key=lambda r: r["mu"])
            if r["method"] == "deep-lspg" and r["converged"]
            and max(r[f"error_{f}"] for f in fields) > SWEEP_FLAG]
    lines.append(f"\nDeep LSPG above {fmt(SWEEP_FLAG)} in some field at mu = "
                 f"{', '.join(over) if over else 'none'}")
    return lines


# ----------------------------------------------------------------------------- the study


def run_rom_files(runs: list[tuple[str, RunConfig]], folder: Path, *, reuse: bool,
                  progress: bool, load_decoder: Any = None
                  ) -> list[tuple[Path, list[dict[str, Any]]]]:
    """``mrom rom`` for each ``(file name, config)`` of ``runs`` into ``folder`` (an existing
    results file is recomputed unless ``reuse``; the inputs' fingerprint decides then): each
    results file with its rows (:func:`result_rows`, ``kind = "test"``)."""
    from rom.online import roms_from_config
    from rom.results import read_results

    out = []
    for name, run_cfg in runs:
        path = folder / name
        if not reuse:
            path.unlink(missing_ok=True)
        path = roms_from_config(run_cfg, progress=progress, results_path=path,
                                load_decoder=load_decoder)
        out.append((path, result_rows(read_results(path), "test")))
    return out


def run_study(cfg: RunConfig, dims: list[int], sweep_p: int, figures: Path, *,
              reuse: bool = False, train: bool = True, progress: bool = True,
              load_decoder: Callable[[Path, str], Any] | None = None) -> dict[str, Any]:
    """Snapshots, training, the ROMs at the test parameters, the sweep, tables and figures.

    ``load_decoder`` and ``train = False`` let tests run the study's pieces on an analytic
    decoder (``rom.testing``) in place of trained models. Returns the JSON payload.
    """
    from rom.results import read_results
    from rom.sweep import sweep, sweep_plan

    make_output_folder(figures, "figures folder")
    snapshots_from_config(cfg, progress=progress)
    if train:
        from autoencoder.train import train_from_config

        train_from_config(with_dims(cfg, sorted({*dims, sweep_p}), METHODS), progress=progress)
    fom_s = fom_wall_times(cfg)

    # the ROMs at the test parameters: the LSPG pair at the sweep's p with its states (the
    # figures), every other run without (its per-field errors need none)
    others = [p for p in dims if p != sweep_p]
    runs = [("lspg_states.h5", with_roms(cfg, [sweep_p], SWEEP_METHODS, True)),
            ("galerkin.h5", with_roms(cfg, dims, ["deep-galerkin", "pod-galerkin"], False))]
    if others:
        runs.append(("lspg.h5", with_roms(cfg, others, SWEEP_METHODS, False)))
    rows: list[dict[str, Any]] = []
    files = []
    for path, run_rows in run_rom_files(runs, figures, reuse=reuse, progress=progress,
                                        load_decoder=load_decoder):
        files.append(path)
        rows += [r for r in run_rows
                 if not any(r["method"] == q["method"] and r["p"] == q["p"]
                            and r["mu"] == q["mu"] for q in rows)]  # a projection once
    test_rs = read_results(files[0])
    fields = test_rs.fields
    mus = [_mu(m) for m in test_rs.mu]

    # the predictive sweep (serial here; `mpiexec -n K mrom sweep` of the same config writes
    # the same file, which is then reused)
    scfg = sweep_config(cfg, sweep_p)
    plan = sweep_plan(scfg)
    sweep_error = ""
    try:
        sweep(scfg, progress=progress, comm=None, load_decoder=load_decoder)
    except ConvergenceError as exc:  # the FOM failed somewhere: the sweep check fails
        sweep_error = str(exc)
    else:
        rows += result_rows(read_results(plan.output), "sweep",
                            sweep_walls(plan.log_path()))

    checks = acceptance_checks(rows, fields, mus)
    if sweep_error:
        checks.append((f"the sweep's FOM converged ({sweep_error})", False))
    lines = []
    for i, mu in enumerate(mus):
        lines += study_table(rows, fields, mu, fom_s[i])
    lines += sweep_table(rows, fields)
    lines.append("\nChecks of the study:\n")
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks]
    figs = field_figures(files[0], snapshot_paths(cfg)["test"], figures)
    if any(r["set"] == "sweep" for r in rows):
        figs.append(sweep_figure(rows, fields, figures / "error_vs_mu.png"))
    machine = (f"{cpu_model()}, {os.cpu_count()} cpus, load average "
               f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    text = (f"# 2D Burgers ROM study ({cfg.path})\n\nCPU: {machine}\n\nsweep file: "
            f"{plan.output}\n" + "\n".join(lines) + "\n\nfigures: "
            + ", ".join(str(f) for f in figs) + "\n")
    print(text)
    payload = {"rows": rows, "fom_wall_s": fom_s[0] if len(fom_s) == 1 else fom_s,
               "fields": list(fields), "cpu": machine, "sweep_file": str(plan.output),
               "checks": [{"check": t, "pass": ok} for t, ok in checks],
               "figures": [str(f) for f in figs]}
    write_text_atomic(figures / "table.md", text)
    write_text_atomic(figures / "results.json", json.dumps(finite_or_none(payload), indent=1))
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "burgers2d.toml")
    parser.add_argument("--dims", type=int, nargs="+", help="latent dimensions of the table "
                        "(default: the config's [autoencoder] latent_dims, else 2 3 5 10)")
    parser.add_argument("--sweep-p", type=int, help="latent dimension of the sweep (default: "
                        "the config's chosen p)")
    parser.add_argument("--figures", type=Path, default=Path("output/burgers2d_study"),
                        help="folder of the figures, tables and results files")
    parser.add_argument("--json", type=Path, help="also write the payload to this file")
    parser.add_argument("--reuse", action="store_true", help="keep up-to-date ROM results of "
                        "an earlier run (their wall times are then that run's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        cfg = load_config(args.config)
    except InputError as exc:
        parser.error(str(exc))
    dims = sorted(set(args.dims)) if args.dims else study_dims(cfg)
    sweep_p = args.sweep_p or chosen_p(cfg)
    if sweep_p is None:
        parser.error(f"{args.config} names no single latent dimension in [rom] or "
                     f"[autoencoder] latent_dims: give the sweep's p with --sweep-p")
    if min(dims) < 1 or sweep_p < 1:
        parser.error("latent dimensions must be >= 1")
    payload = run_study(cfg, dims, sweep_p, args.figures, reuse=args.reuse)
    if args.json:
        write_text_atomic(args.json, json.dumps(finite_or_none(
            {"rows": payload["rows"], "fom_wall_s": payload["fom_wall_s"]}), indent=1))
    return 0 if all(c["pass"] for c in payload["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
