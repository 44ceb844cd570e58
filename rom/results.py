"""The ROM results file (HDF5; docs/formats.md, "ROM results files"), written atomically.

One file holds every ROM run of a study (several methods and latent dimensions) on one set of
test parameters and one time grid::

    /mu                      float64 (n_mu, n_params)    attrs: names
    /t                       float64 (n_t,)
    /grid/<name>             coordinates of the degrees of freedom (optional)
    /reference/states        float64 (n_mu, n_t, N)      FOM reference trajectories (optional)
    /runs/<run>/             one group per (method, p), e.g. /runs/deep-lspg-p3
        attrs: method ("deep-lspg", "pod-galerkin", "hr-deep-lspg", ...), projection
               ("lspg"|"galerkin"),
               manifold ("decoder"|"pod"), p, scheme, dt, options (JSON), info (JSON),
               failures (JSON list: "" or the error message, per mu)
        latent               float64 (n_mu, n_t, p)
        states               float64 (n_mu, n_t, N)      decoded ROM states (optional)
        iterations           int64   (n_mu, n_t)         Gauss-Newton/Newton iterations per step
        residuals            float64 (n_mu, n_t)         final residual norm per step
        backtracks           int64   (n_mu, n_t)         rejected line-search points per step
        steps                int64   (n_mu,)             time points computed (n_t = complete)
        wall_s               float64 (n_mu,)             online wall time per trajectory
                                                             (absent in deterministic files)
        relative_error       float64 (n_mu,)             vs /reference (NaN: failed or none)
        projection_error     float64 (n_mu,)             of the trial manifold (NaN: none)
        field_error          float64 (n_mu, n_fields)    per-field trajectory error vs
                                                             /reference (optional; attrs: fields)
        max_step_field_error float64 (n_mu, n_fields)    per-field largest per-step error
                                                             (with field_error; attrs: fields)
    file attrs: format, format_version, version, created (not in deterministic files),
                plus the writer's (problem, ...)

A trajectory that failed to converge keeps its first ``steps[i]`` time points; the entries after
them are NaN, and so is its relative error (also NaN when there is no reference). A file
written with ``deterministic=True`` (``mrom sweep``) holds nothing that depends on when or how
fast it was made: no ``created`` attribute, no ``wall_s`` datasets (read back as NaN, "not
recorded"); object timestamps are never stored. The per-field errors
(:func:`rom.metrics.field_errors`) are finite exactly where ``relative_error`` is; files
written before they existed have neither dataset (read back as None).
:func:`read_results` checks all of this and raises :class:`fom.errors.InputError` naming the
file and the dataset at fault.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fom.atomic import atomic_path
from fom.errors import InputError
from fom.hdf5 import open_for_reading

FORMAT = "manifold-rom results"
FORMAT_VERSION = 1
#: The optional per-field error datasets of a run (both or neither; attribute ``fields``).
FIELD_KEYS = ("field_error", "max_step_field_error")


def method_parts(method: str) -> tuple[bool, str, str]:
    """The parts of a ROM method name: ``(hyper_reduced, kind, projection)``.

    ``"deep-lspg"`` gives ``(False, "deep", "lspg")``, ``"hr-pod-lspg"`` gives
    ``(True, "pod", "lspg")``: the ``hr-`` prefix marks a hyper-reduced ROM (on a sample
    mesh), ``kind`` is the trial manifold (``"deep"`` decoder or ``"pod"``), ``projection``
    the projection (``"lspg"`` or ``"galerkin"``).
    """
    parts = method.split("-")
    hyper = parts[0] == "hr"
    if hyper:
        parts = parts[1:]
    return hyper, parts[0], "-".join(parts[1:])


@dataclass
class RunRecord:
    """One ROM configuration (method and p) run at every test parameter.

    Arrays have a leading axis over the test parameters ``mu`` of the file.
    """

    method: str
    p: int
    latent: np.ndarray
    iterations: np.ndarray
    residuals: np.ndarray
    backtracks: np.ndarray
    steps: np.ndarray
    wall_s: np.ndarray
    relative_error: np.ndarray
    projection_error: np.ndarray
    states: np.ndarray | None = None
    scheme: str = "backward_euler"
    dt: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    field_error: np.ndarray | None = None
    max_step_field_error: np.ndarray | None = None
    fields: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Group name in the file, e.g. ``deep-lspg-p3``."""
        return f"{self.method}-p{self.p}"

    @property
    def manifold(self) -> str:
        """``"decoder"`` for (hr-)deep-* methods, ``"pod"`` for (hr-)pod-* methods."""
        return "decoder" if method_parts(self.method)[1] == "deep" else "pod"

    @property
    def projection(self) -> str:
        """``"lspg"`` or ``"galerkin"``."""
        return method_parts(self.method)[2]

    @property
    def hyper_reduced(self) -> bool:
        """True for the hyper-reduced methods (``hr-*``, run on a sample mesh)."""
        return method_parts(self.method)[0]

    @classmethod
    def from_rom_results(cls, method: str, results: Sequence[Any], n_t: int, *,
                         relative_error: Sequence[float] | None = None,
                         projection_error: Sequence[float] | None = None,
                         failures: Sequence[str] | None = None, store_states: bool = True,
                         info: dict[str, Any] | None = None,
                         field_errors: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                         fields: Sequence[str] = ()) -> RunRecord:
        """Stack :class:`rom.projection.ROMResult` objects (complete or partial) of one run.

        A partial result (fewer than ``n_t`` time points) is padded with NaN.
        ``field_errors``: per result the pair of :func:`rom.metrics.field_errors` (NaN for a
        failed one), for the problem's ``fields``.
        """
        if not results:
            raise InputError("no ROM results to record")
        n_mu, p, n = len(results), results[0].p, results[0].states.shape[1]

        def pad(values: list[np.ndarray], shape: tuple[int, ...], fill: float,
                dtype: Any = np.float64) -> np.ndarray:
            out = np.full((n_mu, n_t, *shape), fill, dtype=dtype)
            for i, v in enumerate(values):
                out[i, : len(v)] = v
            return out

        latent = pad([r.latent for r in results], (p,), np.nan)
        states = pad([r.states for r in results], (n,), np.nan) if store_states else None
        return cls(
            method=method, p=int(p), latent=latent, states=states,
            iterations=pad([r.iterations for r in results], (), 0, np.int64),
            residuals=pad([r.residuals for r in results], (), np.nan),
            backtracks=pad([r.backtracks for r in results], (), 0, np.int64),
            steps=np.array([len(r.t) for r in results], dtype=np.int64),
            wall_s=np.array([r.wall_s for r in results], dtype=np.float64),
            relative_error=np.asarray(relative_error if relative_error is not None
                                      else [np.nan] * n_mu, dtype=np.float64),
            projection_error=np.asarray(projection_error if projection_error is not None
                                        else [np.nan] * n_mu, dtype=np.float64),
            scheme=results[0].scheme, dt=float(results[0].dt), options=dict(results[0].options),
            info=dict(info or {}), failures=list(failures or [""] * n_mu),
            field_error=None if field_errors is None else
            np.array([fe[0] for fe in field_errors], dtype=np.float64).reshape(n_mu, -1),
            max_step_field_error=None if field_errors is None else
            np.array([fe[1] for fe in field_errors], dtype=np.float64).reshape(n_mu, -1),
            fields=tuple(fields))


