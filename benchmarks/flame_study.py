"""The flame's ROM study (Lee & Carlberg 2020, section 6.2; docs/problems.md, section 2).

Runs the pipeline through the package's functions on a config (default
``examples/flame2d.toml``):

1. the snapshot files (``fom.snapshots.snapshots_from_config``; kept when they exist) and one
   autoencoder per latent dimension (``autoencoder.train.train_from_config``, which skips a
   model trained with the same data and settings; ``output/flame2d/models/p<p>``);
2. at the two test parameters: Deep LSPG, Deep Galerkin, POD-LSPG and POD-Galerkin at
   p = 1, 2, 3, 5, 10 (``--dims`` to restrict), through ``rom.online.roms_from_config``: the
   relative error over the trajectory of the whole state (the paper's measure) and of each
   field (T, Y_H2, Y_O2, Y_H2O; ``rom.metrics.field_errors``), the projection errors of both
   trial manifolds (whole state and per field: the best each manifold can do, which explains
   the ROMs' errors), and the wall time of each ROM and of the FOM, measured in this run
   (unless ``--reuse``).

Figures (``--out DIR``, default ``output/flame_study/``): ``fields_final.png`` (the four fields
at the final time for the FOM, Deep LSPG and POD-LSPG at ``--figure-p``, default 3, one colour
scale and bar per field, axes in cm; one figure per test parameter, ``fields_final_mu<i>.png``)
and ``errors_vs_p.png`` (whole-state and per-field errors against p, every method and both
projections). The results files, ``table.md`` and ``results.json`` go there too.

Acceptance checks (printed PASS/FAIL; exit status 1 if one fails): at p = 3 and each test
parameter, Deep LSPG's relative error at most 1 % and at least 10x below POD-LSPG's.

    python benchmarks/flame_study.py [--config CFG] [--dims P ...] [--figure-p P]
        [--out DIR] [--json PATH] [--reuse]

``--json PATH`` writes the rows ``{"set", "method", "p", "mu", "error", "error_T",
"error_Y_H2", "error_Y_O2", "error_Y_H2O", "max_error_<field>", "wall_s", "converged"}``: one
per ROM run at a test parameter, one per trial manifold's projection error (methods
``projection-deep`` and ``projection-pod``, with per-field errors) and one per FOM run
(``method = "fom"``).
"""

from __future__ import annotations

import argparse
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
from fom.errors import InputError
from fom.snapshots import read_snapshots, snapshot_paths, snapshots_from_config

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from burgers2d_study import _mu, finite_or_none, run_rom_files, with_roms  # noqa: E402
from fom_speed import cpu_model  # noqa: E402
from paper_burgers import LABEL, METHODS, fmt, fom_wall_times, with_dims  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIMS = [1, 2, 3, 5, 10]
CHECK_P = 3           # the acceptance checks' latent dimension
TARGET = 0.01         # Deep LSPG's error at CHECK_P ...
FACTOR = 10.0         # ... and at least this factor below POD-LSPG's
LSPG = ["deep-lspg", "pod-lspg"]
GALERKIN = ["deep-galerkin", "pod-galerkin"]
STYLE = {"deep-lspg": ("tab:red", "o", "-"), "deep-galerkin": ("tab:orange", "s", "-"),
         "pod-lspg": ("tab:blue", "^", "-"), "pod-galerkin": ("tab:cyan", "v", "-"),
         "projection-deep": ("tab:red", "", ":"), "projection-pod": ("tab:blue", "", ":")}
PROJ_LABEL = {"projection-deep": "decoder projection", "projection-pod": "POD projection"}


# ----------------------------------------------------------------------------- projections


