"""Hyper-reduced LSPG against the FOM and the unreduced ROMs (docs/method.md, section 7).

For each study (a problem, a grid size N and a trained model): the numba FOM, Deep LSPG,
HR Deep LSPG and HR POD-LSPG at the test parameters, each run the way ``mrom rom`` runs it
(:func:`rom.online.run_rom`), with

- the relative state error over the trajectory (docs/method.md, section 8);
- the online wall time (the time loop; best of ``--repeat`` runs interleaved with the FOM's)
  and the time per step;
- the speedup over the numba FOM measured in the same run (FOM wall time / ROM wall time);
- the sampled rows and their stencil.

**The hyper-reduction settings are chosen on training data only.** The sample meshes are built
from the trajectories the autoencoder trained on (from the training snapshot file named in the
model's manifest); for each setting of a small grid of ``(n_samples, n_basis)`` HR Deep LSPG
runs on validation trajectories, and the setting with the fewest samples whose mean validation
error is within ``--tolerance`` (default 1.5) times the unreduced Deep LSPG's is kept (else the
most accurate). The validation trajectories are the model's held-out training trajectories when
its manifest names them, otherwise FOM trajectories at ``--validation-mu`` (inside the training
box, off the training grid and not a test parameter). The test parameters only report.

Acceptance (1D Burgers, p = 3): HR Deep LSPG within 2x of the unreduced Deep LSPG error at
both test parameters, and faster than unreduced Deep LSPG at both. Exit status 1 when a
check fails, 2 when the model is missing.

    python benchmarks/hyper_reduction.py [--model DIR] [--json PATH] [--figures DIR]
                                         [--repeat K] [--full]

``--model`` defaults to ``output/burgers1d/models/p3`` (``mrom train
examples/burgers1d.toml``). ``--json PATH`` writes ``{"rows": [{"problem", "n", "method", "p",
"mu", "n_samples", "n_stencil", "error", "wall_s", "time_per_step_s", "fom_wall_s",
"speedup", "trained"}], "settings": ..., "checks": ..., "machine": ...}``. ``--figures DIR``
draws the time per step against N (log-log) and the sampled rows on the grid. ``--full``
adds GNAT and more sizes to the tuning grid and runs 5 repeats.

The 2D Burgers studies (n = 60 and 128 trained, 256 and 512 with untrained decoders of the
same family for timing only) plug in at :func:`burgers2d_studies`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fom  # noqa: E402
from fom.errors import InputError  # noqa: E402
from fom.snapshots import SnapshotSet, file_checksum, read_snapshots  # noqa: E402
from rom.manifolds import AffineManifold, DecoderManifold  # noqa: E402
from rom.metrics import relative_error  # noqa: E402
from rom.online import run_rom  # noqa: E402
from rom.projection import ROMOptions, solve_rom  # noqa: E402
from rom.sample_mesh import SampleMesh, build_sample_mesh  # noqa: E402

DEFAULT_MODEL = ROOT / "output" / "burgers1d" / "models" / "p3"
METHODS = ("deep-lspg", "hr-deep-lspg", "hr-pod-lspg")
LABEL = {"fom": "FOM (numba)", "deep-lspg": "Deep LSPG", "hr-deep-lspg": "HR Deep LSPG",
         "hr-pod-lspg": "HR POD-LSPG"}


def machine() -> str:
    """CPU model, cores, Python and numpy versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}, Python "
            f"{platform.python_version()}, numpy {np.__version__}")


# ----------------------------------------------------------------------------- studies


@dataclass
class Check:
    """One acceptance check and its outcome."""

    name: str
    passed: bool
    detail: str