@dataclass
class ResultSet:
    """Contents of a results file (what :func:`read_results` returns)."""

    mu: np.ndarray
    t: np.ndarray
    runs: dict[str, RunRecord]
    param_names: tuple[str, ...] = ()
    reference: np.ndarray | None = None
    grid: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def select(self, method: str | None = None, p: int | None = None) -> list[RunRecord]:
        """Runs of a method and/or latent dimension, sorted by method then p."""
        out = [r for r in self.runs.values()
               if (method is None or r.method == method) and (p is None or r.p == p)]
        return sorted(out, key=lambda r: (r.method, r.p))

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names of the runs' per-field errors (empty if no run has them)."""
        return next((r.fields for r in self.runs.values() if r.field_error is not None), ())


# ----------------------------------------------------------------------------- writing


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=lambda o: o.tolist()
                      if isinstance(o, np.ndarray) else str(o))


def write_results(path: str | os.PathLike, runs: ResultSet | Iterable[RunRecord], *,
                  mu: np.ndarray | None = None, t: np.ndarray | None = None,
                  param_names: Sequence[str] = (), reference: np.ndarray | None = None,
                  grid: dict[str, np.ndarray] | None = None,
                  attrs: dict[str, Any] | None = None, deterministic: bool = False) -> Path:
    """Write ROM runs to ``path`` atomically in the layout of the module docstring.

    Parameters
    ----------
    path : path
    runs : ResultSet or iterable of RunRecord
        With a :class:`ResultSet` the other arguments default to its fields.
    mu, t : ndarray
        Test parameters (n_mu, n_params) and times (n_t,) shared by all runs.
    param_names, reference, grid, attrs
        Optional: parameter names, FOM reference states (n_mu, n_t, N), grid coordinates, and
        extra file attributes (strings or JSON-serialisable values).
    deterministic : bool
        Leave out everything that depends on when or how fast the runs were made (the
        ``created`` attribute and the ``wall_s`` datasets), so that the same runs always give
        the same bytes (``mrom sweep``; its timings go to a sidecar log).
    """
    if isinstance(runs, ResultSet):
        rs = runs
        mu = rs.mu if mu is None else mu
        t = rs.t if t is None else t
        param_names = param_names or rs.param_names
        reference = rs.reference if reference is None else reference
        grid = rs.grid if grid is None else grid
        attrs = {**{k: v for k, v in rs.attrs.items()
                    if k not in ("format", "format_version", "created")}, **(attrs or {})}
        records = list(rs.runs.values())
    else:
        records = list(runs)
    if mu is None or t is None:
        raise InputError("write_results needs the test parameters mu and the times t")
    mu = np.atleast_2d(np.asarray(mu, dtype=np.float64))
    t = np.asarray(t, dtype=np.float64)
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate ROM runs {sorted(n for n in names if names.count(n) > 1)}")
    for r in records:
        _check_record(r, r.name, mu.shape[0], t.size, where=str(path),
                      has_reference=reference is not None)
    from fom import __version__

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        dmu = f.create_dataset("mu", data=mu, track_times=False)
        dmu.attrs["names"] = list(param_names) or [f"mu{i + 1}" for i in range(mu.shape[1])]
        f.create_dataset("t", data=t, track_times=False)
        if grid:
            g = f.create_group("grid")
            for k, v in grid.items():
                g.create_dataset(k, data=np.asarray(v), track_times=False)
        if reference is not None:
            ref = np.asarray(reference, dtype=np.float64)
            f.create_group("reference").create_dataset(
                "states", data=ref, chunks=(1, *ref.shape[1:]) if ref.ndim == 3 else None,
                track_times=False)
        runs_g = f.create_group("runs")
        for r in records:
            g = runs_g.create_group(r.name)
            g.attrs.update({"method": r.method, "projection": r.projection,
                            "manifold": r.manifold, "p": int(r.p), "scheme": r.scheme,
                            "dt": float(r.dt), "options": _json(r.options),
                            "info": _json(r.info), "failures": _json(list(r.failures))})
            g.create_dataset("latent", data=r.latent, track_times=False)
            if r.states is not None:
                g.create_dataset("states", data=r.states, chunks=(1, *r.states.shape[1:]),
                                 track_times=False)
            for key in ("iterations", "residuals", "backtracks", "steps", "wall_s",
                        "relative_error", "projection_error"):
                if key != "wall_s" or not deterministic:
                    g.create_dataset(key, data=getattr(r, key), track_times=False)
            for key in FIELD_KEYS:
                if getattr(r, key) is not None:
                    g.create_dataset(key, data=getattr(r, key), track_times=False)
                    g[key].attrs["fields"] = list(r.fields)
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION,
                        "version": __version__})
        if not deterministic:
            f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if isinstance(v, str | int | float) else _json(v)
    return Path(path)


