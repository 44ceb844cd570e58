"""The online stage of a run config (``mrom rom CONFIG``): every configured ROM at every test
parameter, errors against the test FOM trajectories, one results file.

Config section ``[rom]`` (all keys optional)::

    methods = ["deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin"]
                               # and the hyper-reduced "hr-deep-lspg", "hr-pod-lspg"
    latent_dims = [3]          # default: [autoencoder] latent_dims, else [3]
    atol = 1e-12               # Gauss-Newton/Newton tolerances (rom.projection.ROMOptions)
    rtol = 1e-10
    gtol = 1e-6
    ftol = 1e-12
    stol = 1e-10
    max_iter = 30
    max_backtracks = 20
    linear_solver = "qr"       # or "normal"
    secant = true              # superlinear corrections of Gauss-Newton / Galerkin Newton
    line_search = true
    store_states = true        # decoded ROM states and the FOM reference in the results file
    pod_center = "initial"     # POD of the deviations x^n - x0 (docs/method.md) or "none";
                               # default: "none" if [autoencoder] target = "raw"
    projection = "encoder"     # decoder projection error: decode(encode(x)) or "lsq" fit
    on_failure = "record"      # a non-converging ROM is recorded (NaN error) or "raise"

The POD basis comes from the trajectories of the training snapshot file that the autoencoders
train on (all but the validation trajectories of ``[training]``), the decoders from
``<output_dir>/models/p<p>/``; the ROMs use the test file's time step and scheme. The
hyper-reduced methods (``hr-*``) run the same LSPG on the sample mesh of ``[hyperreduction]``
(:mod:`rom.sample_mesh`), built from the training snapshot file when it is missing or stale.
The results go to ``<output_dir>/rom_results.h5`` (:mod:`rom.results`); if that file exists
and was made from the same inputs (same ``[rom]`` settings, snapshot files, models and sample
mesh), nothing is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fom.atomic import check_writable_dir
from fom.config import Field, RunConfig, at_least, list_of, load_config, non_negative, one_of
from fom.errors import ConvergenceError, InputError
from fom.snapshots import (
    SNAPSHOTS_SCHEMA,
    SnapshotSet,
    check_mu_list,
    file_checksum,
    read_parameters,
    read_snapshots,
    snapshot_paths,
)

from .manifolds import AffineManifold, DecoderManifold
from .metrics import field_errors, projection_error, relative_error
from .projection import ROMOptions, ROMResult, solve_rom
from .results import RunRecord, method_parts, read_results, write_results
from .sample_mesh import SampleMesh, ensure_sample_mesh, hyperreduction_settings

METHODS = ("deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin", "hr-deep-lspg",
           "hr-pod-lspg")
RESULTS_NAME = "rom_results.h5"
_D = ROMOptions()

ROM_SCHEMA: dict[str, Field] = {
    "methods": Field(list, list(METHODS[:4]), list_of(str, one_of(*METHODS)),
                     doc="ROMs to run: deep-lspg, deep-galerkin, pod-lspg, pod-galerkin, and "
                         "hyper-reduced on the [hyperreduction] sample mesh: hr-deep-lspg, "
                         "hr-pod-lspg"),
    "latent_dims": Field(list, None, list_of(int, at_least(1)),
                         doc="latent dimensions p (default: [autoencoder] latent_dims or [3])"),
    "atol": Field(float, _D.atol, non_negative, doc="absolute residual tolerance"),
    "rtol": Field(float, _D.rtol, non_negative, doc="residual tolerance relative to the "
                                                    "initial guess's"),
    "gtol": Field(float, _D.gtol, non_negative, doc="LSPG: ||Q^T r|| <= gtol ||r||"),
    "ftol": Field(float, _D.ftol, non_negative, doc="LSPG: relative decrease of ||r|| per "
                                                    "step below which the solve stops"),
    "stol": Field(float, _D.stol, non_negative, doc="step tolerance relative to 1 + ||z||"),
    "max_iter": Field(int, _D.max_iter, at_least(1), doc="iterations per time step"),
    "max_backtracks": Field(int, _D.max_backtracks, at_least(0), doc="line-search halvings"),
    "linear_solver": Field(str, _D.linear_solver, one_of("qr", "normal"),
                           doc="Gauss-Newton step by Householder QR or normal equations"),
    "secant": Field(bool, _D.secant, doc="secant corrections of Gauss-Newton (LSPG) and "
                                         "of the Galerkin Newton matrix"),
    "line_search": Field(bool, _D.line_search, doc="Armijo backtracking"),
    "store_states": Field(bool, True, doc="write decoded ROM states and FOM reference"),
    "pod_center": Field(str, None, one_of("initial", "none"),
                        doc="POD of deviations from x0 ('initial') or of raw states ('none'); "
                            "default: as the autoencoder's target"),
    "projection": Field(str, "encoder", one_of("encoder", "lsq"),
                        doc="decoder projection error: decode(encode(x)) or least squares"),
    "on_failure": Field(str, "record", one_of("record", "raise"),
                        doc="non-converging ROM: record it (NaN error) or stop"),
}


def rom_settings(cfg: RunConfig) -> dict[str, Any]:
    """The validated ``[rom]`` section with ``latent_dims`` resolved."""
    sec = cfg.section("rom", ROM_SCHEMA)
    if sec["latent_dims"] is None:
        dims = cfg.sections.get("autoencoder", {}).get("latent_dims")
        ok = isinstance(dims, list) and dims and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims)
        sec["latent_dims"] = list(dims) if ok else [3]
    sec["latent_dims"] = sorted(set(sec["latent_dims"]))
    if sec["pod_center"] is None:  # the same training data as the autoencoder
        target = cfg.sections.get("autoencoder", {}).get("target", "deviation")
        sec["pod_center"] = "none" if target == "raw" else "initial"
    sec["methods"] = list(dict.fromkeys(sec["methods"]))
    return sec


def uses_hyperreduction(sec: dict[str, Any]) -> bool:
    """True if a validated ``[rom]`` section runs hyper-reduced methods (``hr-*``)."""
    return any(method_parts(m)[0] for m in sec["methods"])


def hr_info(mesh: SampleMesh, path: Path) -> dict[str, Any]:
    """What a hyper-reduced run records in its ``info``: the sample mesh's facts
    (:meth:`rom.sample_mesh.SampleMesh.describe`) and its file."""
    return {**mesh.describe(), "sample_mesh": str(path)}


def model_dir(cfg: RunConfig, p: int) -> Path:
    """Folder of the trained model with latent dimension ``p``."""
    return cfg.output_dir / "models" / f"p{p}"


def dir_digest(folder: Path) -> str:
    """SHA-256 over the relative names and contents of every file below ``folder``."""
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(folder)).encode())
            h.update(file_checksum(f).encode())
    return h.hexdigest()


def rom_options(sec: dict[str, Any]) -> ROMOptions:
    """The solver options of a validated ``[rom]`` section."""
    return ROMOptions(**{k: sec[k] for k in ("atol", "rtol", "gtol", "ftol", "stol", "max_iter",
                                            "max_backtracks", "linear_solver", "secant",
                                            "line_search")})


def require_models(cfg: RunConfig, dims: list[int]) -> None:
    """Raise :class:`InputError` unless a trained model folder exists for every ``p``."""
    missing = [str(model_dir(cfg, p)) for p in dims if not model_dir(cfg, p).is_dir()]
    if missing:
        raise InputError(f"trained model folder(s) {', '.join(missing)} do not exist "
                         f"(run 'mrom train {cfg.path}' first)")


def load_model(folder: Path, projection: str) -> DecoderManifold:
    """The default ``load_decoder``: a trained model folder as a :class:`DecoderManifold`."""
    return DecoderManifold.load(folder, projection=projection)


def pod_trajectories(cfg: RunConfig, train: SnapshotSet) -> list[int]:
    """The trajectories of the training file that the POD basis is built from.

    The same the autoencoders train on (a fair comparison): every trajectory except the
    validation trajectories of ``[training]`` (``validation_every``, ``validation_params``;
    :func:`autoencoder.data.validation_trajectories`).
    """
    from autoencoder.data import validation_trajectories
    from autoencoder.settings import TRAINING_SCHEMA

    tr = cfg.section("training", TRAINING_SCHEMA)
    val = validation_trajectories(train.mu, tr["validation_every"], tr["validation_params"],
                                  cfg.where("training"))
    return np.setdiff1d(np.arange(train.n_mu), val).tolist()


def check_same_training_data(cfg: RunConfig, pod_traj: list[int], dims: list[int]) -> None:
    """Refuse to compare POD with a model trained on other trajectories of the training file.

    The model's manifest records the trajectories it was trained on (``snapshots.trained_on``);
    a model without that record (trained before it existed) is not checked.

    Raises
    ------
    InputError
        If a model's trajectories differ from ``pod_traj`` (:func:`pod_trajectories`).
    """
    for p in dims:
        try:
            man = json.loads((model_dir(cfg, p) / "manifest.json").read_text())
            trained = man["snapshots"]["trained_on"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if list(trained) != list(pod_traj):
            raise InputError(
                f"{cfg.where('training')}: the POD basis would be built from {len(pod_traj)} "
                f"trajectories of the training file but the model {model_dir(cfg, p)} was "
                f"trained on {len(trained)} other ones; set validation_every / "
                "validation_params as in the config that trained it (a fair comparison uses "
                "the same training data)")


#: The last POD manifold :func:`pod_full` computed, by (training file checksum, centering,
#: trajectories).
_POD_MEMO: dict[tuple[str, str, tuple[int, ...] | None], AffineManifold] = {}


def pod_full(train: SnapshotSet, center: str, trajectories: list[int] | None = None,
             n_modes: int | None = None) -> AffineManifold:
    """The POD manifold of the training snapshots with its leading ``n_modes`` basis vectors
    (default: every one; callers truncate).

    Only the trajectories listed in ``trajectories`` (:func:`pod_trajectories`; default all).
    ``n_modes`` larger than the rank of the data gives every vector. The thin SVD of a large
    training set is slow (at 2D Burgers' 60^2: 6004 snapshots of 6728 values, 80 s on two
    idle cores); with ``n_modes`` a few leading vectors come from the Gram matrix instead
    (:func:`rom.manifolds.pod`: 24 s there). The last result is kept, keyed by the
    file's SHA-256, the centering and the trajectories: a second call in the same process on
    the same data (several ``roms_from_config`` runs and a ``sweep`` in one study) that
    wants no more modes than it has returns it, read-only (possibly with more modes).
    """
    key = (train.checksum(), center, None if trajectories is None else tuple(trajectories))
    data = train if trajectories is None else train.states[list(trajectories)]
    n_traj, n_t_train, n_dofs = (train.states if trajectories is None else data).shape
    rank = min(n_traj * n_t_train, n_dofs)
    wanted = rank if n_modes is None else min(int(n_modes), rank)
    if key not in _POD_MEMO or _POD_MEMO[key].p < wanted:
        full = AffineManifold.from_snapshots(data, wanted, center=center)
        full.basis.flags.writeable = False
        _POD_MEMO.clear()  # one basis at a time: they are as large as the training data
        _POD_MEMO[key] = full
    return _POD_MEMO[key]


def trial_manifold(kind: str, p: int, sec: dict[str, Any], *, pod: AffineManifold | None,
                   folder: Path, load: Callable[[Path, str], Any],
                   where: str) -> tuple[Any, dict[str, Any]]:
    """The trial manifold of a ``[rom]`` method kind (``"pod"`` or ``"deep"``) at ``p``.

    Parameters
    ----------
    kind : {"pod", "deep"}
    p : int
    sec : dict
        The validated ``[rom]`` section (:func:`rom_settings`).
    pod : AffineManifold or None
        The full POD manifold (:func:`pod_full`); needed for ``kind = "pod"``.
    folder : Path
        The trained model folder (:func:`model_dir`); used for ``kind = "deep"``.
    load : callable
        ``load(folder, projection) -> DecoderManifold``.
    where : str
        Config file and ``[rom]`` section, for error messages.

    Returns
    -------
    manifold, info
        The manifold and the ``info`` recorded with its runs.
    """
    if kind == "pod":
        assert pod is not None
        if p > pod.basis.shape[1]:
            raise InputError(f"{where} latent_dims: p = {p} exceeds the rank "
                             f"{pod.basis.shape[1]} of the POD basis")
        manifold: Any = pod.truncate(p)
        return manifold, {"pod_energy": manifold.energy(), "pod_center": sec["pod_center"]}
    manifold = load(folder, sec["projection"])
    if manifold.p != p:
        raise InputError(f"model {folder} has p = {manifold.p}, expected {p}")
    return manifold, {"model_dir": str(folder), "projection": sec["projection"]}


def run_rom(problem: Any, manifold: Any, mu: np.ndarray, projection: str,
            reference: np.ndarray, *, scheme: str, dt: float, t_final: float,
            options: ROMOptions, on_failure: str = "record",
            steps: np.ndarray | None = None,
            sample_mesh: SampleMesh | None = None) -> tuple[ROMResult, float, str]:
    """One ROM trajectory and its relative error against the FOM states ``reference``.

    ``steps``: the time steps of the rows of ``reference`` when it does not hold every step
    (a snapshot file written with ``store_every``, see :func:`stored_steps`); the ROM still
    takes every step, and its result keeps these ones. With a ``sample_mesh`` the ROM is
    hyper-reduced (:func:`rom.projection.solve_rom`); its full states are decoded after the
    time loop for the error (not part of ``wall_s``).

    Returns
    -------
    result, error, failure
        With ``on_failure = "record"`` a :class:`fom.errors.ConvergenceError` gives the
        partial result, a NaN error and the error message; otherwise it is raised.
    """
    try:
        res = solve_rom(problem, manifold, mu, projection, scheme=scheme, dt=dt,
                        t_final=t_final, options=options, sample_mesh=sample_mesh)
    except ConvergenceError as exc:
        if on_failure == "raise":
            raise
        partial = exc.partial if steps is None else exc.partial.at_steps(steps)
        return partial, float("nan"), str(exc)
    if steps is not None:
        res = res.at_steps(steps)
    return res, relative_error(reference, res.states), ""


def run_field_errors(reference: np.ndarray, result: ROMResult, failure: str,
                     n_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-field errors (:func:`rom.metrics.field_errors`) of a :func:`run_rom` result.

    NaN for every field of a failed run (like its relative error), so a results file holds
    them for every run without storing any state.
    """
    if failure or result.states is None or result.states.shape != np.shape(reference):
        return np.full(n_fields, np.nan), np.full(n_fields, np.nan)
    return field_errors(reference, result.states, n_fields)


