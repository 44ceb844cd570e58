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
"mu", "n_samples", "n_stencil", "n_basis", "error", "field_errors", "wall_s",
"time_per_step_s", "fom_wall_s", "speedup", "cpu_s", "fom_cpu_s", "speedup_cpu", "trained",
"grid", "steps", "iterations_per_step"}], "settings": ..., "decoder_cost": ..., "checks":
..., "machine": ...}`` (``n`` is the state size N, ``grid`` the 2D grid's n). ``--figures DIR``
draws the time per step against N (log-log) and the sampled rows on the grid. ``--full``
adds GNAT and more sizes to the tuning grid and runs 5 repeats.

**2D Burgers** (``--problem burgers2d``; docs/problems.md), test mu = 1.0:

- with a trained model (``--model2d DIR`` at n = 60, ``--model2d-128 DIR`` at n = 128): as
  above, the settings tuned on held-out training trajectories (else a FOM trajectory at
  ``--validation-mu2d``, default 1.075), the samples counted in grid nodes (u and v rows at
  each), errors per field (u, v) over the whole trajectory;
- always, at every n of ``--sizes2d`` (default 60, 128, 256; with ``--full`` also 512):
  **timing only**, a decoder of the same family (the trained model's architecture and p;
  without one, ``[autoencoder]`` of ``examples/burgers2d.toml`` if it has one, else the
  paper's 8-16-32-64 5 x 5 network; ``--arch2d``, ``--p2d`` change it) with seeded random
  weights, rows ``trained = false`` with NaN errors. Fixed settings: ``--hr2d-samples`` grid
  nodes (default 60, i.e. 120 rows) and ``--hr2d-basis`` residual modes (default 30),
  collocation, built, like the POD basis of HR POD-LSPG, from the first ``--hr2d-window``
  (20) FOM steps at the training parameters 0.9 and 1.1. The FOM and each ROM run the same
  first ``--steps2d`` steps (default 50; 1500, the whole trajectory, with ``--full``) from
  the initial state at mu = 1.0; the FOM's time per step is that of these first steps (its
  first factorization included). Unreduced Deep LSPG runs up to ``--unreduced-max2d``
  (128).

Every row also has the CPU time of the run (``cpu_s``, ``fom_cpu_s``, ``speedup_cpu``: on a
shared machine the process's own work) and Gauss-Newton iterations per step; for each study
the script prints the decoder's multiply-adds through the dependency cone of the stencil
against the full decoder's, the CPU time of one restricted ``g`` + ``J`` evaluation, the HR
run's CPU time per Gauss-Newton iterate and the decoder's share of it, and the FOM's CPU time
per Newton iteration (``"decoder_cost"`` in the JSON).

2D acceptance (issue 12), PASS/FAIL/SKIP: at n = 60 HR Deep LSPG error <= 1 % in u and v
(SKIP without a trained model) and >= 10x faster than the numba FOM (the trained row, else
the untrained decoder's window, marked); time per step at n = 256 within 2x of n = 60 and
speedup >= 50x at n = 256 (the timing rows of the same family). Exit status 1 on a FAIL.

    python benchmarks/hyper_reduction.py --problem burgers2d [--model2d DIR] [--full]
        [--sizes2d 60,128,256] [--steps2d 50] [--json PATH] [--figures DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import autoencoder  # noqa: E402, F401  (before TensorFlow starts: autoencoder/__init__.py)
import fom  # noqa: E402
from fom.errors import ConvergenceError, InputError  # noqa: E402
from fom.snapshots import (  # noqa: E402
    SnapshotSet,
    file_checksum,
    generate_snapshots,
    read_snapshots,
)
from fom.solve import time_grid  # noqa: E402
from rom.manifolds import AffineManifold, DecoderManifold  # noqa: E402
from rom.online import run_field_errors, run_rom  # noqa: E402
from rom.plots import save_figure  # noqa: E402
from rom.projection import ROMOptions, solve_rom  # noqa: E402
from rom.sample_mesh import SampleMesh, build_sample_mesh  # noqa: E402

DEFAULT_MODEL = ROOT / "output" / "burgers1d" / "models" / "p3"
METHODS = ("deep-lspg", "hr-deep-lspg", "hr-pod-lspg")
#: The 2D decoder family of the timing-only studies when neither a trained model nor
#: ``examples/burgers2d.toml`` names one: the paper's architecture (Lee & Carlberg 2020,
#: section 6.1) on the grid padded to a multiple of 16.
ARCH_2D = dict(filters=[8, 16, 32, 64], kernel_size=[5, 5, 5, 5], strides=[2, 2, 2, 2],
               padding="same", activation="elu", latent_activation="linear",
               output_activation="linear", variational=False, target="deviation", dims=2)
LABEL = {"fom": "FOM (numba)", "deep-lspg": "Deep LSPG", "hr-deep-lspg": "HR Deep LSPG",
         "hr-pod-lspg": "HR POD-LSPG"}


def machine() -> str:
    """CPU (:func:`fom_speed.cpu_model`), cpus, load, Python and numpy versions."""
    from fom_speed import cpu_model

    return (f"{cpu_model()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


# ----------------------------------------------------------------------------- studies


@dataclass
class Check:
    """One acceptance check and its outcome."""

    name: str
    passed: bool | None  # None: could not be evaluated (SKIP)
    detail: str

    @property
    def status(self) -> str:
        return "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"


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
    """2D Burgers (docs/problems.md) at mu = 1.0 (module docstring, "2D Burgers").

    A trained model (``--model2d`` at n = 60, ``--model2d-128`` at n = 128) gets a study like
    the 1D one: HR settings tuned on training data, errors per field. Every size of
    ``--sizes2d`` also gets a timing-only study with an untrained decoder of the same family
    (the trained model's architecture and p when given) and the fixed settings
    ``--hr2d-samples`` grid nodes, ``--hr2d-basis`` residual modes.
    """
    studies = []
    val = [tuple(v) for v in args.validation_mu2d]
    grid = [(ns, nb, m) for m in (["collocation", "gnat"] if args.full else ["collocation"])
            for ns, nb in ((30, 20), (45, 30), (60, 40), (90, 60), (120, 80))]
    for n, model in ((60, args.model2d), (128, args.model2d_128)):
        if model is not None:
            studies.append(Study("burgers2d", Path(model), [(1.0,)], val, grid, lambda rows: [],
                                 extra={"by": "node", "grid": n}))
    arch, p = family_2d(args)
    for n in args.sizes2d:
        studies.append(Study(
            "burgers2d", Path(f"untrained decoder (n = {n})"), [(1.0,)], [], [],
            lambda rows: [], trained=False,
            settings=(args.hr2d_samples, args.hr2d_basis, "collocation"),
            extra={"by": "node", "grid": n, "arch": arch, "p": p,
                   "steps": args.steps2d, "window": args.hr2d_window}))
    return studies


def family_2d(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """The decoder family of the timing-only studies and its p: the trained model's
    architecture and p when one is given, else ``[autoencoder]`` of
    ``examples/burgers2d.toml`` (its first latent dimension) when it has one, else
    :data:`ARCH_2D` with p = 3; ``--arch2d`` overrides keys, ``--p2d`` p."""
    arch, p = dict(ARCH_2D), 3
    models = [m for m in (args.model2d, args.model2d_128)
              if m is not None and (Path(m) / "manifest.json").is_file()]
    config = ROOT / "examples" / "burgers2d.toml"
    if models:
        data = json.loads((Path(models[0]) / "manifest.json").read_text())
        arch = dict(data.get("settings", {}).get("autoencoder") or arch)
        p = int(data["p"])
    elif "autoencoder" in tomllib.loads(config.read_text()):
        from autoencoder.train import settings_from_config
        from fom.config import load_config

        arch, _ = settings_from_config(load_config(config))
        p = int(arch["latent_dims"][0])
    arch.update(args.arch2d or {})
    return arch, int(args.p2d or p)


def burgers2d_checks(rows: list[dict[str, Any]]) -> list[Check]:
    """Issue 12's 2D acceptance checks over every 2D row (SKIP where no row answers).

    At n = 60 the accuracy check needs a trained model; the speed check takes the trained
    row when there is one, else the untrained decoder's timing window. The scaling checks
    compare the untrained decoders' rows (same family, settings and window) at n = 256 and
    n = 60.
    """
    def row(grid: int, method: str, trained: bool | None) -> dict[str, Any] | None:
        sel = [r for r in rows if r["problem"] == "burgers2d" and r.get("grid") == grid
               and r["method"] == method and (trained is None or r["trained"] == trained)]
        sel.sort(key=lambda r: not r["trained"])  # trained first
        return sel[0] if sel else None

    out = []
    hr60 = row(60, "hr-deep-lspg", True)
    if hr60 is None:
        out.append(Check("n = 60: HR Deep LSPG error <= 1 % in u and v", None,
                         "SKIP: no trained n = 60 model (--model2d)"))
    else:
        eu, ev = hr60["field_errors"]["u"], hr60["field_errors"]["v"]
        out.append(Check("n = 60: HR Deep LSPG error <= 1 % in u and v",
                         bool(eu <= 0.01 and ev <= 0.01),
                         f"u {100 * eu:.3g} %, v {100 * ev:.3g} %"))
    fast60 = row(60, "hr-deep-lspg", None)
    if fast60 is None:
        out.append(Check("n = 60: HR Deep LSPG >= 10x faster than the numba FOM", None,
                         "SKIP: no n = 60 row"))
    else:
        what = ("trained model, whole trajectory" if fast60["trained"] else
                f"untrained decoder, first {fast60['steps']} steps")
        out.append(Check("n = 60: HR Deep LSPG >= 10x faster than the numba FOM",
                         bool(fast60["speedup"] >= 10.0),
                         f"{fast60['speedup']:.3g}x in wall time ({fast60['speedup_cpu']:.3g}x "
                         f"in CPU time; {what}; FOM {fast60['fom_wall_s']:.3g} s, ROM "
                         f"{fast60['wall_s']:.3g} s)"))
    a, b = row(60, "hr-deep-lspg", False), row(256, "hr-deep-lspg", False)
    if a is None or b is None:
        out.append(Check("time per step at n = 256 within 2x of n = 60", None,
                         "SKIP: needs the timing rows at n = 60 and 256 (--sizes2d)"))
        out.append(Check("n = 256: HR Deep LSPG >= 50x faster than the numba FOM", None,
                         "SKIP: no n = 256 row"))
        return out
    ratio = b["time_per_step_s"] / a["time_per_step_s"]
    cpu_ratio = (b["cpu_s"] / b["steps"]) / (a["cpu_s"] / a["steps"])

    def per_iterate(r: dict[str, Any]) -> float:  # CPU per Gauss-Newton iterate
        return r["cpu_s"] / max(r["iterations_per_step"] * r["steps"], 1.0)

    out.append(Check("time per step at n = 256 within 2x of n = 60", bool(ratio <= 2.0),
                     f"{1e3 * b['time_per_step_s']:.3g} ms vs {1e3 * a['time_per_step_s']:.3g} "
                     f"ms ({ratio:.2f}x in wall time, {cpu_ratio:.2f}x in CPU time, "
                     f"{per_iterate(b) / per_iterate(a):.2f}x in CPU time per Gauss-Newton "
                     f"iterate; untrained decoders, {a['n_samples']} sampled rows)"))
    out.append(Check("n = 256: HR Deep LSPG >= 50x faster than the numba FOM",
                     bool(b["speedup"] >= 50.0),
                     f"{b['speedup']:.3g}x in wall time ({b['speedup_cpu']:.3g}x in CPU time; "
                     f"FOM {1e3 * b['fom_wall_s'] / b['steps']:.3g} ms per step, ROM "
                     f"{1e3 * b['time_per_step_s']:.3g} ms)"))
    return out


STUDIES: dict[str, Callable[[argparse.Namespace], list[Study]]] = {
    "burgers1d": burgers1d_studies, "burgers2d": burgers2d_studies}
#: Checks over all rows of a problem (its studies together).
CHECKS: dict[str, Callable[[list[dict[str, Any]]], list[Check]]] = {
    "burgers2d": burgers2d_checks}


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
                                     trajectories=keep, by=study.extra.get("by", "row"))
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
    if not table:
        raise InputError(f"{train.path}: none of the candidate hyper-reduction settings "
                         f"{study.grid} fits these training data")
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
                                 trajectories=keep, by=study.extra.get("by", "row"))
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
    cost: dict[str, Any] = {}
    for mu_t in study.test_mu:
        mu = np.asarray(mu_t, dtype=np.float64)
        walls: dict[str, list[float]] = {m: [] for m in ("fom", *METHODS)}
        cpus: dict[str, list[float]] = {m: [] for m in ("fom", *METHODS)}
        errors: dict[str, float] = {}
        ferr: dict[str, np.ndarray] = {}
        outs: dict[str, Any] = {}
        ref = None
        for _ in range(args.repeat):  # interleaved: each method sees the same load
            res = solve_fom(problem, mu, dt=dt, t_final=t_final, scheme=solver["scheme"])
            walls["fom"].append(res.wall_s)
            cpus["fom"].append(res.stats["cpu_s"])
            ref = res.states
            for name, (man, sm) in manifolds.items():
                out, err, failure = run_rom(problem, man, mu, "lspg", ref, **solver,
                                            options=opts, sample_mesh=sm)
                walls[name].append(out.wall_s if not failure else math.nan)
                cpus[name].append(out.cpu_s if not failure else math.nan)
                errors[name] = err
                ferr[name] = run_field_errors(ref, out, failure, problem.n_fields)[0]
                outs[name] = out
        fom_wall, fom_cpu = min(walls["fom"]), min(cpus["fom"])
        if not cost:
            cost = decoder_cost(deep, mesh, outs["hr-deep-lspg"], res)
        for name in ("fom", *METHODS):
            wall, cpu = min(walls[name]), min(cpus[name])
            hr = name.startswith("hr-")
            fe = (np.zeros(problem.n_fields) if name == "fom" else ferr[name]).tolist()
            rows.append({
                "problem": study.problem, "n": int(problem.n_dofs), "method": name,
                "p": None if name == "fom" else int(deep.p), "mu": [float(v) for v in mu],
                "n_samples": int(mesh.rows.size) if hr else None,
                "n_stencil": int(mesh.stencil.size) if hr else None,
                "n_basis": int(mesh.basis_rows.shape[1]) if hr else None,
                "error": 0.0 if name == "fom" else errors[name],
                "field_errors": dict(zip(problem.fields, fe, strict=True)), "wall_s": wall,
                "time_per_step_s": wall / n_steps, "fom_wall_s": fom_wall,
                "speedup": fom_wall / wall, "cpu_s": cpu, "fom_cpu_s": fom_cpu,
                "speedup_cpu": fom_cpu / cpu, "trained": study.trained,
                "grid": problem.n if study.extra.get("grid") else None, "steps": n_steps,
                "iterations_per_step": float(np.mean(
                    (res if name == "fom" else outs[name]).iterations[1:]))})
    return {"rows": rows, "settings": table, "checks": study.checks(rows), "mesh": mesh,
            "problem": problem, "reference": ref, "decoder_cost": cost}


def solve_fom(problem: Any, mu: np.ndarray, **kw: Any) -> Any:
    """``fom.solve`` with the CPU time of this process in ``stats["cpu_s"]`` (on a shared
    machine: its own work, where the wall time also counts the neighbours')."""
    cpu = time.process_time()
    res = fom.solve(problem, mu, **kw)
    res.stats["cpu_s"] = time.process_time() - cpu
    return res


def timed(fn: Callable[[], Any], seconds: float = 0.3) -> float:
    """Median CPU seconds per call of ``fn`` over 5 blocks of about ``seconds / 5``."""
    fn()
    t0 = time.process_time()
    fn()
    k = max(1, int(seconds / 5 / max(time.process_time() - t0, 1e-6)))
    per = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(k):
            fn()
        per.append((time.process_time() - t0) / k)
    return float(np.median(per))


def decoder_cost(deep: DecoderManifold, mesh: SampleMesh, hr: Any, fom_res: Any
                 ) -> dict[str, Any]:
    """What one HR Gauss-Newton iterate costs against the FOM's Newton iteration.

    The decoder's multiply-adds per batch row (value or one tangent) through the dependency
    cone of the stencil and in full, the CPU time of one ``decode_rows`` on the stencil (g
    and J, at the last latent state of the HR run), the HR run's CPU time per Gauss-Newton
    iterate and the share of it the decoder takes, and the FOM's CPU time per Newton
    iteration (its factorizations and solves included).
    """
    cost = dict(deep.trained.cone_cost(mesh.stencil)) if hasattr(deep.trained, "cone_cost") \
        else {}
    z = np.ascontiguousarray(hr.latent[-1])
    t_dec = timed(lambda: deep.decode_rows(z, mesh.stencil))
    n_it = max(int(np.sum(hr.iterations[1:])), 1)
    fom_it = max(int(np.sum(fom_res.iterations[1:])), 1)
    cost.update({
        "stencil": int(mesh.stencil.size), "rows": int(mesh.rows.size),
        "decode_rows_s": t_dec, "hr_iterations": n_it, "hr_decoder_calls": int(hr.decoder_calls),
        "hr_s_per_iteration": hr.cpu_s / n_it,
        "decoder_share": min(1.0, t_dec * hr.decoder_calls / hr.cpu_s) if hr.cpu_s else
        math.nan,
        "fom_s_per_newton_iteration": fom_res.stats["cpu_s"] / fom_it,
        "fom_newton_iterations": fom_it})
    return cost


def untrained_decoder(problem: Any, arch: dict[str, Any], p: int, deviations: np.ndarray,
                      seed: int = 0) -> DecoderManifold:
    """A decoder of the family ``arch`` (``autoencoder.model.build_decoder``, the image the
    grid padded to a multiple of the strides' product) with Glorot-random weights, in state
    units through the per-channel scaling of ``deviations`` (timing only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from autoencoder.data import Restriction, Scaling
    from autoencoder.export import export_network
    from autoencoder.manifold import TrainedManifold
    from autoencoder.model import build_decoder, build_encoder

    arch = dict(arch)
    step = int(np.prod(arch["strides"]))
    arch["image_size"] = [-(-int(k) // step) * step for k in problem.grid_shape]
    restriction = Restriction.for_problem(problem, 2, arch["image_size"], arch["target"])
    keras.utils.set_random_seed(seed)
    meta, data = export_network(build_decoder(restriction.image_shape, p, arch, "float64"))
    enc_meta, enc_data = export_network(build_encoder(restriction.image_shape, p, arch,
                                                      "float64"))
    trained = TrainedManifold(Path("untrained"), p, problem.n_dofs, arch["target"], restriction,
                              Scaling.fit(deviations, restriction), meta, data, enc_meta,
                              enc_data, {"settings": {"autoencoder": arch}})
    return DecoderManifold(trained, source=f"untrained, filters {arch['filters']}, seed {seed}")


#: Training parameters of the 2D timing windows (the sample mesh and the POD basis).
TRAIN_MU_2D = [[0.9], [1.1]]


def run_timing_study(study: Study, args: argparse.Namespace) -> dict[str, Any]:
    """Timing only: an untrained decoder of the family at grid size ``n``.

    The sample mesh (fixed settings) and the POD basis come from the first ``window`` FOM
    steps at the training parameters :data:`TRAIN_MU_2D`; the FOM and each ROM run the same
    first ``steps`` steps at mu = 1.0 (the FOM once at n > 128, best of ``--repeat``
    otherwise; the ROMs best of ``--repeat``); unreduced Deep LSPG only at n <= 128.
    Errors are NaN: the decoder is not trained.
    """
    n = int(study.extra["grid"])
    problem = fom.Burgers2D(n=n)
    dt, total = time_grid(problem.dt, problem.t_final)
    steps = min(int(study.extra["steps"]), total)
    window = int(study.extra["window"])
    ns, nb, method = study.settings
    arch, p = study.extra["arch"], int(study.extra["p"])
    print(f"\n{study.problem}, n = {n} (N = {problem.n_dofs}), timing only: untrained decoder "
          f"(filters {arch['filters']}, p = {p}), first {steps} of {total} steps; sample mesh "
          f"and POD from the first {window} steps at mu = {TRAIN_MU_2D}")
    with tempfile.TemporaryDirectory() as tmp:
        path = generate_snapshots(problem, TRAIN_MU_2D, Path(tmp) / "window.h5",
                                  t_final=window * dt, progress=False)
        train = read_snapshots(path)
        mesh = build_sample_mesh(train, n_samples=ns, n_basis=nb, method=method,
                                 by=study.extra.get("by", "node"))
        pod = AffineManifold.from_snapshots(train.states, p, center="initial")
        deep = untrained_decoder(problem, arch, p, train.states - train.states[:, :1])
    print(f"  sample mesh: {mesh.summary()}")
    manifolds = {"hr-deep-lspg": (deep, mesh), "hr-pod-lspg": (pod, mesh)}
    if n <= args.unreduced_max2d:
        manifolds = {"deep-lspg": (deep, None), **manifolds}
    mu = np.array([1.0])
    opts = ROMOptions()
    fom.solve(problem, mu, t_final=3 * dt)  # warm-up (compilation is not online time)
    for man, sm in manifolds.values():
        solve_rom(problem, man, mu, "lspg", dt=dt, t_final=3 * dt, options=opts,
                  sample_mesh=sm, reconstruct=False)
    walls: dict[str, list[float]] = {m: [] for m in ("fom", *manifolds)}
    cpus: dict[str, list[float]] = {m: [] for m in ("fom", *manifolds)}
    outs: dict[str, Any] = {}
    failures: dict[str, str] = {}
    fom_res = None
    for rep in range(args.repeat):  # interleaved
        if rep == 0 or n <= 128:
            fom_res = solve_fom(problem, mu, dt=dt, t_final=steps * dt)
            walls["fom"].append(fom_res.wall_s)
            cpus["fom"].append(fom_res.stats["cpu_s"])
        for name, (man, sm) in manifolds.items():
            try:
                out = solve_rom(problem, man, mu, "lspg", dt=dt, t_final=steps * dt,
                                options=opts, sample_mesh=sm, reconstruct=False)
            except ConvergenceError as exc:  # timed over the steps it completed
                out, failures[name] = exc.partial, str(exc)
            walls[name].append(out.wall_s / max(out.n_steps, 1) * steps)
            cpus[name].append(out.cpu_s / max(out.n_steps, 1) * steps)
            outs[name] = out
    cost = decoder_cost(deep, mesh, outs["hr-deep-lspg"], fom_res)
    fom_wall, fom_cpu = min(walls["fom"]), min(cpus["fom"])
    rows = []
    for name in ("fom", *manifolds):
        wall, cpu = min(walls[name]), min(cpus[name])
        hr = name.startswith("hr-")
        res = fom_res if name == "fom" else outs[name]
        rows.append({
            "problem": study.problem, "n": int(problem.n_dofs), "method": name,
            "p": None if name == "fom" else p, "mu": [1.0],
            "n_samples": int(mesh.rows.size) if hr else None,
            "n_stencil": int(mesh.stencil.size) if hr else None,
            "n_basis": int(mesh.basis_rows.shape[1]) if hr else None,
            "error": 0.0 if name == "fom" else math.nan,
            "field_errors": {f: 0.0 if name == "fom" else math.nan for f in problem.fields},
            "wall_s": wall, "time_per_step_s": wall / steps, "fom_wall_s": fom_wall,
            "speedup": fom_wall / wall, "cpu_s": cpu, "fom_cpu_s": fom_cpu,
            "speedup_cpu": fom_cpu / cpu, "trained": False, "grid": n, "steps": steps,
            "iterations_per_step": float(np.mean(res.iterations[1:])),
            "basis": (f"POD of the first {window} steps at mu = {TRAIN_MU_2D}"
                      if name == "hr-pod-lspg" else None),
            "failure": failures.get(name, "")})
        if failures.get(name):
            print(f"  {LABEL[name]}: {failures[name]}")
    return {"rows": rows, "settings": [{"n_samples": ns, "n_basis": nb, "method": method,
                                        "by": "node", "chosen": True, "fixed": True}],
            "checks": [], "mesh": mesh, "problem": problem, "reference": fom_res.states,
            "decoder_cost": cost}


# ----------------------------------------------------------------------------- output


def _error_text(r: dict[str, Any]) -> str:
    if r["method"] == "fom":
        return "—"
    fe = r.get("field_errors") or {}
    if not r["trained"] or math.isnan(r["error"]):
        return "timing only" if not r["trained"] else "failed"
    if len(fe) > 1:
        return ", ".join(f"{k} {100 * v:.3g} %" for k, v in fe.items())
    return f"{100 * r['error']:.3g} %"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n| problem | N | method | trained | mu | samples (stencil) | error | steps | wall (s) "
          "| per step (ms) | GN it./step | speedup over FOM: wall (CPU) |")
    print("|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mu = ", ".join(f"{v:g}" for v in r["mu"])
        smp = "—" if r["n_samples"] is None else f"{r['n_samples']} ({r['n_stencil']})"
        name = r["problem"] + (f" {r['grid']}²" if r.get("grid") else "")
        print(f"| {name} | {r['n']} | {LABEL[r['method']]} | {'yes' if r['trained'] else 'no'} "
              f"| ({mu}) | {smp} | {_error_text(r)} | {r.get('steps', '')} | "
              f"{r['wall_s']:.4g} | {1e3 * r['time_per_step_s']:.3g} | "
              f"{r.get('iterations_per_step', math.nan):.2f} | {r['speedup']:.3g}x "
              f"({r.get('speedup_cpu', math.nan):.3g}x) |")


def print_costs(results: list[dict[str, Any]]) -> None:
    """The decoder cost of one HR Gauss-Newton iterate against the FOM's Newton iteration."""
    print("\n| problem | N | trained | stencil | decoder MACs/row: cone (full) | decode_rows "
          "CPU (ms) | HR CPU per GN iterate (ms) | decoder share | FOM CPU per Newton it. (ms) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for res in results:
        c, prob = res.get("decoder_cost") or {}, res["problem"]
        if not c:
            continue
        trained = res["rows"][0]["trained"]
        macs = (f"{c['macs']:,} ({c['full_macs']:,}, {100 * c['fraction']:.0f} %)"
                if "macs" in c else "—")
        print(f"| {prob.name} | {prob.n_dofs} | {'yes' if trained else 'no'} | {c['stencil']} | "
              f"{macs} | {1e3 * c['decode_rows_s']:.3g} | {1e3 * c['hr_s_per_iteration']:.3g} | "
              f"{100 * c['decoder_share']:.0f} % | {1e3 * c['fom_s_per_newton_iteration']:.3g} |")


def figures(results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Time per step against N (log-log) and the sampled rows of each study's mesh."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    rows = [r for res in results for r in res["rows"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    methods = [m for m in ("fom", *METHODS) if any(r["method"] == m for r in rows)]
    for name in methods:
        for prob in sorted({r["problem"] for r in rows}):
            for trained in (True, False):
                tag = ", timing window" if name == "fom" else ", untrained decoder"
                sel = [r for r in rows if r["method"] == name and r["problem"] == prob
                       and r["trained"] == trained and not (name == "fom" and not trained
                                                            and any(q["trained"] for q in rows
                                                                    if q["n"] == r["n"]))]
                pts = [(n, float(np.mean([r["time_per_step_s"] for r in sel if r["n"] == n])))
                       for n in sorted({r["n"] for r in sel})]  # mean over test parameters
                if pts:
                    ax.loglog(*zip(*pts, strict=True), marker="o" if trained else "s",
                              ls="-" if trained else "--",
                              label=f"{LABEL[name]} ({prob}{'' if trained else tag})")
    ax.set_xlabel("N (state size)")
    ax.set_ylabel("wall time per time step (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    out.append(save_figure(fig, folder / "time_per_step.png", dpi=120))
    for res in results:
        problem, mesh, ref = res["problem"], res["mesh"], res["reference"]
        tag = "" if res["rows"][0]["trained"] else "_untrained"
        fig = (mesh_figure_1d if len(problem.grid_shape) == 1 else mesh_figure_2d)(
            plt, problem, mesh, ref)
        fig.tight_layout()
        out.append(save_figure(
            fig, folder / f"sample_mesh_{problem.name}_{problem.n_dofs}{tag}.png", dpi=120))
    return out


def mesh_figure_1d(plt: Any, problem: Any, mesh: SampleMesh, ref: np.ndarray) -> Any:
    """The sampled rows and their stencil under a few FOM states."""
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
    return fig


def mesh_figure_2d(plt: Any, problem: Any, mesh: SampleMesh, ref: np.ndarray) -> Any:
    """The sampled grid nodes and the stencil's nodes over the FOM's u at the last computed
    step (field-major state, each field row-major with x fastest)."""
    ny, nx = problem.grid_shape
    cells = ny * nx
    x, y = np.asarray(problem.grid["x"]), np.asarray(problem.grid["y"])
    fig, ax = plt.subplots(figsize=(5.6, 5))
    im = ax.imshow(ref[-1, :cells].reshape(ny, nx), origin="lower", cmap="Greys",
                   extent=(x[0], x[-1], y[0], y[-1]), alpha=0.6)
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"FOM u at t = {(ref.shape[0] - 1) * problem.dt:.3g}")
    st = np.unique(mesh.stencil % cells)
    nodes = np.unique(mesh.rows % cells)
    ax.plot(x[st % nx], y[st // nx], "s", ms=2.5, color="tab:blue",
            label=f"stencil nodes ({st.size})")
    ax.plot(x[nodes % nx], y[nodes // nx], "o", ms=4, color="tab:red",
            label=f"sampled nodes ({nodes.size}, {mesh.rows.size} rows)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{problem.name}, {problem.n}² nodes", fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper right")
    return fig


def parse_list(kind: type) -> Callable[[str], list[Any]]:
    return lambda s: [kind(v) for v in s.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problem", choices=[*STUDIES, "all"], default="burgers1d")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                    help="trained 1D Burgers model folder (default output/burgers1d/models/p3)")
    ap.add_argument("--validation-mu", type=parse_list(float), action="append", default=None,
                    help="1D validation parameter (repeatable) when the model holds out no "
                         "training trajectories; default 4.6,0.024 and 5.3,0.018")
    ap.add_argument("--tolerance", type=float, default=1.5,
                    help="keep the fewest samples whose validation error is within this "
                         "factor of unreduced Deep LSPG's (default 1.5)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per method and parameter, best kept (default 3; 5 "
                         "with --full)")
    ap.add_argument("--full", action="store_true",
                    help="GNAT in the tuning grids too, 5 repeats; 2D: n = 512 too and whole "
                         "trajectories in the timing studies")
    ap.add_argument("--model2d", type=Path, default=None,
                    help="trained 2D Burgers model folder at n = 60 (optional)")
    ap.add_argument("--model2d-128", type=Path, default=None,
                    help="trained 2D Burgers model folder at n = 128 (optional)")
    ap.add_argument("--validation-mu2d", type=parse_list(float), action="append", default=None,
                    help="2D validation parameter when the model holds out no training "
                         "trajectory (default 1.075)")
    ap.add_argument("--sizes2d", type=parse_list(int), default=None,
                    help="grid sizes n of the 2D timing studies (default 60,128,256; "
                         "60,128,256,512 with --full)")
    ap.add_argument("--steps2d", type=int, default=None,
                    help="time steps of the 2D timing studies (default 50; all 1500 with "
                         "--full)")
    ap.add_argument("--p2d", type=int, default=None,
                    help="latent dimension of the untrained 2D decoders (default: the "
                         "trained model's, else the 2D example config's first, else 3)")
    ap.add_argument("--arch2d", type=json.loads, default=None,
                    help="JSON object of [autoencoder] keys that change the untrained 2D "
                         "decoders' family, e.g. '{\"filters\": [8, 16, 16, 32], "
                         "\"kernel_size\": [4, 4, 4, 4]}'")
    ap.add_argument("--hr2d-samples", type=int, default=60,
                    help="sampled grid nodes of the 2D timing studies (default 60)")
    ap.add_argument("--hr2d-basis", type=int, default=30,
                    help="residual basis size of the 2D timing studies (default 30)")
    ap.add_argument("--hr2d-window", type=int, default=20,
                    help="FOM steps at the training parameters for the 2D timing studies' "
                         "sample mesh and POD basis (default 20)")
    ap.add_argument("--unreduced-max2d", type=int, default=128,
                    help="unreduced Deep LSPG in the 2D timing studies up to this n")
    ap.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    ap.add_argument("--figures", type=Path, default=None,
                    help="folder for time_per_step.png and sample_mesh_*.png")
    args = ap.parse_args(argv)
    args.repeat = args.repeat or (5 if args.full else 3)
    args.validation_mu = args.validation_mu or [[4.6, 0.024], [5.3, 0.018]]
    args.validation_mu2d = args.validation_mu2d or [[1.075]]
    args.sizes2d = args.sizes2d or ([60, 128, 256, 512] if args.full else [60, 128, 256])
    args.steps2d = args.steps2d or (1500 if args.full else 50)
    names = list(STUDIES) if args.problem == "all" else [args.problem]
    studies = [s for n in names for s in STUDIES[n](args)]
    missing = [s.model for s in studies
               if s.trained and not (s.model / "manifest.json").is_file()]
    if missing:
        print(f"hyper_reduction: no trained model in {', '.join(map(str, missing))}. Train "
              f"the paper's p = 3 model with 'mrom train examples/burgers1d.toml' (about 30 "
              f"min on 2 cores; it goes to output/burgers1d/models/p3), or a quick one with "
              f"'mrom demo' and pass --model output/demo/models/p3; the 2D timing studies "
              f"need no model (--problem burgers2d).", file=sys.stderr)
        return 2
    print(f"machine: {machine()}")
    results = []
    try:
        for study in studies:
            run = run_study if study.trained else run_timing_study
            results.append(run(study, args))
    except InputError as exc:
        print(f"hyper_reduction: {exc}", file=sys.stderr)
        return 2
    rows = [r for res in results for r in res["rows"]]
    print_table(rows)
    print_costs(results)
    checks = [c for res in results for c in res["checks"]]
    checks += [c for n in names if n in CHECKS for c in CHECKS[n](rows)]
    print()
    for c in checks:
        print(f"{c.status}  {c.name}: {c.detail}")
    print(f"machine after: {machine()}")
    if args.figures is not None:
        for path in figures(results, args.figures):
            print(f"wrote {path}")
    if args.json is not None:
        from fom.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps({
            "rows": rows, "machine": machine(),
            "settings": [{"problem": res["problem"].name, "n": res["problem"].n_dofs,
                          "candidates": res["settings"]} for res in results],
            "decoder_cost": [{"problem": res["problem"].name, "n": res["problem"].n_dofs,
                              **res["decoder_cost"]} for res in results
                             if res.get("decoder_cost")],
            "checks": [{**c.__dict__, "status": c.status} for c in checks]}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(c.passed is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