# ----------------------------------------------------------------------------- reading


def _check_record(r: RunRecord, name: str, n_mu: int, n_t: int, where: str,
                  has_reference: bool = False) -> None:
    """Shapes and finiteness of one run (the rules of the module docstring).

    With a reference, every complete trajectory needs a finite relative error.
    """
    loc = f"{where}: /runs/{name}"
    p = int(r.p)
    if p < 1:
        raise InputError(f"{loc}: p must be >= 1, got {p}")
    shapes = {"latent": (n_mu, n_t, p), "iterations": (n_mu, n_t), "residuals": (n_mu, n_t),
              "backtracks": (n_mu, n_t), "steps": (n_mu,), "wall_s": (n_mu,),
              "relative_error": (n_mu,), "projection_error": (n_mu,)}
    for key, shape in shapes.items():
        arr = np.asarray(getattr(r, key))
        if arr.shape != shape:
            raise InputError(f"{loc}/{key} has shape {arr.shape}, expected {shape}")
    if r.states is not None and (np.ndim(r.states) != 3 or r.states.shape[:2] != (n_mu, n_t)):
        raise InputError(f"{loc}/states has shape {np.shape(r.states)}, expected "
                         f"({n_mu}, {n_t}, N)")
    steps = np.asarray(r.steps)
    if np.any(steps < 1) or np.any(steps > n_t):
        raise InputError(f"{loc}/steps must lie in [1, {n_t}], got {steps.tolist()}")
    for i in range(n_mu):
        k = int(steps[i])
        for key in ("latent", "residuals", "states"):
            arr = getattr(r, key)
            if arr is not None and not np.all(np.isfinite(arr[i, :k])):
                raise InputError(f"{loc}/{key} contains NaN or Inf values in trajectory {i} "
                                 f"(within its {k} computed time points)")
        err = float(r.relative_error[i])
        if np.isinf(err) or (has_reference and k == n_t and not np.isfinite(err)):
            raise InputError(f"{loc}/relative_error is {err} for the complete trajectory {i}")
    wall = np.asarray(r.wall_s, dtype=np.float64)
    if np.any(np.isinf(wall)) or np.any(wall[~np.isnan(wall)] < 0):
        raise InputError(f"{loc}/wall_s contains negative or Inf values (NaN: not recorded)")
    if len(r.failures) != n_mu:
        raise InputError(f"{loc}: attribute 'failures' has {len(r.failures)} entries, "
                         f"expected {n_mu}")
    _check_field_errors(r, loc, n_mu)