def projection_rows(cfg: RunConfig, dims: list[int],
                    load_decoder: Callable[[Path, str], Any] | None = None
                    ) -> list[dict[str, Any]]:
    """The projection error of each trial manifold at each p and test parameter, whole state
    and per field (:func:`rom.metrics.field_errors` of the manifold's approximation of the FOM
    trajectory, the reference state the ROM uses): rows ``projection-deep`` and
    ``projection-pod``. POD is built from the trajectories the autoencoders trained on
    (:func:`rom.online.pod_trajectories`, the same basis as the ROMs')."""
    from rom.metrics import field_errors, relative_error
    from rom.online import load_model, model_dir, pod_full, pod_trajectories, rom_settings

    sec = rom_settings(cfg)
    paths = snapshot_paths(cfg)
    train, test = read_snapshots(paths["train"]), read_snapshots(paths["test"])
    load = load_decoder or load_model
    pod = pod_full(train, sec["pod_center"], pod_trajectories(cfg, train), max(dims))
    n_f = len(test.problem().fields)
    fields = test.problem().fields
    rows = []
    for p in dims:
        for kind, manifold in (("deep", load(model_dir(cfg, p), sec["projection"])),
                               ("pod", pod.truncate(p))):
            for i in range(test.n_mu):
                x = test.states[i]
                approx = manifold.project(x, manifold.initial_condition(x[0])[0])
                per_field, max_step = field_errors(x, approx, n_f)
                rows.append({"set": "test", "method": f"projection-{kind}", "p": p,
                             "mu": _mu(test.mu[i]), "error": relative_error(x, approx),
                             **{f"error_{f}": float(v) for f, v in zip(fields, per_field,
                                                                        strict=True)},
                             **{f"max_error_{f}": float(v) for f, v in zip(fields, max_step,
                                                                            strict=True)},
                             "wall_s": None, "converged": None})
    return rows


# ----------------------------------------------------------------------------- checks


def _row(rows: list[dict[str, Any]], method: str, p: int, mu: Any) -> dict[str, Any] | None:
    for r in rows:
        if r["method"] == method and r["p"] == p and r["mu"] == mu:
            return r
    return None


def acceptance_checks(rows: list[dict[str, Any]], mus: list[Any]) -> list[tuple[str, bool]]:
    """At :data:`CHECK_P` and each test parameter: Deep LSPG's whole-state error at most
    :data:`TARGET`, and at least :data:`FACTOR` times below POD-LSPG's (a missing or failed
    run fails both)."""
    checks = []
    for mu in mus:
        deep, pod = _row(rows, "deep-lspg", CHECK_P, mu), _row(rows, "pod-lspg", CHECK_P, mu)
        d = deep["error"] if deep and deep["converged"] else math.nan
        q = pod["error"] if pod and pod["converged"] else math.nan
        ratio = q / d if d > 0 else math.nan
        checks.append((f"mu = {mu}: Deep LSPG at p = {CHECK_P} within {fmt(TARGET)} "
                       f"({fmt(d) if deep else 'not run'})", d <= TARGET))
        checks.append((f"mu = {mu}: Deep LSPG at p = {CHECK_P} >= {FACTOR:g}x below POD-LSPG "
                       f"({fmt(d)} vs {fmt(q)}: {ratio:.3g}x)", FACTOR * d <= q))
    return checks


# ----------------------------------------------------------------------------- tables


def study_table(rows: list[dict[str, Any]], fields: tuple[str, ...], mu: Any,
                fom_s: float) -> list[str]:
    """The markdown table of one test parameter: by p, each method's and each projection's
    whole-state and per-field errors, wall time and ratio to the FOM's."""
    heads = ["whole state", *fields]
    lines = [f"\n**mu = {mu}**: relative error over the trajectory, whole state (the paper's "
             f"measure) and per field; wall times (FOM {fom_s:.2f} s)\n",
             "| p | method | " + " | ".join(heads) + " | wall (s) | ROM/FOM time |",
             "|---:|---|" + "---:|" * (len(heads) + 2)]
    order = [*METHODS, "projection-deep", "projection-pod"]
    for r in sorted((r for r in rows if r["mu"] == mu and r["method"] in order),
                    key=lambda r: (r["p"], order.index(r["method"]))):
        vals = [r["error"], *(r[f"error_{f}"] for f in fields)]
        cells = " | ".join(fmt(v) if v is not None else "—" for v in vals)
        wall = r["wall_s"]
        timing = (f" | {wall:.2f} | {wall / fom_s:.2f} |" if wall is not None
                  else " | | |")
        label = LABEL.get(r["method"], PROJ_LABEL.get(r["method"], r["method"]))
        bad = "" if r["converged"] is not False else " (not converged)"
        lines.append(f"| {r['p']} | {label}{bad} | {cells}{timing}")
    return lines