def training_box_warning(mus: np.ndarray, train_path: Path, names: tuple[str, ...]) -> str:
    """One warning line if some of ``mus`` lie outside the box of the training parameters.

    The box is the per-parameter range of the ``/mu`` of the training snapshot file
    ``train_path`` (the data the POD basis and the autoencoder were built from); outside it
    a ROM extrapolates. Empty if all lie inside or the file does not exist.
    """
    if not train_path.is_file():
        return ""
    try:
        train_mu = read_parameters(train_path)
    except InputError:
        return ""
    lo, hi = train_mu.min(axis=0), train_mu.max(axis=0)
    if train_mu.shape[1] != mus.shape[1]:
        return ""
    outside = [m for m in mus if np.any(m < lo) or np.any(m > hi)]
    if not outside:
        return ""
    box = " x ".join(f"[{a:g}, {b:g}]" for a, b in zip(lo, hi, strict=True))
    first = ", ".join(f"{n} = {v:g}" for n, v in zip(names, outside[0], strict=True))
    which = (f"parameter ({first}) lies" if len(mus) == 1 else
             f"{len(outside)} of {len(mus)} parameters (first: {first}) lie")
    return (f"warning: the ROMs run at {which} outside the box of the training parameters "
            f"{box} of {train_path}: they extrapolate there")