@dataclass
class Study:
    """One row group of the benchmark: a problem at one size with one model.

    Attributes
    ----------
    problem : str
        Registry name.
    model : Path
        Trained model folder (its manifest names the training snapshot file).
    test_mu : list of parameter vectors
        Reported only.
    validation_mu : list of parameter vectors
        Where the hyper-reduction settings are scored, unless the model's manifest names
        held-out training trajectories.
    grid : list of (n_samples, n_basis, method)
        The candidate hyper-reduction settings.
    checks : callable
        ``checks(rows) -> list[Check]``: the acceptance checks of this study.
    trained : bool
        False for a decoder with untrained weights (timing only: no tuning, ``settings``).
    settings : tuple, optional
        Fixed ``(n_samples, n_basis, method)`` (untrained models).
    """

    problem: str
    model: Path
    test_mu: list[tuple[float, ...]]
    validation_mu: list[tuple[float, ...]]
    grid: list[tuple[int, int, str]]
    checks: Callable[[list[dict[str, Any]]], list[Check]]
    trained: bool = True
    settings: tuple[int, int, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _by(rows: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["method"] == method]


def burgers1d_checks(rows: list[dict[str, Any]]) -> list[Check]:
    """The issue's 1D point: HR Deep LSPG within 2x of Deep LSPG's error and faster, at
    every test parameter."""
    out = []
    for full, hr in zip(_by(rows, "deep-lspg"), _by(rows, "hr-deep-lspg"), strict=True):
        mu = ", ".join(f"{v:g}" for v in hr["mu"])
        ratio = hr["error"] / full["error"] if full["error"] > 0 else math.inf
        out.append(Check(f"mu = ({mu}): HR Deep LSPG error within 2x of Deep LSPG's",
                         bool(ratio <= 2.0),
                         f"{100 * hr['error']:.3g} % vs {100 * full['error']:.3g} % "
                         f"({ratio:.2f}x)"))
        out.append(Check(f"mu = ({mu}): HR Deep LSPG faster than Deep LSPG",
                         bool(hr["wall_s"] < full["wall_s"]),
                         f"{hr['wall_s']:.3f} s vs {full['wall_s']:.3f} s "
                         f"({full['wall_s'] / hr['wall_s']:.2f}x)"))
    return out


def burgers1d_studies(args: argparse.Namespace) -> list[Study]:
    """1D Burgers (the paper's problem, N = 256) with a trained p = 3 model."""
    sizes = [(24, 12), (48, 16), (64, 24), (96, 32), (128, 48)]
    methods = ["collocation", "gnat"] if args.full else ["collocation"]
    grid = [(ns, nb, m) for m in methods for ns, nb in sizes]
    return [Study("burgers1d", Path(args.model), [(4.3, 0.021), (5.15, 0.0285)],
                  [tuple(v) for v in args.validation_mu], grid, burgers1d_checks)]


def burgers2d_studies(args: argparse.Namespace) -> list[Study]:
    """HOOK for 2D Burgers (the 2D autoencoder is being built on another branch).

    To add: n = 60 and 128 with trained models (test mu = 1.0, validation on held-out
    training trajectories), n = 256 and 512 with untrained decoders of the same family
    (``trained=False`` and fixed ``settings``: timing only); checks (issue 12): at n = 60,
    HR Deep LSPG error <= 1 % in u and in v and >= 10x faster than the numba FOM; time per
    step at n = 256 within 2x of n = 60; speedup >= 50x at n = 256. ``field_errors`` gives
    the per-field errors.
    """
    del args
    return []


STUDIES: dict[str, Callable[[argparse.Namespace], list[Study]]] = {
    "burgers1d": burgers1d_studies, "burgers2d": burgers2d_studies}


# ----------------------------------------------------------------------------- inputs


def training_file(model: Path) -> SnapshotSet:
    """The training snapshot file named in the model's manifest (checked by checksum)."""
    man = json.loads((model / "manifest.json").read_text())
    rec = man["snapshots"]
    candidates = [Path(rec["path"]), ROOT / rec["path"], model.parent.parent / "train.h5"]
    for path in candidates:
        if path.is_file() and file_checksum(path) == rec["sha256"]:
            return read_snapshots(path)
    raise InputError(f"{model}: its training snapshot file {rec['path']} is missing or "
                     f"changed since training (sha256 {rec['sha256'][:12]}...)")


def validation_trajectories(model: Path, train: SnapshotSet) -> list[int]:
    """The training trajectories the model held out for validation (none before the
    ``[training] validation_every`` / ``validation_params`` keys existed)."""
    tr = json.loads((model / "manifest.json").read_text()).get("settings", {}) \
        .get("training", {})
    if not (tr.get("validation_params") or tr.get("validation_every", 0)):
        return []
    from autoencoder.data import validation_trajectories as held_out

    return sorted(int(i) for i in held_out(train.mu, tr.get("validation_every", 0),
                                           tr.get("validation_params", []), str(model)))


def field_errors(problem: Any, ref: np.ndarray, states: np.ndarray) -> dict[str, float]:
    """The relative error of each field (``u``, ``v``, ...) over the trajectory."""
    n = problem.n_dofs // problem.n_fields
    return {name: relative_error(ref[:, k * n:(k + 1) * n], states[:, k * n:(k + 1) * n])
            for k, name in enumerate(problem.fields)}


# ----------------------------------------------------------------------------- running


def tune(study: Study, problem: Any, train: SnapshotSet, keep: list[int],
         val: list[tuple[np.ndarray, np.ndarray]], deep: DecoderManifold, opts: ROMOptions,
         solver: dict[str, Any], tolerance: float) -> tuple[SampleMesh, list[dict[str, Any]]]:
    """The sample mesh of the study: the grid's settings scored on the validation set."""
    def mean_error(mesh: SampleMesh | None) -> float:
        errs = []
        for mu, ref in val:
            _, err, _ = run_rom(problem, deep, mu, "lspg", ref, sample_mesh=mesh, **solver,
                                options=opts)
            errs.append(err)
        return float(np.mean(errs))  # NaN if a run failed

    full = mean_error(None)
    print(f"  validation: unreduced Deep LSPG {100 * full:.3g} % (mean over {len(val)} "
          f"trajectories)")
    table, meshes = [], []
    for ns, nb, method in study.grid:
        try:
            mesh = build_sample_mesh(train, n_samples=ns, n_basis=nb, method=method,
                                     trajectories=keep)
        except InputError as exc:
            print(f"  ({ns}, {nb}, {method}): skipped ({exc})")
            continue
        err = mean_error(mesh)
        table.append({"n_samples": ns, "n_basis": nb, "method": method,
                      "n_rows": int(mesh.rows.size), "n_stencil": int(mesh.stencil.size),
                      "validation_error": err, "unreduced_validation_error": full})
        meshes.append(mesh)
        print(f"  n_samples = {ns:4d}, n_basis = {nb:3d}, {method:11s}: stencil "
              f"{mesh.stencil.size:5d}, validation error {100 * err:.3g} %")
    ok = [i for i, t in enumerate(table) if t["validation_error"] <= tolerance * full]
    if ok:
        best = min(ok, key=lambda i: (table[i]["n_rows"], table[i]["validation_error"]))
    else:
        best = min(range(len(table)), key=lambda i: (math.isnan(
            table[i]["validation_error"]), table[i]["validation_error"]))
    table[best]["chosen"] = True
    return meshes[best], table


def run_study(study: Study, args: argparse.Namespace) -> dict[str, Any]:
    """Tune (training data only), then time and score every method at the test
    parameters; returns the rows, the settings table and the checks."""
    model = study.model
    deep = DecoderManifold.load(model)
    train = training_file(model)
    problem = train.problem()
    if problem.name != study.problem:
        raise InputError(f"{model} was trained on {problem.name}, not {study.problem}")
    held = validation_trajectories(model, train)
    keep = [i for i in range(train.n_mu) if i not in held]
    dt = float(train.solver.get("dt", problem.dt))
    t_final = float(train.t[-1])
    solver = {"scheme": str(train.solver.get("scheme", "backward_euler")), "dt": dt,
              "t_final": t_final}
    opts = ROMOptions()
    n_steps = train.t.size - 1
    print(f"\n{study.problem}: N = {problem.n_dofs}, {n_steps} steps, model {model} "
          f"(p = {deep.p}), training file {train.path} ({len(keep)} of {train.n_mu} "
          f"trajectories for the sample mesh and the POD basis)")

    if held:  # the model's held-out training trajectories (at most two)
        pick = sorted({held[0], held[len(held) // 2]})
        val = [(train.mu[i], train.states[i]) for i in pick]
        print(f"  validation on held-out training trajectories {pick}")
    else:
        val = [(np.asarray(mu, dtype=np.float64),
                fom.solve(problem, mu, dt=dt, t_final=t_final,
                          scheme=solver["scheme"]).states) for mu in study.validation_mu]
        print(f"  validation at mu = {study.validation_mu} (inside the training box, not "
              f"training or test parameters)")
    if study.trained and study.settings is None:
        mesh, table = tune(study, problem, train, keep, val, deep, opts, solver,
                           args.tolerance)
    else:
        ns, nb, method = study.settings or study.grid[0]
        mesh = build_sample_mesh(train, n_samples=ns, n_basis=nb, method=method,
                                 trajectories=keep)
        table = [{"n_samples": ns, "n_basis": nb, "method": method, "chosen": True}]
    chosen = mesh.settings
    print(f"  chosen: n_samples = {chosen['n_samples']}, n_basis = {chosen['n_basis']}, "
          f"{chosen['method']}: {mesh.rows.size} rows, stencil {mesh.stencil.size}")

    # the POD basis of the same trajectories, centred as the autoencoder's target
    center = "none" if getattr(deep.trained, "target", "deviation") == "raw" else "initial"
    pod = AffineManifold.from_snapshots(train.states[keep], deep.p, center=center)
    manifolds = {"deep-lspg": (deep, None), "hr-deep-lspg": (deep, mesh),
                 "hr-pod-lspg": (pod, mesh)}
    # warm up every kernel on a short run (compilation is not online time)
    mu0 = np.asarray(study.test_mu[0], dtype=np.float64)
    fom.solve(problem, mu0, dt=dt, t_final=5 * dt)
    for man, sm in manifolds.values():
        solve_rom(problem, man, mu0, "lspg", scheme=solver["scheme"], dt=dt, t_final=5 * dt,
                  options=opts, sample_mesh=sm)
    rows = []
    for mu_t in study.test_mu:
        mu = np.asarray(mu_t, dtype=np.float64)
        walls: dict[str, list[float]] = {m: [] for m in ("fom", *METHODS)}
        errors: dict[str, float] = {}
        ref = None
        for _ in range(args.repeat):  # interleaved: each method sees the same load
            res = fom.solve(problem, mu, dt=dt, t_final=t_final, scheme=solver["scheme"])
            walls["fom"].append(res.wall_s)
            ref = res.states
            for name, (man, sm) in manifolds.items():
                out, err, failure = run_rom(problem, man, mu, "lspg", ref, **solver,
                                            options=opts, sample_mesh=sm)
                walls[name].append(out.wall_s if not failure else math.nan)
                errors[name] = err
        fom_wall = min(walls["fom"])
        for name in ("fom", *METHODS):
            wall = min(walls[name])
            hr = name.startswith("hr-")
            rows.append({
                "problem": study.problem, "n": int(problem.n_dofs), "method": name,
                "p": None if name == "fom" else int(deep.p), "mu": [float(v) for v in mu],
                "n_samples": int(mesh.rows.size) if hr else None,
                "n_stencil": int(mesh.stencil.size) if hr else None,
                "error": 0.0 if name == "fom" else errors[name], "wall_s": wall,
                "time_per_step_s": wall / n_steps, "fom_wall_s": fom_wall,
                "speedup": fom_wall / wall, "trained": study.trained})
    return {"rows": rows, "settings": table, "checks": study.checks(rows), "mesh": mesh,
            "problem": problem, "reference": ref}


# ----------------------------------------------------------------------------- output


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n| problem | N | method | mu | samples (stencil) | error | wall (s) | per step "
          "(ms) | speedup over FOM |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        mu = ", ".join(f"{v:g}" for v in r["mu"])
        smp = "—" if r["n_samples"] is None else f"{r['n_samples']} ({r['n_stencil']})"
        err = "—" if r["method"] == "fom" else f"{100 * r['error']:.3g} %"
        print(f"| {r['problem']} | {r['n']} | {LABEL[r['method']]} | ({mu}) | {smp} | {err} | "
              f"{r['wall_s']:.4f} | {1e3 * r['time_per_step_s']:.3f} | {r['speedup']:.3g}x |")


def figures(results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Time per step against N (log-log) and the sampled rows of each study's mesh."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    rows = [r for res in results for r in res["rows"]]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name in ("fom", *METHODS):
        for prob in sorted({r["problem"] for r in rows}):
            sel = [r for r in rows if r["method"] == name and r["problem"] == prob]
            pts = [(n, float(np.mean([r["time_per_step_s"] for r in sel if r["n"] == n])))
                   for n in sorted({r["n"] for r in sel})]  # mean over the test parameters
            if pts:
                ax.loglog(*zip(*pts, strict=True), marker="o",
                          label=f"{LABEL[name]} ({prob})")
    ax.set_xlabel("N (state size)")
    ax.set_ylabel("wall time per time step (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out.append(folder / "time_per_step.png")
    fig.savefig(out[-1], dpi=120)
    plt.close(fig)
    for res in results:
        problem, mesh, ref = res["problem"], res["mesh"], res["reference"]
        if len(problem.grid_shape) != 1:
            continue  # HOOK: 2D meshes as sampled nodes on the (ny, nx) grid
        x = np.asarray(problem.grid.get("x", np.arange(problem.n_dofs)))
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for k in np.linspace(0, ref.shape[0] - 1, 5).round().astype(int):
            ax.plot(x, ref[k], color="0.6", lw=1)
        ax.plot(x[mesh.stencil], np.full(mesh.stencil.size, ref.min()), "|", color="tab:blue",
                ms=10, label=f"stencil ({mesh.stencil.size})")
        ax.plot(x[mesh.rows], np.full(mesh.rows.size, ref.min()), "|", color="tab:red",
                ms=16, label=f"sampled rows ({mesh.rows.size})")
        ax.set_xlabel("x")
        ax.set_ylabel("FOM state (last test parameter)")
        ax.legend(fontsize="small", loc="upper right")
        fig.tight_layout()
        out.append(folder / f"sample_mesh_{problem.name}_{problem.n_dofs}.png")
        fig.savefig(out[-1], dpi=120)
        plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problem", choices=[*STUDIES, "all"], default="burgers1d")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                    help="trained 1D Burgers model folder (default output/burgers1d/models/p3)")
    ap.add_argument("--validation-mu", type=lambda s: [float(v) for v in s.split(",")],
                    action="append", default=None,
                    help="validation parameter (repeatable) when the model holds out no "
                         "training trajectories; default 4.6,0.024 and 5.3,0.018")
    ap.add_argument("--tolerance", type=float, default=1.5,
                    help="keep the fewest samples whose validation error is within this "
                         "factor of unreduced Deep LSPG's (default 1.5)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per method and parameter, best kept (default 3; 5 "
                         "with --full)")
    ap.add_argument("--full", action="store_true",
                    help="GNAT in the tuning grid too, 5 repeats")
    ap.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    ap.add_argument("--figures", type=Path, default=None,
                    help="folder for time_per_step.png and sample_mesh_*.png")
    args = ap.parse_args(argv)
    args.repeat = args.repeat or (5 if args.full else 3)
    args.validation_mu = args.validation_mu or [[4.6, 0.024], [5.3, 0.018]]
    names = list(STUDIES) if args.problem == "all" else [args.problem]
    studies = [s for n in names for s in STUDIES[n](args)]
    missing = [s.model for s in studies if not (s.model / "manifest.json").is_file()]
    if missing:
        print(f"hyper_reduction: no trained model in {', '.join(map(str, missing))}. Train "
              f"the paper's p = 3 model with 'mrom train examples/burgers1d.toml' (about 30 "
              f"min on 2 cores; it goes to output/burgers1d/models/p3), or a quick one with "
              f"'mrom demo' and pass --model output/demo/models/p3.", file=sys.stderr)
        return 2
    print(f"machine: {machine()}")
    results = []
    try:
        for study in studies:
            results.append(run_study(study, args))
    except InputError as exc:
        print(f"hyper_reduction: {exc}", file=sys.stderr)
        return 2
    rows = [r for res in results for r in res["rows"]]
    print_table(rows)
    checks = [c for res in results for c in res["checks"]]
    print()
    for c in checks:
        print(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.detail}")
    if args.figures is not None:
        for path in figures(results, args.figures):
            print(f"wrote {path}")
    if args.json is not None:
        from fom.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps({
            "rows": rows, "machine": machine(),
            "settings": [{"problem": res["problem"].name, "n": res["problem"].n_dofs,
                          "candidates": res["settings"]} for res in results],
            "checks": [c.__dict__ for c in checks]}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