# ----------------------------------------------------------------------------- figures


def fields_figure(rows: list[tuple[str, np.ndarray]], fields: tuple[str, ...],
                  grid: dict[str, Any], grid_shape: tuple[int, ...], t: float,
                  title: str) -> Any:
    """The four fields (a row each) of each source (a column each: FOM, Deep LSPG, POD-LSPG)
    at one time, one colour scale and colour bar per field, axes in cm."""
    import matplotlib.pyplot as plt

    from rom.plots import colour_limits, field_panel, grid_axes

    x, y = grid_axes(grid, grid_shape)
    ny, nx = y.size, x.size
    fig, axes = plt.subplots(len(fields), len(rows), squeeze=False, layout="constrained",
                             figsize=(3.6 * len(rows) + 1.2, 2.1 * len(fields) + 0.6))
    images = [np.asarray(s, dtype=np.float64).reshape(len(fields), ny, nx) for _, s in rows]
    for c, name in enumerate(fields):
        lo, hi = colour_limits(np.stack([img[c] for img in images]))
        mesh = None
        for k, (label, _) in enumerate(rows):
            drawn = field_panel(axes[c, k], x, y, images[k][c], (lo, hi), f"{label}: {name}",
                                ("x (cm)", "y (cm)"))
            mesh = drawn if drawn is not None else mesh
        if mesh is not None:
            fig.colorbar(mesh, ax=axes[c, :].tolist(), label=name + (" (K)" if name == "T"
                                                                     else ""), shrink=0.9)
    fig.suptitle(f"{title}, t = {t:.3g} s")
    return fig


def field_figures(results: Path, test_path: Path, folder: Path) -> list[Path]:
    """``fields_final_mu<i>.png``: the FOM, Deep LSPG and POD-LSPG (the file's p) at the final
    time, per test parameter."""
    from rom.plots import save_figure
    from rom.results import read_results

    rs = read_results(results)
    test = read_snapshots(test_path)
    problem = test.problem()
    if rs.reference is None or len(problem.grid_shape) != 2:
        return []
    out = []
    for i in range(rs.mu.shape[0]):
        rows = [("FOM", rs.reference[i, -1])]
        for method in LSPG:
            for rec in rs.select(method):
                if rec.states is not None:
                    rows.append((f"{LABEL[method]} (p = {rec.p})", rec.states[i, -1]))
        mu = ", ".join(f"{v:g}" for v in rs.mu[i])
        fig = fields_figure(rows, problem.fields, test.grid, problem.grid_shape,
                            float(rs.t[-1]), f"{problem.name}, mu = ({mu})")
        out.append(save_figure(fig, folder / f"fields_final_mu{i}.png"))
    return out


def errors_figure(rows: list[dict[str, Any]], fields: tuple[str, ...], mus: list[Any],
                  path: Path) -> Path:
    """``errors_vs_p.png``: a row per test parameter, a column for the whole state and one
    per field; each method's error and both projection errors against p (log scale)."""
    import matplotlib.pyplot as plt

    from rom.plots import save_figure

    cols = ["whole state", *fields]
    fig, axes = plt.subplots(len(mus), len(cols), figsize=(3.6 * len(cols), 3.3 * len(mus)),
                             squeeze=False, layout="constrained")
    for i, mu in enumerate(mus):
        for c, col in enumerate(cols):
            ax = axes[i, c]
            key = "error" if c == 0 else f"error_{col}"
            for method, (color, marker, ls) in STYLE.items():
                pts = sorted((r["p"], r[key]) for r in rows if r["method"] == method
                             and r["mu"] == mu and r[key] is not None
                             and r["converged"] is not False and math.isfinite(r[key]))
                if pts:
                    ax.plot([p for p, _ in pts], [100 * e for _, e in pts], color=color,
                            marker=marker, ls=ls, ms=4,
                            label=LABEL.get(method, PROJ_LABEL.get(method)))
            ax.set_yscale("log")
            ax.set_xlabel("p")
            ax.set_ylabel("relative error (%)")
            ax.set_title(f"{col}, mu = {mu}", fontsize="small")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize="x-small")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- the study