def stored_steps(snap: SnapshotSet, dt: float) -> np.ndarray | None:
    """The step index of each stored time of a snapshot file, or None if it stores every step.

    Raises
    ------
    InputError
        If a stored time is not a whole number of steps ``dt``.
    """
    steps = np.rint(snap.t / dt).astype(np.int64)
    if np.any(np.abs(steps * dt - snap.t) > 1e-9 * max(1.0, float(snap.t[-1]))):
        raise InputError(f"{snap.path}: the stored times /t are not whole steps of dt = {dt}")
    return None if np.array_equal(steps, np.arange(snap.t.size)) else steps


def time_grid(snap: SnapshotSet) -> tuple[float, str, np.ndarray | None]:
    """The time step, scheme and stored steps (:func:`stored_steps`) of a snapshot file's
    trajectories: what a ROM must take to be compared with them."""
    dt = float(snap.solver.get("dt", snap.t[1] - snap.t[0] if snap.t.size > 1 else 0.0))
    return dt, str(snap.solver.get("scheme", "backward_euler")), stored_steps(snap, dt)


def _load_test(path: Path, cfg: RunConfig, kind: str) -> SnapshotSet:
    if not path.exists():
        raise InputError(f"{kind} snapshot file {path} does not exist (run 'mrom snapshots "
                         f"{cfg.path}' first)")
    return read_snapshots(path)