def _check_field_errors(r: RunRecord, loc: str, n_mu: int) -> None:
    """The per-field errors: both or neither, ``(n_mu, len(fields))``, no Inf or negative
    value, and finite for exactly the trajectories whose ``relative_error`` is finite."""
    present = [key for key in FIELD_KEYS if getattr(r, key) is not None]
    if not present:
        return
    if len(present) == 1:
        other = FIELD_KEYS[1 - FIELD_KEYS.index(present[0])]
        raise InputError(f"{loc} has {present[0]} but not {other}")
    if not r.fields:
        raise InputError(f"{loc}/field_error: no field names (attribute 'fields')")
    finite = np.isfinite(np.asarray(r.relative_error, dtype=np.float64))
    for key in FIELD_KEYS:
        arr = np.asarray(getattr(r, key), dtype=np.float64)
        if arr.shape != (n_mu, len(r.fields)):
            raise InputError(f"{loc}/{key} has shape {arr.shape}, expected "
                             f"({n_mu}, {len(r.fields)}) for the fields {list(r.fields)}")
        if np.any(np.isinf(arr)) or np.any(arr[~np.isnan(arr)] < 0):
            raise InputError(f"{loc}/{key} contains negative or Inf values")
        bad = np.flatnonzero(np.where(finite, ~np.isfinite(arr).all(axis=1),
                                      ~np.isnan(arr).all(axis=1)))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"{loc}/{key} of trajectory {i} is {arr[i].tolist()} but its "
                             f"relative_error is {float(r.relative_error[i])} (both finite "
                             f"or both NaN)")


def _read(g: h5py.Group, key: str, loc: str, kind: str = "f") -> np.ndarray:
    if key not in g:
        raise InputError(f"{loc}: missing dataset {g.name.rstrip('/')}/{key}")
    ds = g[key]
    if not isinstance(ds, h5py.Dataset):
        raise InputError(f"{loc}: {ds.name} is not a dataset")
    if ds.dtype.kind not in (("i", "u") if kind == "i" else ("f",)):
        raise InputError(f"{loc}: {ds.name} has dtype {ds.dtype}, expected "
                         f"{'integers' if kind == 'i' else 'float64'}")
    return np.asarray(ds[()], dtype=np.int64 if kind == "i" else np.float64)


def _attr(g: h5py.Group | h5py.File, key: str, loc: str, parse: bool = False) -> Any:
    if key not in g.attrs:
        raise InputError(f"{loc}: {g.name} lacks attribute '{key}'")
    v = g.attrs[key]
    v = v.decode() if isinstance(v, bytes) else v
    if parse:
        try:
            return json.loads(v)
        except (TypeError, ValueError):
            raise InputError(f"{loc}: attribute '{key}' of {g.name} is not valid JSON") \
                from None
    return v