def run_study(cfg: RunConfig, dims: list[int], figure_p: int, out: Path, *,
              reuse: bool = False, train: bool = True, progress: bool = True,
              load_decoder: Callable[[Path, str], Any] | None = None) -> dict[str, Any]:
    """Snapshots, training, the ROMs at the test parameters, projections, tables, figures.

    ``load_decoder`` and ``train = False`` let tests run the study on analytic decoders
    (``rom.testing``). Returns the payload of ``results.json``.
    """

    make_output_folder(out, "study folder")
    snapshots_from_config(cfg, progress=progress)
    if train:
        from autoencoder.train import train_from_config

        train_from_config(with_dims(cfg, dims, METHODS), progress=progress)
    fom_s = fom_wall_times(cfg)

    # the LSPG pair at the figure's p with its states (the figures), every other run without
    # (its per-field errors need none; 600 states of 8192 values per run would be 39 MB)
    runs = [("galerkin.h5", with_roms(cfg, dims, GALERKIN, False))]
    if figure_p in dims:
        runs.insert(0, ("lspg_states.h5", with_roms(cfg, [figure_p], LSPG, True)))
    others = [p for p in dims if p != figure_p]
    if others:
        runs.append(("lspg.h5", with_roms(cfg, others, LSPG, False)))
    rows: list[dict[str, Any]] = []
    files = []
    for path, run_rows in run_rom_files(runs, out, reuse=reuse, progress=progress,
                                        load_decoder=load_decoder):
        files.append(path)
        rows += [r for r in run_rows if not r["method"].startswith("projection")]
    rows += projection_rows(cfg, dims, load_decoder)
    test = read_snapshots(snapshot_paths(cfg)["test"])
    fields = test.problem().fields
    mus = [_mu(m) for m in test.mu]
    rows += [{"set": "test", "method": "fom", "p": None, "mu": mu, "error": 0.0,
              **{f"{k}_{f}": 0.0 for f in fields for k in ("error", "max_error")},
              "wall_s": fom_s[i], "converged": True} for i, mu in enumerate(mus)]

    checks = acceptance_checks(rows, mus)
    lines = []
    for i, mu in enumerate(mus):
        lines += study_table(rows, fields, mu, fom_s[i])
    lines.append("\nChecks of the study:\n")
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks]
    figs = field_figures(files[0], snapshot_paths(cfg)["test"], out) if figure_p in dims else []
    figs.append(errors_figure(rows, fields, mus, out / "errors_vs_p.png"))
    machine = (f"{cpu_model()}, {os.cpu_count()} cpus, load average "
               f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    text = (f"# Flame ROM study ({cfg.path})\n\nCPU: {machine}\n" + "\n".join(lines)
            + "\n\nfigures: " + ", ".join(str(f) for f in figs) + "\n")
    print(text)
    payload = {"rows": rows, "fom_wall_s": fom_s, "fields": list(fields), "cpu": machine,
               "checks": [{"check": t, "pass": ok} for t, ok in checks],
               "figures": [str(f) for f in figs]}
    write_text_atomic(out / "table.md", text)
    write_text_atomic(out / "results.json", json.dumps(finite_or_none(payload), indent=1))
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "flame2d.toml")
    parser.add_argument("--dims", type=int, nargs="+", default=DIMS,
                        help="latent dimensions (default 1 2 3 5 10)")
    parser.add_argument("--figure-p", type=int, default=CHECK_P,
                        help="latent dimension of the field figures (default 3)")
    parser.add_argument("--out", type=Path, default=Path("output/flame_study"),
                        help="folder of the figures, tables and results files")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--reuse", action="store_true", help="keep up-to-date ROM results of "
                        "an earlier run (their wall times are then that run's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        cfg = load_config(args.config)
    except InputError as exc:
        parser.error(str(exc))
    dims = sorted(set(args.dims))
    if min(dims) < 1 or args.figure_p < 1:
        parser.error("latent dimensions must be >= 1")
    payload = run_study(cfg, dims, args.figure_p, args.out, reuse=args.reuse)
    if args.json:
        write_text_atomic(args.json, json.dumps(finite_or_none(payload["rows"]), indent=1))
    failed = [c["check"] for c in payload["checks"] if not c["pass"]]
    if failed:
        print(f"{len(failed)} check(s) FAILED", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