def roms_from_config(config: str | os.PathLike | RunConfig, progress: bool = True, *,
                     load_decoder: Callable[[Path, str], Any] | None = None,
                     results_path: str | os.PathLike | None = None) -> Path:
    """Run the ROMs of a config at its test parameters and write ``rom_results.h5``.

    Parameters
    ----------
    config : path or RunConfig
    progress : bool
        Show a progress bar.
    results_path : path, optional
        Where to write the results; default ``<output_dir>/rom_results.h5``.
    load_decoder : callable, optional
        ``load_decoder(model_dir, projection) -> DecoderManifold``; default
        :meth:`DecoderManifold.load` (tests substitute analytic decoders).

    Returns
    -------
    Path
        The results file.

    Raises
    ------
    InputError
        Bad ``[rom]`` section, missing snapshot files or trained models.
    fom.errors.ConvergenceError
        Only with ``on_failure = "raise"``; otherwise failures are recorded in the file.
    """
    from tqdm import tqdm

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    sec = rom_settings(cfg)
    opts = rom_options(sec)
    hyper = uses_hyperreduction(sec)
    hr_sec = hyperreduction_settings(cfg) if hyper else None
    paths = snapshot_paths(cfg)
    test = _load_test(paths["test"], cfg, "test")
    problem = test.problem()
    check_bounds = cfg.section("snapshots", SNAPSHOTS_SCHEMA)["check_bounds"]
    try:
        check_mu_list(problem, test.mu, check_bounds=check_bounds,
                      override=f"set check_bounds = false in {cfg.where('snapshots')} to "
                               f"allow it")
    except InputError as exc:
        raise InputError(f"{paths['test']}: {exc}") from None
    dt, scheme, steps = time_grid(test)
    methods, dims = sec["methods"], sec["latent_dims"]
    kinds = {method_parts(m)[1] for m in methods}
    deep, pod = "deep" in kinds, "pod" in kinds
    if deep:
        require_models(cfg, dims)
    train = _load_test(paths["train"], cfg, "training") if pod else None
    pod_traj = pod_trajectories(cfg, train) if train is not None else None
    if deep and pod_traj is not None:
        check_same_training_data(cfg, pod_traj, dims)

    out = Path(results_path) if results_path is not None else cfg.output_dir / RESULTS_NAME
    check_writable_dir(out)  # before the runs, not after them
    mesh, mesh_info = None, None
    if hyper:  # every input is checked: the sample mesh may be built now
        mesh_path, mesh, _ = ensure_sample_mesh(cfg, problem=problem, sec=hr_sec,
                                             log=print if progress else None)
        mesh_info = hr_info(mesh, mesh_path)
    fingerprint = json.dumps({
        "rom": sec, "test": test.checksum(), "train": train.checksum() if pod else None,
        "pod_trajectories": pod_traj,
        "models": {str(p): dir_digest(model_dir(cfg, p)) for p in dims} if deep else None,
        **({"sample_mesh": {**mesh_info, "sha256": file_checksum(mesh_path)}} if hyper
           else {}),
    }, sort_keys=True)
    if out.exists():
        try:
            if read_results(out).attrs.get("fingerprint") == fingerprint:
                return out
        except InputError:
            pass

    if warning := training_box_warning(test.mu, paths["train"], test.param_names):
        print(warning, file=sys.stderr, flush=True)
    load = load_decoder or load_model
    pod_all = None
    if pod:
        assert train is not None
        pod_all = pod_full(train, sec["pod_center"], pod_traj, max(dims))
    n_mu = test.n_mu
    records: list[RunRecord] = []
    bar = tqdm(total=len(methods) * len(dims) * n_mu, desc="ROMs", unit="traj",
               disable=not progress)
    proj_cache: dict[tuple[str, int], list[float]] = {}
    for method in methods:
        hr, kind, projection = method_parts(method)
        for p in dims:
            manifold, info = trial_manifold(kind, p, sec, pod=pod_all,
                                            folder=model_dir(cfg, p), load=load,
                                            where=cfg.where("rom"))
            if hr:
                info = {**info, **(mesh_info or {})}
            if (kind, p) not in proj_cache:
                proj_cache[(kind, p)] = [projection_error(manifold, test.states[i])
                                         for i in range(n_mu)]
            results, errors, failures, per_field = [], [], [], []
            for i in range(n_mu):
                bar.set_postfix_str(f"{method} p={p} mu={i + 1}/{n_mu}")
                res, err, failure = run_rom(problem, manifold, test.mu[i], projection,
                                            test.states[i], scheme=scheme, dt=dt,
                                            t_final=float(test.t[-1]), options=opts,
                                            on_failure=sec["on_failure"], steps=steps,
                                            sample_mesh=mesh if hr else None)
                if failure and progress:
                    tqdm.write(f"warning: {failure}")
                results.append(res)
                errors.append(err)
                failures.append(failure)
                per_field.append(run_field_errors(test.states[i], res, failure,
                                                  problem.n_fields))
                bar.update()
            records.append(RunRecord.from_rom_results(
                method, results, test.t.size, relative_error=errors,
                projection_error=proj_cache[(kind, p)], failures=failures,
                store_states=sec["store_states"], info=info, field_errors=per_field,
                fields=problem.fields))
    bar.close()
    write_results(
        out, records, mu=test.mu, t=test.t, param_names=test.param_names,
        reference=test.states if sec["store_states"] else None, grid=test.grid,
        attrs={"problem": problem.name, "problem_config": json.dumps(problem.config()),
               "config": str(cfg.path), "test_file": str(paths["test"]),
               "fingerprint": fingerprint, "rom_config": json.dumps(sec, sort_keys=True)})
    return out


def mean_iterations(record: RunRecord) -> np.ndarray:
    """Mean iterations per time step of each trajectory of a run (over computed steps)."""
    out = np.empty(record.steps.shape[0])
    for i, k in enumerate(record.steps):
        out[i] = record.iterations[i, 1:k].mean() if k > 1 else 0.0
    return out
