"""Parameter sweeps for HPC batch jobs: ``mrom sweep CONFIG.toml``, serial or under MPI.

A sweep runs, at every parameter of a list, the full-order model (``kind = "fom"``; one result
file in the snapshot layout of docs/formats.md, readable by :func:`fom.snapshots.read_snapshots`) or
the full-order model and the ROMs of the config's ``[rom]`` section with their relative errors
against it (``kind = "rom"``; one result file in the :mod:`rom.results` layout, so
``mrom report`` reads it). A ROM sweep builds its trial manifolds as
:func:`rom.online.roms_from_config` does (POD of the training snapshot file, decoders from
``<output_dir>/models/p<p>``), once per rank; the hyper-reduced methods (``hr-*``) read the
``[hyperreduction]`` sample mesh, which rank 0 builds (if missing or stale) before any work
is handed out.

* **MPI** (``mpiexec -n K mrom sweep CONFIG``): rank 0 hands out parameter indices one at a
  time to the ranks that ask for work (dynamic load balancing) and, when ``K <= 4``, computes
  too; every rank commits each finished trajectory atomically into the checkpoint folder; rank 0
  prints one progress line per finished parameter and assembles the final file. Without an MPI
  launcher (or without mpi4py, or with one rank) the same code runs serially.
* **Bit for bit**: the result file holds only deterministic content (no creation time, no wall
  times, no HDF5 object timestamps, fixed chunking, trajectories in parameter order written by
  one rank), so the serial run, any MPI run and any resumed run give identical bytes. Timings
  go to the sidecar log ``<output stem>.log.json``.
* **Checkpoint/resume**: finished parameters live in ``<output>.ckpt/`` (one HDF5 file each,
  written to a temporary name and renamed, so a file there is complete or absent; the folder's
  ``manifest.json`` pins the problem, the solver and the parameter list, and for a ROM sweep the
  ``[rom]`` settings and the checksums of the training file and the models). Started again with the
  same command after a kill, a sweep computes only the missing trajectories. The final file is
  written to a temporary file and renamed; the checkpoint folder is removed afterwards.

The ``[sweep]`` section of a run config (see :data:`SWEEP_SCHEMA`)::

    [sweep]
    kind = "fom"                   # or "rom" (FOM + the [rom] section's ROMs and their errors)
    output = "sweep.h5"            # relative to output_dir
    scheme = "backward_euler"
    check_bounds = true
    params = "paper-train"         # or [[4.3, 0.021], ...] or a product grid:
    # [sweep.params]
    # mu1 = {start = 4.25, stop = 5.5, num = 4}
    # mu2 = [0.015, 0.03]
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fom.atomic import atomic_path, check_writable_dir, write_text_atomic
from fom.config import Field, RunConfig, load_config, one_of
from fom.errors import ConvergenceError, InputError, MromError
from fom.newton import NewtonOptions
from fom.problem import Problem
from fom.registry import get_problem
from fom.snapshots import (
    Checkpoint,
    check_mu_list,
    debug_pause,
    file_checksum,
    parameter_list,
    problem_from_config,
    read_snapshots,
    snapshot_paths,
    write_snapshots,
)
from fom.solve import FOMResult, solve, time_grid

from . import mpi_utils
from .metrics import projection_error
from .online import (
    _load_test,
    check_same_training_data,
    dir_digest,
    hr_info,
    load_model,
    model_dir,
    pod_full,
    pod_trajectories,
    require_models,
    rom_options,
    rom_settings,
    run_field_errors,
    run_rom,
    training_box_warning,
    trial_manifold,
    uses_hyperreduction,
)
from .results import RunRecord, method_parts, read_results, write_results
from .sample_mesh import (
    SampleMesh,
    check_fits,
    check_mesh_output,
    ensure_sample_mesh,
    hyperreduction_settings,
    read_sample_mesh,
)

#: Version of the sweep layout (the ``sweep`` file attribute records it).
SWEEP_FORMAT = 1

#: With at most this many ranks, rank 0 computes trajectories as well as handing them out
#: (``MROM_SWEEP_ROOT_COMPUTES=0`` or ``1`` overrides this).
ROOT_COMPUTES_UP_TO = 4

TAG_RESULT = 11
TAG_TASK = 12
TAG_PLAN = 13


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


SWEEP_SCHEMA: dict[str, Field] = {
    "kind": Field(str, "fom", one_of("fom", "rom"),
                  doc="what runs at each parameter: 'fom' (full-order trajectories) or 'rom' "
                      "(the FOM and the [rom] section's ROMs, with their errors)"),
    "params": Field((str, list, dict), doc="named grid ('paper-train', 'paper-test'), list of "
                    "parameter vectors, or a product grid {name = [values] or "
                    "{start, stop, num}}"),
    "output": Field(str, "sweep.h5", _non_empty,
                    doc="result file (HDF5); a relative path is taken inside output_dir"),
    "scheme": Field(str, "backward_euler", one_of("backward_euler", "bdf2"),
                    doc="time scheme of the FOM"),
    "check_bounds": Field(bool, True,
                          doc="refuse parameters outside the problem's parameter domain"),
}


# ----------------------------------------------------------------------------- the plan


@dataclass
class SweepPlan:
    """Everything a rank needs to compute and store its share of a sweep.

    Attributes
    ----------
    problem : Problem
    mus : ndarray, shape (n_mu, n_params)
    scheme : str
    dt : float
    n_steps : int
    output : Path
        Result file.
    kind : str
    output_dir : Path or None
        Folder created on rank 0 before writing (the config's ``output_dir``).
    where : str
        Config file and section, for error messages.
    rom : dict or None
        ``kind = "rom"`` only: the validated ``[rom]`` section (``settings``), the training
        snapshot file (``train``, None without POD methods), its SHA-256 and the trajectories
        the POD basis is built from (``train_trajectories``), the model folders
        by ``p`` (``models``) and their digests, the sample mesh of the hyper-reduced methods
        (``sample_mesh``: its ``file``, ``sha256`` and the ``info`` runs record; None without
        them) and the ``[rom]`` location (``where``).
    warning : str
        A ROM sweep with parameters outside the box of the training parameters: the line
        that says so (:func:`rom.online.training_box_warning`), printed once by rank 0.
    """

    problem: Problem
    mus: np.ndarray
    scheme: str
    dt: float
    n_steps: int
    output: Path
    kind: str = "fom"
    output_dir: Path | None = None
    where: str = "[sweep]"
    rom: dict[str, Any] | None = None
    warning: str = ""

    @property
    def options(self) -> NewtonOptions:
        return self.problem.newton_defaults()

    @property
    def solver(self) -> dict[str, Any]:
        """Solver settings as recorded in the checkpoint manifest."""
        return {"scheme": self.scheme, "dt": self.dt, "n_steps": self.n_steps,
                "newton": self.options.to_dict()}

    @property
    def sweep_attr(self) -> str:
        """The ``sweep`` file attribute (JSON) that marks a file as this kind of sweep."""
        return json.dumps({"kind": self.kind, "format": SWEEP_FORMAT}, sort_keys=True)

    def checkpoint(self) -> Checkpoint:
        extra: dict[str, Any] = {"sweep": json.loads(self.sweep_attr)}
        if self.rom is not None:  # a checkpoint of other ROM settings, data or models is refused
            extra["rom"] = {k: v for k, v in self.rom.items() if k != "where"}
        return Checkpoint(self.output, self.problem, self.mus, self.solver, extra=extra)

    def fingerprint(self) -> str:
        """Everything the result depends on (JSON); a ROM sweep file records it."""
        return json.dumps(self.checkpoint().manifest, sort_keys=True)

    def run_names(self) -> list[str]:
        """ROM sweep: the runs at each parameter, ``<method>-p<p>``, in file order."""
        assert self.rom is not None
        sec = self.rom["settings"]
        return [f"{m}-p{p}" for m in sec["methods"] for p in sec["latent_dims"]]

    def log_path(self) -> Path:
        """Sidecar JSON log with the timings (kept out of the result file)."""
        return self.output.with_suffix(".log.json")

    def to_json(self) -> dict[str, Any]:
        return {"problem": self.problem.name, "problem_config": self.problem.config(),
                "mus": self.mus.tolist(), "scheme": self.scheme, "dt": self.dt,
                "n_steps": self.n_steps, "output": str(self.output), "kind": self.kind,
                "rom": self.rom}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SweepPlan:
        cfg = dict(d["problem_config"])
        if "image_shape" in cfg and cfg["image_shape"] is not None:
            cfg["image_shape"] = tuple(cfg["image_shape"])
        return cls(get_problem(d["problem"], **cfg), np.array(d["mus"], dtype=np.float64),
                   d["scheme"], float(d["dt"]), int(d["n_steps"]), Path(d["output"]),
                   d["kind"], rom=d.get("rom"))


def product_grid(spec: dict[str, Any], problem: Problem, where: str) -> np.ndarray:
    """Tensor-product parameter grid, the first parameter varying slowest.

    Each parameter of the problem maps to a list of values or to ``{start, stop, num}``
    (``num`` equally spaced values from ``start`` to ``stop`` inclusive).
    """
    names = problem.param_names
    unknown = [k for k in spec if k not in names]
    if unknown:
        raise InputError(f"{where}: unknown parameter '{unknown[0]}' (problem {problem.name} "
                         f"has {', '.join(names)})")
    axes = []
    for name in names:
        if name not in spec:
            raise InputError(f"{where}: missing parameter '{name}'")
        v = spec[name]
        w = f"{where} {name}"
        if isinstance(v, list):
            if not v or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                for x in v):
                raise InputError(f"{w}: must be a non-empty list of numbers, got {v!r}")
            axes.append(np.array(v, dtype=np.float64))
        elif isinstance(v, dict):
            extra = sorted(set(v) - {"start", "stop", "num"})
            if extra:
                raise InputError(f"{w}: unknown key '{extra[0]}' (known: start, stop, num)")
            for k in ("start", "stop", "num"):
                if k not in v:
                    raise InputError(f"{w}: missing key '{k}'")
            for k in ("start", "stop"):
                x = v[k]
                if isinstance(x, bool) or not isinstance(x, int | float) \
                        or not np.isfinite(x):
                    raise InputError(f"{w} {k}: must be a finite number, got {x!r}")
            n = v["num"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InputError(f"{w} num: must be an integer >= 1, got {n!r}")
            axes.append(np.linspace(float(v["start"]), float(v["stop"]), n))
        else:
            raise InputError(f"{w}: must be a list of numbers or a table "
                             f"{{start, stop, num}}, got {v!r}")
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def sweep_parameters(value: str | list | dict, problem: Problem, where: str,
                     check_bounds: bool = True) -> np.ndarray:
    """The parameter list of a ``[sweep] params`` value, validated, shape (n_mu, n_params)."""
    if not isinstance(value, dict):
        return parameter_list(value, problem, where, check_bounds)
    mus = product_grid(value, problem, where)
    try:
        return check_mu_list(problem, mus, check_bounds=check_bounds)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def sweep_plan(config: str | os.PathLike | RunConfig) -> SweepPlan:
    """Validate a run config's ``[problem]`` and ``[sweep]`` sections into a :class:`SweepPlan`.

    Raises
    ------
    InputError
        Naming the file, section and key at fault.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    problem = problem_from_config(cfg)
    sec = cfg.section("sweep", SWEEP_SCHEMA)
    where = cfg.where("sweep")
    mus = sweep_parameters(sec["params"], problem, f"{where} params", sec["check_bounds"])
    try:
        dt, n_steps = time_grid(problem.dt, problem.t_final)
    except InputError as exc:
        raise InputError(f"{cfg.where('problem')}: {exc}") from None
    out = Path(sec["output"])
    if not out.is_absolute():
        out = cfg.output_dir / out
    rom = rom_inputs(cfg, problem) if sec["kind"] == "rom" else None
    # the outputs, before any work (rank 0 creates output_dir in _prepare)
    if out.parent == cfg.output_dir:
        cfg.check_output_dir()
    else:
        try:
            check_writable_dir(out)
        except InputError as exc:
            raise InputError(f"{where} output: {exc}") from None
    if rom is not None and rom["sample_mesh"] is not None:
        # every input is checked: build the sample mesh now if it is missing or stale
        path, mesh, _ = ensure_sample_mesh(cfg, problem=problem)
        rom["sample_mesh"] = {"info": hr_info(mesh, path), "file": str(path),
                              "sha256": file_checksum(path)}
    plan = SweepPlan(problem, mus, sec["scheme"], dt, n_steps, out, sec["kind"],
                     cfg.output_dir, where, rom)
    if rom is not None:
        plan.warning = training_box_warning(mus, snapshot_paths(cfg)["train"],
                                            problem.param_names)
    return plan


def rom_inputs(cfg: RunConfig, problem: Problem) -> dict[str, Any]:
    """The ``[rom]`` section and the files a ROM sweep reads, validated (``SweepPlan.rom``).

    Raises
    ------
    InputError
        Bad ``[rom]`` section, missing training snapshot file (POD methods) or model folders
        (deep methods), or a training file of another state size.
    """
    sec = rom_settings(cfg)
    methods, dims = sec["methods"], sec["latent_dims"]
    kinds = {method_parts(m)[1] for m in methods}
    train_path: str | None = None
    train_sha: str | None = None
    train_traj: list[int] | None = None
    mesh: dict[str, Any] | None = None
    if uses_hyperreduction(sec):  # built by sweep_plan once every input is checked
        mesh = {"file": str(check_mesh_output(cfg, hyperreduction_settings(cfg, problem)))}
    if "pod" in kinds:
        path = snapshot_paths(cfg)["train"]
        train = _load_test(path, cfg, "training")
        if train.n_dofs != problem.n_dofs:
            raise InputError(f"{path}: states have N = {train.n_dofs} entries but the "
                             f"{cfg.where('problem')} has N = {problem.n_dofs}")
        train_path, train_sha = str(path), train.checksum()
        train_traj = pod_trajectories(cfg, train)
    models: dict[str, str] = {}
    digests: dict[str, str] = {}
    if "deep" in kinds:
        require_models(cfg, dims)
        if train_traj is not None:
            check_same_training_data(cfg, train_traj, dims)
        models = {str(p): str(model_dir(cfg, p)) for p in dims}
        digests = {str(p): dir_digest(model_dir(cfg, p)) for p in dims}
    return {"settings": sec, "train": train_path, "train_sha256": train_sha,
            "train_trajectories": train_traj, "models": models, "models_sha256": digests,
            "sample_mesh": mesh,
            "where": cfg.where("rom")}


# ----------------------------------------------------------------------------- one trajectory


class RomSuite:
    """The trial manifolds of a ROM sweep, built once per rank and reused at every parameter.

    Parameters
    ----------
    plan : SweepPlan
        A plan with ``kind = "rom"``.
    load_decoder : callable, optional
        ``load_decoder(model_dir, projection) -> DecoderManifold``; default
        :func:`rom.online.load_model` (tests substitute analytic decoders).
    """

    def __init__(self, plan: SweepPlan,
                 load_decoder: Callable[[Path, str], Any] | None = None) -> None:
        if plan.rom is None:
            raise InputError("a ROM suite needs a plan of kind 'rom'")
        self.plan = plan
        self.sec: dict[str, Any] = plan.rom["settings"]
        self.load = load_decoder or load_model
        self._manifolds: dict[tuple[str, int], tuple[Any, dict[str, Any]]] | None = None
        self._mesh: SampleMesh | None = None

    def sample_mesh(self) -> SampleMesh | None:
        """The sample mesh of the hyper-reduced methods (read on the first call), None
        without them.

        Raises
        ------
        InputError
            If the file changed since the sweep was planned, or fits another problem.
        """
        info = (self.plan.rom or {}).get("sample_mesh")
        if info is None:
            return None
        if self._mesh is None:
            path = Path(info["file"])
            if not path.is_file() or file_checksum(path) != info["sha256"]:
                raise InputError(f"sample mesh {path} is missing or changed since the sweep "
                                 f"was planned (run the sweep again)")
            mesh = read_sample_mesh(path)
            check_fits(mesh, self.plan.problem, f"sample mesh {path}")
            self._mesh = mesh
        return self._mesh

    def manifolds(self) -> dict[tuple[str, int], tuple[Any, dict[str, Any]]]:
        """``{(kind, p): (manifold, info)}`` for kind "pod"/"deep", built on the first call."""
        if self._manifolds is None:
            rom = self.plan.rom
            assert rom is not None
            pod = (pod_full(read_snapshots(rom["train"]), self.sec["pod_center"],
                            rom.get("train_trajectories"), max(self.sec["latent_dims"]))
                   if rom["train"] is not None else None)
            out: dict[tuple[str, int], tuple[Any, dict[str, Any]]] = {}
            for method in self.sec["methods"]:
                kind = method_parts(method)[1]
                for p in self.sec["latent_dims"]:
                    if (kind, p) not in out:
                        out[(kind, p)] = trial_manifold(
                            kind, p, self.sec, pod=pod,
                            folder=Path(rom["models"].get(str(p), ".")), load=self.load,
                            where=rom["where"])
            self._manifolds = out
            self.sample_mesh()
        return self._manifolds

    def run(self, i: int, ref: FOMResult) -> list[RunRecord]:
        """Every configured ROM at parameter ``i``, with its errors against ``ref``.

        Returns one :class:`rom.results.RunRecord` per run (a leading axis of length 1).

        Raises
        ------
        ConvergenceError
            Only with ``[rom] on_failure = "raise"``; the message names the run.
        """
        plan, sec = self.plan, self.sec
        mu, n_t = plan.mus[i], ref.t.size
        opts = rom_options(sec)
        manifolds = self.manifolds()
        mesh = self.sample_mesh()
        proj: dict[tuple[str, int], float] = {}
        records = []
        for method in sec["methods"]:
            hr, kind, projection = method_parts(method)
            for p in sec["latent_dims"]:
                manifold, info = manifolds[(kind, p)]
                if hr:
                    info = {**info, **plan.rom["sample_mesh"]["info"]}
                if (kind, p) not in proj:
                    proj[(kind, p)] = projection_error(manifold, ref.states)
                try:
                    res, err, failure = run_rom(
                        plan.problem, manifold, mu, projection, ref.states, scheme=plan.scheme,
                        dt=plan.dt, t_final=plan.n_steps * plan.dt, options=opts,
                        on_failure=sec["on_failure"], sample_mesh=mesh if hr else None)
                except ConvergenceError as exc:
                    raise ConvergenceError(f"{method}-p{p}: {exc}", step=exc.step,
                                           time=exc.time, residual=exc.residual,
                                           partial=exc.partial) from None
                records.append(RunRecord.from_rom_results(
                    method, [res], n_t, relative_error=[err],
                    projection_error=[proj[(kind, p)]], failures=[failure],
                    store_states=sec["store_states"], info=info,
                    field_errors=[run_field_errors(ref.states, res, failure,
                                                   plan.problem.n_fields)],
                    fields=plan.problem.fields))
        return records


def run_one(plan: SweepPlan, ckpt: Checkpoint, i: int, suite: RomSuite | None = None) -> float:
    """Compute parameter ``i`` and commit it atomically to the checkpoint folder.

    For a FOM sweep the part is the trajectory (:meth:`fom.snapshots.Checkpoint.commit`); for
    a ROM sweep it is a one-parameter :mod:`rom.results` file with the FOM reference (if
    ``store_states``), every run of ``suite`` and the FOM's timings as attributes.

    Returns
    -------
    float
        Wall time (s) of the whole parameter.
    """
    start = time.perf_counter()
    res = solve(plan.problem, plan.mus[i], dt=plan.dt, t_final=plan.n_steps * plan.dt,
                scheme=plan.scheme, options=plan.options)
    if plan.kind == "rom":
        suite = suite or RomSuite(plan)
        records = suite.run(i, res)
        store = bool(suite.sec["store_states"])
        write_results(ckpt.part(i), records, mu=res.mu[None, :], t=res.t,
                      param_names=plan.problem.param_names,
                      reference=res.states[None] if store else None,
                      attrs={"fom_wall_s": float(res.wall_s),
                             "fom_newton_iterations": int(np.sum(res.iterations))})
    else:
        ckpt.commit(i, res)
    wall = time.perf_counter() - start
    debug_pause("commit")
    return wall


def _part_ok(plan: SweepPlan, ckpt: Checkpoint, i: int) -> bool:
    """True if checkpoint part ``i`` exists and holds a result of the right shape and mu."""
    path = ckpt.part(i)
    if not path.exists():
        return False
    n_t = plan.n_steps + 1
    try:
        if plan.kind == "rom":
            assert plan.rom is not None
            rs = read_results(path)
            ok = (rs.mu.shape == (1, plan.mus.shape[1])
                  and np.array_equal(rs.mu[0], plan.mus[i]) and rs.t.shape == (n_t,)
                  and sorted(rs.runs) == sorted(plan.run_names())
                  and (rs.reference is not None) == bool(plan.rom["settings"]["store_states"])
                  and (rs.reference is None
                       or rs.reference.shape == (1, n_t, plan.problem.n_dofs)))
        else:
            with h5py.File(path, "r") as f:
                ok = (f["states"].shape == (n_t, plan.problem.n_dofs)
                      and f["t"].shape == (n_t,)
                      and np.array_equal(f["mu"][()], plan.mus[i]))
    except (InputError, OSError, KeyError, ValueError):
        ok = False
    if not ok:  # damaged (e.g. by a node crash): recompute it
        path.unlink(missing_ok=True)
    return ok


# ----------------------------------------------------------------------------- the driver


class _Progress:
    """One line per finished parameter on rank 0 (stderr)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.count = 0
        self.enabled = enabled

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"sweep: {text}", file=sys.stderr, flush=True)

    def done(self, i: int, mu: np.ndarray, rank: int, wall: float) -> None:
        self.count += 1
        mu_txt = ", ".join(f"{v:.6g}" for v in mu)
        self.note(f"[{self.count}/{self.total}] mu = ({mu_txt}) done on rank {rank} "
                  f"in {wall:.2f} s")


def _output_complete(plan: SweepPlan) -> bool:
    """True if the result file exists, is valid and holds exactly this sweep."""
    if not plan.output.is_file():
        return False
    if plan.kind == "rom":
        try:
            rs = read_results(plan.output)
        except InputError:
            return False
        return (rs.attrs.get("sweep") == plan.sweep_attr
                and rs.attrs.get("fingerprint") == plan.fingerprint()
                and rs.mu.shape == plan.mus.shape and bool(np.array_equal(rs.mu, plan.mus)))
    try:
        snap = read_snapshots(plan.output)
    except InputError:
        return False
    solver = snap.solver
    return (snap.attrs.get("sweep") == plan.sweep_attr
            and snap.problem_name == plan.problem.name
            and snap.problem_config == json.loads(json.dumps(plan.problem.config()))
            and solver.get("scheme") == plan.scheme and solver.get("dt") == plan.dt
            and solver.get("n_steps") == plan.n_steps
            and snap.mu.shape == plan.mus.shape and bool(np.array_equal(snap.mu, plan.mus)))


def _remove_stale_checkpoint(ckpt: Checkpoint) -> None:
    """Remove the checkpoint folder if it belongs to this very sweep (e.g. after a kill just
    after the final rename); a folder of another run is left alone."""
    try:
        old = json.loads((ckpt.folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return
    if old == json.loads(json.dumps(ckpt.manifest)):
        ckpt.remove()


def _remove_stale_temporaries(output: Path) -> None:
    """Delete ``<output>.tmp-*`` files left by runs killed while writing the result file."""
    for tmp in output.parent.glob(output.name + ".tmp-*"):
        tmp.unlink(missing_ok=True)


def _prepare(plan: SweepPlan, progress: _Progress,
             suite: RomSuite | None = None) -> tuple[Checkpoint, list[int]] | None:
    """Rank 0: open the checkpoint and list what is left to do; None if already complete.

    A ROM sweep's manifolds are built here (before anything is written), so that a bad model
    or latent dimension is reported as an input error.
    """
    ckpt = plan.checkpoint()
    if _output_complete(plan):
        _remove_stale_checkpoint(ckpt)
        progress.note(f"{plan.output} is already complete")
        return None
    if suite is not None:
        suite.manifolds()
    where = plan.where.removesuffix(" [sweep]")
    if plan.output_dir is not None and plan.output.parent == plan.output_dir:
        if plan.output_dir.exists() and not plan.output_dir.is_dir():
            raise InputError(f"{where} output_dir: cannot create folder {plan.output_dir}: "
                             f"a file of that name exists")
        try:
            plan.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{where} output_dir: cannot create folder {plan.output_dir}: "
                             f"{exc.strerror}") from None
    try:
        check_writable_dir(plan.output)
    except InputError as exc:
        raise InputError(f"{plan.where} output: {exc}") from None
    ckpt.open()
    _remove_stale_temporaries(plan.output)
    todo = [i for i in range(len(plan.mus)) if not _part_ok(plan, ckpt, i)]
    n_done = len(plan.mus) - len(todo)
    progress.count = n_done
    if n_done:
        progress.note(f"resuming: {n_done} of {len(plan.mus)} parameters already done "
                      f"(checkpoint {ckpt.folder})")
    return ckpt, todo


def _assemble(plan: SweepPlan, ckpt: Checkpoint, run_log: dict[str, Any]) -> Path:
    """Rank 0: write the result file (temporary file + rename) and the sidecar log."""
    if plan.kind == "rom":
        return _assemble_rom(plan, ckpt, run_log)
    results = [ckpt.load(i) for i in range(len(plan.mus))]
    attrs = {"sweep": plan.sweep_attr}
    with atomic_path(plan.output) as tmp:
        write_snapshots(tmp, plan.problem, results, attrs, deterministic=True)
        debug_pause("assemble")
    run_log["finished"] = _now()
    run_log["trajectories"] = [
        {"index": i, "mu": r.mu.tolist(), "wall_s": r.wall_s,
         "newton_iterations": int(np.sum(r.iterations))} for i, r in enumerate(results)]
    write_text_atomic(plan.log_path(), json.dumps(run_log, indent=1) + "\n")
    debug_pause("cleanup")
    ckpt.remove()
    return plan.output


def _assemble_rom(plan: SweepPlan, ckpt: Checkpoint, run_log: dict[str, Any]) -> Path:
    """Rank 0, ROM sweep: stack the one-parameter parts into one :mod:`rom.results` file."""
    assert plan.rom is not None
    parts = [read_results(ckpt.part(i)) for i in range(len(plan.mus))]
    records = []
    for name in plan.run_names():
        recs = [rs.runs[name] for rs in parts]
        first = recs[0]

        def cat(key: str, recs: list[RunRecord] = recs) -> np.ndarray:
            return np.concatenate([getattr(r, key) for r in recs])

        # parts of an older version may lack the per-field errors: then none are kept
        per_field = all(r.field_error is not None for r in recs)

        records.append(RunRecord(
            method=first.method, p=first.p, latent=cat("latent"),
            iterations=cat("iterations"), residuals=cat("residuals"),
            backtracks=cat("backtracks"), steps=cat("steps"), wall_s=cat("wall_s"),
            relative_error=cat("relative_error"), projection_error=cat("projection_error"),
            states=cat("states") if first.states is not None else None, scheme=first.scheme,
            dt=first.dt, options=first.options, info=first.info,
            failures=[f for r in recs for f in r.failures],
            field_error=cat("field_error") if per_field else None,
            max_step_field_error=cat("max_step_field_error") if per_field else None,
            fields=first.fields if per_field else ()))
    store = bool(plan.rom["settings"]["store_states"])
    reference = np.concatenate([rs.reference for rs in parts]) if store else None
    attrs = {"problem": plan.problem.name,
             "problem_config": json.dumps(plan.problem.config(), sort_keys=True),
             "solver": json.dumps(plan.solver, sort_keys=True), "sweep": plan.sweep_attr,
             "fingerprint": plan.fingerprint(),
             "rom_config": json.dumps(plan.rom["settings"], sort_keys=True)}
    with atomic_path(plan.output) as tmp:
        write_results(tmp, records, mu=plan.mus, t=parts[0].t,
                      param_names=plan.problem.param_names, reference=reference,
                      grid=plan.problem.grid, attrs=attrs, deterministic=True)
        debug_pause("assemble")
    run_log["finished"] = _now()
    run_log["trajectories"] = [
        {"index": i, "mu": plan.mus[i].tolist(), "fom_wall_s": rs.attrs["fom_wall_s"],
         "fom_newton_iterations": int(rs.attrs["fom_newton_iterations"]),
         "roms": {name: {"wall_s": float(rec.wall_s[0]),
                         "iterations": int(np.sum(rec.iterations[0])),
                         "relative_error": float(rec.relative_error[0]),
                         **({"field_error": dict(zip(rec.fields, rec.field_error[0].tolist(),
                                                     strict=True))}
                            if rec.field_error is not None else {})}
                  for name, rec in rs.runs.items()}}
        for i, rs in enumerate(parts)]
    write_text_atomic(plan.log_path(), json.dumps(run_log, indent=1) + "\n")
    debug_pause("cleanup")
    ckpt.remove()
    return plan.output


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _failure_error(failures: list[dict[str, Any]], plan: SweepPlan,
                   ckpt: Checkpoint) -> ConvergenceError:
    first = failures[0]
    return ConvergenceError(
        f"{len(failures)} of {len(plan.mus)} parameters did not converge (first: "
        f"{first['message']}); the others are kept in {ckpt.folder}",
        step=int(first["step"]), time=float(first["time"]),
        residual=float(first["residual"]))


def _failure(i: int, exc: ConvergenceError) -> dict[str, Any]:
    return {"index": i, "message": str(exc), "step": exc.step, "time": exc.time,
            "residual": exc.residual}


def _sweep_serial(plan: SweepPlan, progress: _Progress, suite: RomSuite | None = None) -> Path:
    prepared = _prepare(plan, progress, suite)
    if prepared is None:
        return plan.output
    ckpt, todo = prepared
    run_log: dict[str, Any] = {"output": str(plan.output), "n_params": len(plan.mus),
                               "n_ranks": 1, "started": _now(),
                               "resumed_parts": len(plan.mus) - len(todo)}
    failures = []
    for i in todo:
        try:
            wall = run_one(plan, ckpt, i, suite)
        except ConvergenceError as exc:
            failures.append(_failure(i, exc))
            progress.note(f"mu = {plan.mus[i].tolist()} failed: {exc}")
            continue
        progress.done(i, plan.mus[i], 0, wall)
    if failures:
        raise _failure_error(failures, plan, ckpt)
    return _assemble(plan, ckpt, run_log)


def _sweep_root(comm: Any, plan_or_error: SweepPlan | Exception,
                progress: _Progress, suite: RomSuite | None = None) -> Path:
    """Rank 0 under MPI: validate, hand out work (and compute), assemble."""
    size = comm.Get_size()
    if isinstance(plan_or_error, Exception):
        for r in range(1, size):
            mpi_utils.send_json(comm, {"ok": False}, r, TAG_PLAN)
        raise plan_or_error
    plan = plan_or_error
    try:
        prepared = _prepare(plan, progress, suite)
    except BaseException:
        for r in range(1, size):
            mpi_utils.send_json(comm, {"ok": False}, r, TAG_PLAN)
        raise
    for r in range(1, size):
        mpi_utils.send_json(comm, {"ok": prepared is not None, "plan": plan.to_json()}, r,
                            TAG_PLAN)
    if prepared is None:
        return plan.output
    ckpt, todo = prepared
    run_log: dict[str, Any] = {"output": str(plan.output), "n_params": len(plan.mus),
                               "n_ranks": size, "started": _now(),
                               "resumed_parts": len(plan.mus) - len(todo)}
    queue = deque(todo)
    flag = os.environ.get("MROM_SWEEP_ROOT_COMPUTES", "").strip()
    root_computes = flag == "1" if flag in ("0", "1") else size <= ROOT_COMPUTES_UP_TO
    active = size - 1          # workers that have not been told to stop
    failures: list[dict[str, Any]] = []
    fatal: BaseException | str | None = None
    poll = mpi_utils.Poller()
    while active > 0 or (root_computes and queue and fatal is None):
        src = mpi_utils.probe(comm, None, TAG_RESULT) if active > 0 else None
        if src is not None:
            msg, src = mpi_utils.recv_json(comm, src, TAG_RESULT)
            status = msg["status"]
            if status == "done":
                i = msg["index"]
                progress.done(i, plan.mus[i], src, msg["wall_s"])
            elif status == "failed":
                failures.append(msg["failure"])
                progress.note(f"mu = {plan.mus[msg['failure']['index']].tolist()} failed on "
                              f"rank {src}: {msg['failure']['message']}")
            elif status == "fatal":
                fatal = fatal or f"rank {src}: {msg['message']}"
            nxt = queue.popleft() if queue and fatal is None else -1
            if nxt < 0:
                active -= 1
            mpi_utils.send_json(comm, {"index": nxt}, src, TAG_TASK)
            poll.reset()
        elif root_computes and queue and fatal is None:
            i = queue.popleft()
            try:
                wall = run_one(plan, ckpt, i, suite)
            except ConvergenceError as exc:
                failures.append(_failure(i, exc))
                progress.note(f"mu = {plan.mus[i].tolist()} failed: {exc}")
            except BaseException as exc:  # stop the workers cleanly, then re-raise
                fatal = exc
            else:
                progress.done(i, plan.mus[i], 0, wall)
            poll.reset()
        else:
            poll.sleep()
    if isinstance(fatal, BaseException):
        raise fatal
    if fatal is not None:
        raise MromError(f"sweep aborted: {fatal}")
    if failures:
        failures.sort(key=lambda f: f["index"])
        raise _failure_error(failures, plan, ckpt)
    return _assemble(plan, ckpt, run_log)


def _sweep_worker(comm: Any) -> None:
    """Ranks > 0: ask rank 0 for parameter indices until told to stop."""
    msg, _ = mpi_utils.recv_json(comm, 0, TAG_PLAN)
    if not msg["ok"]:
        return
    plan = SweepPlan.from_json(msg["plan"])
    ckpt = plan.checkpoint()
    suite = RomSuite(plan) if plan.kind == "rom" else None  # manifolds built at first use
    report: dict[str, Any] = {"status": "ready"}
    while True:
        mpi_utils.send_json(comm, report, 0, TAG_RESULT)
        task, _ = mpi_utils.recv_json(comm, 0, TAG_TASK)
        i = int(task["index"])
        if i < 0:
            return
        try:
            wall = run_one(plan, ckpt, i, suite)
        except ConvergenceError as exc:
            report = {"status": "failed", "failure": _failure(i, exc)}
        except Exception as exc:
            report = {"status": "fatal", "message": f"{type(exc).__name__}: {exc}"}
        else:
            report = {"status": "done", "index": i, "wall_s": wall}


def _warn(plan: SweepPlan) -> None:
    if plan.warning:
        print(plan.warning, file=sys.stderr, flush=True)


def sweep(config: str | os.PathLike | RunConfig, progress: bool = True,
          comm: Any = "auto", *,
          load_decoder: Callable[[Path, str], Any] | None = None) -> Path | None:
    """Run the ``[sweep]`` of a run config, serially or under MPI (``mrom sweep CONFIG``).

    Parameters
    ----------
    config : path or RunConfig
        Run config with ``[problem]`` and ``[sweep]`` sections.
    progress : bool
        Print one line per finished parameter (rank 0, stderr).
    comm : mpi4py communicator, None or "auto"
        ``"auto"`` uses ``MPI.COMM_WORLD`` when started by an MPI launcher with more than one
        rank (see :func:`rom.mpi_utils.get_comm`); ``None`` forces a serial run.
    load_decoder : callable, optional
        ROM sweeps, serial runs only: ``load_decoder(model_dir, projection) ->
        DecoderManifold`` instead of :func:`rom.online.load_model` (tests substitute analytic
        decoders; other ranks could not share it).

    Returns
    -------
    Path or None
        The result file on rank 0 (and in a serial run); None on the other ranks.

    Raises
    ------
    InputError
        For a bad config (raised on rank 0 only; the other ranks return None).
    ConvergenceError
        If the FOM fails at some parameters, or a ROM with ``[rom] on_failure = "raise"``
        (all others are computed and kept in the checkpoint folder).
    """
    if comm == "auto":
        comm = mpi_utils.get_comm()
    if comm is None:
        plan = sweep_plan(config)
        _warn(plan)
        suite = RomSuite(plan, load_decoder) if plan.kind == "rom" else None
        return _sweep_serial(plan, _Progress(len(plan.mus), progress), suite)
    if load_decoder is not None:
        raise InputError("load_decoder is only supported by serial sweeps")
    if comm.Get_rank() != 0:
        _sweep_worker(comm)
        return None
    try:
        plan_or_error: SweepPlan | Exception = sweep_plan(config)
    except Exception as exc:  # tell the other ranks to stop before raising
        plan_or_error = exc
    else:
        _warn(plan_or_error)
    n = len(plan_or_error.mus) if isinstance(plan_or_error, SweepPlan) else 0
    suite = (RomSuite(plan_or_error) if isinstance(plan_or_error, SweepPlan)
             and plan_or_error.kind == "rom" else None)
    return _sweep_root(comm, plan_or_error, _Progress(n, progress), suite)


__all__ = ["SWEEP_SCHEMA", "RomSuite", "SweepPlan", "product_grid", "rom_inputs", "run_one",
           "sweep", "sweep_parameters", "sweep_plan"]