def _field_names(g: h5py.Group, per_field: dict[str, np.ndarray], loc: str) -> tuple[str, ...]:
    """The ``fields`` attribute of a run's per-field error datasets (the same on both)."""
    names = []
    for key in per_field:
        if "fields" not in g[key].attrs:
            raise InputError(f"{loc}: {g[key].name} lacks attribute 'fields'")
        names.append(tuple(str(v.decode() if isinstance(v, bytes) else v)
                           for v in np.atleast_1d(g[key].attrs["fields"])))
    if len(set(names)) > 1:
        raise InputError(f"{loc}: {g.name}/field_error and max_step_field_error name "
                         f"different fields {list(names[0])} and {list(names[1])}")
    return names[0] if names else ()


def read_results(path: str | os.PathLike) -> ResultSet:
    """Load and validate a results file.

    Raises
    ------
    InputError
        If the file is missing or not HDF5, or a dataset is missing, has the wrong shape or
        dtype, or holds NaN/Inf where values are required; the message names the file and
        the dataset.
    """
    path = Path(path)
    loc = str(path)
    with open_for_reading(path, "results file") as f:
        if str(f.attrs.get("format", "")) != FORMAT:
            raise InputError(f"{path} is not a manifold-rom results file (attribute 'format')")
        mu = _read(f, "mu", loc)
        t = _read(f, "t", loc)
        if mu.ndim != 2:
            raise InputError(f"{loc}: /mu has shape {mu.shape}, expected (n_mu, n_params)")
        if t.ndim != 1 or t.size < 1:
            raise InputError(f"{loc}: /t has shape {t.shape}, expected (n_t,)")
        for name, arr in (("mu", mu), ("t", t)):
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{loc}: /{name} contains NaN or Inf values")
        names = tuple(str(n) for n in np.atleast_1d(f["mu"].attrs.get("names", [])))
        n_mu, n_t = mu.shape[0], t.size
        reference = None
        if "reference" in f:
            reference = _read(f["reference"], "states", loc)
            if reference.ndim != 3 or reference.shape[:2] != (n_mu, n_t):
                raise InputError(f"{loc}: /reference/states has shape {reference.shape}, "
                                 f"expected ({n_mu}, {n_t}, N)")
            if not np.all(np.isfinite(reference)):
                raise InputError(f"{loc}: /reference/states contains NaN or Inf values")
        grid = {k: np.asarray(f["grid"][k][()]) for k in f["grid"]} if "grid" in f else {}
        if "runs" not in f:
            raise InputError(f"{loc}: missing group /runs")
        runs: dict[str, RunRecord] = {}
        for name, g in f["runs"].items():
            if not isinstance(g, h5py.Group):
                raise InputError(f"{loc}: /runs/{name} is not a group")
            floats = {k: _read(g, k, loc) for k in ("latent", "residuals", "relative_error",
                                                     "projection_error")}
            # a deterministic file has no wall times: NaN, "not recorded"
            floats["wall_s"] = (_read(g, "wall_s", loc) if "wall_s" in g
                                else np.full(n_mu, np.nan))
            ints = {k: _read(g, k, loc, "i") for k in ("iterations", "backtracks", "steps")}
            states = _read(g, "states", loc) if "states" in g else None
            per_field = {k: _read(g, k, loc) for k in FIELD_KEYS if k in g}
            fields = _field_names(g, per_field, loc)
            rec = RunRecord(
                method=str(_attr(g, "method", loc)), p=int(_attr(g, "p", loc)), states=states,
                scheme=str(_attr(g, "scheme", loc)), dt=float(_attr(g, "dt", loc)),
                options=_attr(g, "options", loc, True), info=_attr(g, "info", loc, True),
                failures=list(_attr(g, "failures", loc, True)), **floats, **ints,
                **per_field, fields=fields)
            if rec.name != name:
                raise InputError(f"{loc}: /runs/{name} holds method {rec.method} with p = "
                                 f"{rec.p}; expected the group to be named {rec.name}")
            _check_record(rec, name, n_mu, n_t, loc, reference is not None)
            if reference is not None and states is not None \
                    and states.shape[2] != reference.shape[2]:
                raise InputError(f"{loc}: /runs/{name}/states has N = {states.shape[2]} but "
                                 f"/reference/states has N = {reference.shape[2]}")
            runs[name] = rec
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return ResultSet(mu, t, runs, names, reference, grid, attrs, path)
