"""Sample meshes for hyper-reduced LSPG: residual snapshots, a residual basis, greedy row
selection, the stencil closure, and the sample-mesh file.

Hyper-reduction evaluates the time-discrete residual ``r^n`` (equation (1) of
:mod:`rom.projection`) only on a set of sampled rows ``S``. The rows are chosen so that a
residual is well determined by its values on them:

1. **Residual snapshots** of the training trajectories: the Newton iterates' residuals stored
   by the FOM (``source = "newton"``, snapshot files written with ``store_residuals``), or the
   velocities ``f(x^n, t^n)`` at the training states (``source = "velocity"``): the residual
   ``r^{n+1}(x^n) = -beta dt f(x^n)`` of the first Newton iterate of every step (the
   initial guess ``x^n``), available for any snapshot file.
2. **A residual basis** ``Phi_r`` (``N x m``): their leading left singular vectors (POD).
3. **Greedy selection**: QDEIM (Drmač & Gugercin 2016), the first ``m`` pivots of a
   column-pivoted QR of ``Phi_r^T``; then oversampling to ``n_samples`` rows by the greedy
   rule of Peherstorfer, Drmač & Gugercin (2020) that maximizes a lower bound of the smallest
   singular value of ``Phi_r[S]`` (the stability constant of gappy POD). For problems with
   several fields the selection can count grid nodes instead of rows (``by = "node"``):
   a selected row brings every field's row at its node, as in NM-ROM's sample nodes.
4. **The stencil closure**: the state entries the sampled rows read
   (:meth:`fom.Problem.sample`); boundary rows read boundary values, not state entries.

The result is saved as a small HDF5 file (atomic) with its settings and the checksum of the
snapshot file it was built from::

    /rows        int64 (n_rows,)        sampled residual rows (sorted)
    /stencil     int64 (n_stencil,)     the state entries they read (sorted)
    /basis_rows  float64 (n_rows, m)    the residual basis on the rows (GNAT's weights)
    /singular_values float64 (k,)       of the residual snapshots
    attrs: format, format_version, problem, problem_config (JSON), n_dofs, settings (JSON),
           snapshots (path), snapshots_sha256

With ``method = "gnat"`` the LSPG residual is measured in the residual basis,
``||(P Phi_r)^+ P r||`` (Carlberg et al. 2013, GNAT); with ``"collocation"`` (the default)
it is ``||P r||``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.linalg as sla

from fom.atomic import atomic_path, check_writable_dir
from fom.config import Field, RunConfig, at_least, load_config, one_of
from fom.errors import InputError
from fom.hdf5 import open_for_reading
from fom.problem import Problem
from fom.snapshots import (
    SnapshotSet,
    problem_from_config,
    read_snapshots,
    snapshot_paths,
    snapshots_from_config,
)

from .manifolds import pod

FORMAT = "manifold-rom sample mesh"
FORMAT_VERSION = 1
SOURCES = ("velocity", "newton")
METHODS = ("collocation", "gnat")


@dataclass
class SampleMesh:
    """The sampled rows of a hyper-reduced ROM (see the module docstring).

    Attributes
    ----------
    rows, stencil : ndarray of int64
    basis_rows : ndarray, shape (n_rows, m)
        The residual basis restricted to the rows.
    method : {"collocation", "gnat"}
    n_dofs : int
    problem : str
    settings : dict
    singular_values : ndarray
    source : dict
        The snapshot file it was built from (``path``, ``sha256``).
    """

    rows: np.ndarray
    stencil: np.ndarray
    basis_rows: np.ndarray
    method: str
    n_dofs: int
    problem: str
    settings: dict[str, Any] = field(default_factory=dict)
    singular_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    source: dict[str, Any] = field(default_factory=dict)
    problem_config: str = ""

    @property
    def weights(self) -> np.ndarray | None:
        """GNAT's ``(P Phi_r)^+`` (m x n_rows); None for collocation."""
        if self.method != "gnat":
            return None
        return np.linalg.pinv(self.basis_rows)

    def describe(self) -> dict[str, Any]:
        """What a ROM result records about its hyper-reduction: the method, the sampled rows
        (``n_samples``), the state entries they read (``n_stencil``), the residual basis size
        and how the samples were counted (``sample_by``)."""
        return {"hyperreduction": self.method, "n_samples": int(self.rows.size),
                "n_stencil": int(self.stencil.size), "n_basis": int(self.basis_rows.shape[1]),
                "sample_by": str(self.settings.get("by", "row"))}

    def summary(self) -> str:
        """One line: rows, stencil, residual basis, interpolation constant, source."""
        by = self.settings.get("by", "row")
        nodes = self.settings.get("n_samples") if by == "node" else None
        what = f"{self.rows.size} rows" + (f" ({nodes} grid nodes)" if nodes else "")
        traj = self.settings.get("trajectories")
        src = str(self.source.get("path", "?")) + (
            f", {len(traj)} trajectories" if traj is not None else "")
        return (f"{what} of N = {self.n_dofs}, stencil {self.stencil.size}, residual basis "
                f"{self.basis_rows.shape[1]} ({self.method}), interpolation constant "
                f"{interpolation_constant(self):.3g}, from {src}")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the sample-mesh file atomically."""
        path = check_writable_dir(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            # no object timestamps: the same mesh always gives the same bytes (its checksum
            # is part of the fingerprints of ROM results and sweeps)
            for name in ("rows", "stencil", "basis_rows", "singular_values"):
                f.create_dataset(name, data=getattr(self, name), track_times=False)
            f.attrs.update({
                "format": FORMAT, "format_version": FORMAT_VERSION, "problem": self.problem,
                "problem_config": self.problem_config, "n_dofs": self.n_dofs,
                "method": self.method, "settings": json.dumps(self.settings, sort_keys=True),
                "snapshots": str(self.source.get("path", "")),
                "snapshots_sha256": str(self.source.get("sha256", ""))})
        return path


def read_sample_mesh(path: str | os.PathLike) -> SampleMesh:
    """Read and validate a sample-mesh file.

    Raises
    ------
    InputError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    with open_for_reading(path, "sample-mesh file") as f:
        if f.attrs.get("format") != FORMAT:
            raise InputError(f"{path} is not a sample-mesh file (format attribute "
                             f"{f.attrs.get('format')!r})")
        if f.attrs.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path}: format version {f.attrs.get('format_version')!r}, "
                             f"expected {FORMAT_VERSION}")
        try:
            rows = np.asarray(f["rows"][()], dtype=np.int64)
            stencil = np.asarray(f["stencil"][()], dtype=np.int64)
            basis = np.asarray(f["basis_rows"][()], dtype=np.float64)
            sv = np.asarray(f["singular_values"][()], dtype=np.float64)
            n_dofs = int(f.attrs["n_dofs"])
            method = str(f.attrs["method"])
            settings = json.loads(f.attrs["settings"])
            mesh = SampleMesh(rows, stencil, basis, method, n_dofs, str(f.attrs["problem"]),
                              settings, sv, {"path": str(f.attrs["snapshots"]),
                                             "sha256": str(f.attrs["snapshots_sha256"])},
                              str(f.attrs.get("problem_config", "")))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: incomplete or malformed sample-mesh file ({exc})") from None
    if rows.ndim != 1 or rows.size == 0 or np.any(np.diff(rows) <= 0) or rows[0] < 0 \
            or rows[-1] >= n_dofs:
        raise InputError(f"{path}: /rows must be sorted distinct indices in [0, {n_dofs})")
    if basis.ndim != 2 or basis.shape[0] != rows.size or not np.all(np.isfinite(basis)):
        raise InputError(f"{path}: /basis_rows must be a finite ({rows.size}, m) array")
    if method not in METHODS:
        raise InputError(f"{path}: unknown method {method!r} (known: {', '.join(METHODS)})")
    return mesh


def check_fits(mesh: SampleMesh, problem: Problem, where: str = "sample mesh") -> None:
    """Refuse a sample mesh made for another problem or state size."""
    if mesh.problem != problem.name or mesh.n_dofs != problem.n_dofs:
        raise InputError(f"{where} was built for problem {mesh.problem} with N = "
                         f"{mesh.n_dofs}, not {problem.name} with N = {problem.n_dofs}")


# ----------------------------------------------------------------------------- building


def residual_snapshots(snap: SnapshotSet, source: str = "velocity",
                       max_snapshots: int | None = None,
                       trajectories: list[int] | None = None) -> np.ndarray:
    """Residual snapshots ``(n_snap, N)`` of a training snapshot file (module docstring, 1).

    ``max_snapshots`` keeps that many, evenly spaced over the available ones;
    ``trajectories`` (indices into the file; default all) those of some trajectories only.
    """
    which = range(snap.n_mu) if trajectories is None else trajectories
    if source == "velocity":
        problem = snap.problem()
        idx = [(i, k) for i in which for k in range(snap.t.size - 1)]
        if max_snapshots is not None and len(idx) > max_snapshots:
            keep = np.unique(np.linspace(0, len(idx) - 1, max_snapshots).round().astype(int))
            idx = [idx[j] for j in keep]
        out = np.empty((len(idx), snap.n_dofs))
        for j, (i, k) in enumerate(idx):
            out[j] = problem.velocity(snap.states[i, k], float(snap.t[k]), snap.mu[i])
        return out
    if source == "newton":
        res = getattr(snap, "newton_residuals", None)
        if res is None:
            raise InputError(f"{snap.path} holds no Newton residuals (write it with "
                             f"store_residuals = true, or use source = \"velocity\")")
        res = np.asarray(res, dtype=np.float64)
        if trajectories is not None and len(trajectories) < snap.n_mu:
            from fom.snapshots import read_residuals  # (mu_index, step, iteration) per row

            res = res[np.isin(read_residuals(snap.path)[1][:, 0], trajectories)]
        if max_snapshots is not None and res.shape[0] > max_snapshots:
            keep = np.unique(np.linspace(0, res.shape[0] - 1, max_snapshots).round()
                             .astype(int))
            res = res[keep]
        return res
    raise InputError(f"unknown residual source {source!r}; choose {' or '.join(SOURCES)}")


def qdeim(basis: np.ndarray) -> np.ndarray:
    """QDEIM rows of a basis ``(N, m)``: the first ``m`` column pivots of the QR factorization
    of ``basis^T`` with column pivoting (Drmač & Gugercin 2016)."""
    m = basis.shape[1]
    _, _, piv = sla.qr(basis.T, mode="economic", pivoting=True)
    return np.asarray(piv[:m], dtype=np.int64)


def oversample(basis: np.ndarray, rows: np.ndarray, n_more: int,
               allowed: np.ndarray | None = None) -> np.ndarray:
    """Add ``n_more`` rows to ``rows`` greedily (Peherstorfer, Drmač & Gugercin 2020).

    Each new row ``i`` maximizes the lower bound ``(g + |u_i|^2 - sqrt((g + |u_i|^2)^2 -
    4 g (v_m . u_i)^2)) / 2`` of the increase of ``sigma_min(basis[rows])^2``, with ``u_i``
    the row of the basis, ``v_m`` the right singular vector of the smallest singular value
    ``sigma_m`` of ``basis[rows]`` and ``g = sigma_{m-1}^2 - sigma_m^2``. ``allowed`` masks
    the candidate rows.
    """
    rows = list(np.asarray(rows, dtype=np.int64))
    norms2 = np.einsum("ij,ij->i", basis, basis)
    ok = np.ones(basis.shape[0], dtype=bool) if allowed is None else allowed.copy()
    ok[rows] = False
    for _ in range(n_more):
        if not ok.any():
            break
        _, s, vt = np.linalg.svd(basis[rows], full_matrices=False)
        gap = s[-2] ** 2 - s[-1] ** 2 if s.size > 1 else max(float(s[-1]) ** 2, 1.0)
        proj = basis @ vt[-1]
        a = gap + norms2
        score = a - np.sqrt(np.maximum(a * a - 4.0 * gap * proj * proj, 0.0))
        score[~ok] = -np.inf
        best = int(np.argmax(score))
        rows.append(best)
        ok[best] = False
    return np.asarray(rows, dtype=np.int64)


def node_rows(problem: Problem, rows: np.ndarray) -> np.ndarray:
    """Every field's row at the grid nodes of ``rows`` (sorted)."""
    cells = problem.n_dofs // problem.n_fields
    nodes = np.unique(np.asarray(rows, dtype=np.int64) % cells)
    return np.sort((np.arange(problem.n_fields)[:, None] * cells + nodes[None, :]).ravel())


def select_rows(problem: Problem, basis: np.ndarray, n_samples: int, by: str = "row"
                ) -> np.ndarray:
    """Sampled rows: QDEIM, then oversampling until ``n_samples`` rows (``by = "row"``) or
    grid nodes (``by = "node"``; every field's row at each node) are chosen."""
    n, m = basis.shape
    if by not in ("row", "node"):
        raise InputError(f"sample_by must be 'row' or 'node', got {by!r}")
    cells = n // problem.n_fields
    target = n if by == "row" else cells
    if not 1 <= n_samples <= target:
        raise InputError(f"n_samples = {n_samples} must lie in [1, {target}] "
                         f"({'rows' if by == 'row' else 'grid nodes'} of {problem.name})")
    rows = qdeim(basis)
    if by == "row":
        if rows.size >= n_samples:
            return np.sort(rows[:n_samples])
        return np.sort(oversample(basis, rows, n_samples - rows.size))
    # by node: one row per new node at a time, until n_samples nodes
    chosen = list(dict.fromkeys(int(r) % cells for r in rows))[:n_samples]
    picked = [int(r) for r in rows if int(r) % cells in set(chosen)]
    while len(chosen) < n_samples:
        allowed = np.ones(n, dtype=bool)
        allowed[node_rows(problem, np.asarray(chosen))] = False
        new = oversample(basis, np.asarray(picked), 1, allowed)[-1]
        picked.append(int(new))
        chosen.append(int(new) % cells)
    return node_rows(problem, np.asarray(chosen))


def build_sample_mesh(snap: SnapshotSet, *, n_samples: int, n_basis: int,
                      source: str = "velocity", by: str = "row",
                      method: str = "collocation", max_snapshots: int | None = 20000,
                      trajectories: list[int] | None = None) -> SampleMesh:
    """A sample mesh from a training snapshot file (module docstring, steps 1-4).

    Parameters
    ----------
    snap : SnapshotSet
        The training trajectories (never test data).
    n_samples : int
        Sampled rows (``by = "row"``) or grid nodes (``by = "node"``).
    n_basis : int
        Residual basis size ``m`` (QDEIM gives ``m`` rows; more are added by oversampling).
    source, by, method : str
        See :func:`residual_snapshots`, :func:`select_rows` and :class:`SampleMesh`.
    max_snapshots : int, optional
        Cap on the residual snapshots used for the POD (evenly spaced).
    trajectories : list of int, optional
        The trajectories of ``snap`` to use (default all): those the trial manifolds were
        trained on (:func:`training_trajectories`).
    """
    if method not in METHODS:
        raise InputError(f"hyper-reduction method must be one of {', '.join(METHODS)}, "
                         f"got {method!r}")
    problem = snap.problem()
    if trajectories is not None:
        trajectories = sorted({int(i) for i in trajectories})
        if not trajectories or trajectories[0] < 0 or trajectories[-1] >= snap.n_mu:
            raise InputError(f"{snap.path}: trajectories must be indices in [0, {snap.n_mu})")
    res = residual_snapshots(snap, source, max_snapshots, trajectories)
    if not np.all(np.isfinite(res)):
        raise InputError(f"{snap.path}: residual snapshots contain NaN or Inf values")
    rank = min(res.shape)
    if not 1 <= n_basis <= rank:
        raise InputError(f"n_basis = {n_basis} must lie in [1, {rank}] (the rank of the "
                         f"residual snapshots)")
    basis, s = pod(res, n_basis)
    rows = select_rows(problem, basis, n_samples, by)
    if method == "gnat" and rows.size < n_basis:
        raise InputError(f"GNAT needs at least n_basis = {n_basis} sampled rows, got "
                         f"{rows.size}")
    op = problem.sample(rows)
    settings = {"n_samples": n_samples, "n_basis": n_basis, "source": source, "by": by,
                "method": method, "max_snapshots": max_snapshots, "trajectories": trajectories}
    return SampleMesh(op.rows, op.stencil, np.ascontiguousarray(basis[op.rows]), method,
                      problem.n_dofs, problem.name, settings, s,
                      {"path": str(snap.path), "sha256": snap.checksum()},
                      json.dumps(problem.config(), sort_keys=True))


def interpolation_constant(mesh: SampleMesh) -> float:
    """``1 / sigma_min(Phi_r[S])``: how much gappy reconstruction from the rows can amplify
    the part of a residual outside the basis (the smaller, the better conditioned)."""
    s = np.linalg.svd(mesh.basis_rows, compute_uv=False)
    return math.inf if s[-1] == 0 else float(1.0 / s[-1])


# ----------------------------------------------------------------------------- the config

HYPERREDUCTION_SCHEMA: dict[str, Field] = {
    "n_samples": Field(int, 40, at_least(1),
                       doc="sampled residual rows (sample_by = 'row') or grid nodes ('node'): "
                           "QDEIM gives n_basis of them, greedy oversampling the rest"),
    "n_basis": Field(int, 20, at_least(1),
                     doc="size of the residual POD basis (QDEIM's pivots; GNAT's basis)"),
    "sample_by": Field(str, None, one_of("row", "node"),
                       doc="count rows, or grid nodes with every field's row at each; "
                           "default: 'node' for problems with several fields, else 'row'"),
    "source": Field(str, "velocity", one_of(*SOURCES),
                    doc="residual snapshots: the velocity f(x^n, t^n) at every training state "
                        "('velocity'), or the FOM's Newton residuals ('newton'; snapshot "
                        "files written with store_residuals)"),
    "method": Field(str, "collocation", one_of(*METHODS),
                    doc="LSPG on the sampled rows ('collocation'), or on the coordinates of "
                        "the sampled residual in the residual basis ('gnat')"),
    "max_snapshots": Field(int, 20000, at_least(1),
                           doc="at most this many residual snapshots (evenly spaced) in the POD"),
    "file": Field(str, "sample_mesh.h5", doc="the sample-mesh file (HDF5); a relative path "
                                             "is taken inside output_dir"),
}


def hyperreduction_settings(cfg: RunConfig, problem: Problem | None = None) -> dict[str, Any]:
    """The validated ``[hyperreduction]`` section with ``sample_by`` resolved.

    Checks what the problem (default: the config's ``[problem]``) allows: ``n_samples`` at
    most its rows or grid nodes, ``n_basis`` at most ``N``, and for GNAT at least
    ``n_basis`` sampled rows. The rank of the residual snapshots is checked when the mesh is
    built.

    Raises
    ------
    InputError
        One line naming the file, ``[hyperreduction]`` and the key.
    """
    sec = cfg.section("hyperreduction", HYPERREDUCTION_SCHEMA)
    where = cfg.where("hyperreduction")
    if not sec["file"].strip():
        raise InputError(f"{where} file: must not be empty")
    problem = problem if problem is not None else problem_from_config(cfg)
    n_fields = int(problem.n_fields)
    if sec["sample_by"] is None:
        sec["sample_by"] = "node" if n_fields > 1 else "row"
    by_row = sec["sample_by"] == "row"
    limit = problem.n_dofs if by_row else problem.n_dofs // n_fields
    what = "rows" if by_row else "grid nodes"
    if sec["n_samples"] > limit:
        raise InputError(f"{where} n_samples: must be at most {limit}, the {what} of "
                         f"{problem.name} (N = {problem.n_dofs}), got {sec['n_samples']}")
    if sec["n_basis"] > problem.n_dofs:
        raise InputError(f"{where} n_basis: must be at most N = {problem.n_dofs}, got "
                         f"{sec['n_basis']}")
    rows = sec["n_samples"] * (1 if by_row else n_fields)
    if sec["method"] == "gnat" and rows < sec["n_basis"]:
        raise InputError(f"{where} n_basis: GNAT needs at least n_basis sampled rows; "
                         f"n_samples = {sec['n_samples']} gives {rows} rows, got n_basis = "
                         f"{sec['n_basis']}")
    return sec


def sample_mesh_path(cfg: RunConfig, sec: dict[str, Any] | None = None) -> Path:
    """Where the config's sample-mesh file goes (``[hyperreduction] file``)."""
    sec = sec if sec is not None else cfg.section("hyperreduction", HYPERREDUCTION_SCHEMA)
    path = Path(sec["file"])
    return path if path.is_absolute() else cfg.output_dir / path


def check_mesh_output(cfg: RunConfig, sec: dict[str, Any]) -> Path:
    """Check, creating nothing, that the sample-mesh file can be written (in ``output_dir``,
    which may not exist yet, or in an existing folder)."""
    path = sample_mesh_path(cfg, sec)
    if path.parent == cfg.output_dir:
        cfg.check_output_dir()
        return path
    try:
        return check_writable_dir(path)
    except InputError as exc:
        raise InputError(f"{cfg.where('hyperreduction')} file: {exc}") from None


def training_trajectories(cfg: RunConfig, train: SnapshotSet) -> list[int]:
    """The trajectories of the training file the sample mesh is built from: exactly those
    the autoencoders and the POD basis train on (:func:`rom.online.pod_trajectories`: all but
    the validation trajectories of ``[training]``)."""
    from .online import pod_trajectories

    return pod_trajectories(cfg, train)


def _wanted(sec: dict[str, Any], trajectories: list[int] | None) -> dict[str, Any]:
    """The ``settings`` a sample-mesh file made from ``sec`` records (JSON-normalized)."""
    return json.loads(json.dumps({
        "n_samples": sec["n_samples"], "n_basis": sec["n_basis"], "source": sec["source"],
        "by": sec["sample_by"], "method": sec["method"], "max_snapshots": sec["max_snapshots"],
        "trajectories": trajectories}, sort_keys=True))


def stale_reason(mesh: SampleMesh, problem: Problem, settings: dict[str, Any],
                 snap_sha256: str) -> str:
    """Why an existing sample mesh does not fit (empty if it is up to date)."""
    if mesh.problem != problem.name or mesh.problem_config != json.dumps(problem.config(),
                                                                         sort_keys=True):
        return "made for another problem"
    if mesh.settings != settings:
        return "made with other [hyperreduction] settings"
    if mesh.source.get("sha256") != snap_sha256:
        return "made from another training snapshot file"
    return ""


def ensure_sample_mesh(cfg: RunConfig, *, problem: Problem | None = None,
                       sec: dict[str, Any] | None = None,
                       log: Callable[[str], None] | None = None
                       ) -> tuple[Path, SampleMesh, bool]:
    """The config's sample mesh, built (and written atomically) unless an up-to-date file
    exists: same problem, ``[hyperreduction]`` settings, training trajectories and training
    snapshot file (by checksum).

    Call it after every other input has been checked: it may write the file. The training
    snapshot file must exist. A file at the mesh's path that is not a sample-mesh file is
    refused, not overwritten.

    Parameters
    ----------
    cfg : RunConfig
    problem : Problem, optional
        Default: the config's.
    sec : dict, optional
        The validated section (:func:`hyperreduction_settings`).
    log : callable, optional
        Receives one line saying what was built and where (nothing if the file was up to
        date).

    Returns
    -------
    path, mesh, built
        ``built`` is False if the existing file was up to date.
    """
    problem = problem if problem is not None else problem_from_config(cfg)
    sec = sec if sec is not None else hyperreduction_settings(cfg, problem)
    where = cfg.where("hyperreduction")
    path = sample_mesh_path(cfg, sec)
    train_path = snapshot_paths(cfg)["train"]
    if not train_path.exists():
        raise InputError(f"training snapshot file {train_path} does not exist (run 'mrom "
                         f"snapshots {cfg.path}' first)")
    train = read_snapshots(train_path)
    if train.n_dofs != problem.n_dofs:
        raise InputError(f"{train_path}: states have N = {train.n_dofs} entries but the "
                         f"{cfg.where('problem')} has N = {problem.n_dofs}")
    trajectories = training_trajectories(cfg, train)
    wanted = _wanted(sec, trajectories)
    sha = train.checksum()
    why = "missing"
    if path.exists():
        try:
            old = read_sample_mesh(path)
        except InputError as exc:
            raise InputError(f"{where} file: {exc}; remove it or choose another file") \
                from None
        why = stale_reason(old, problem, wanted, sha)
        if not why:
            return path, old, False
    try:
        check_writable_dir(path)
    except InputError as exc:
        raise InputError(f"{where} file: {exc}") from None
    try:
        mesh = build_sample_mesh(train, n_samples=sec["n_samples"], n_basis=sec["n_basis"],
                                 source=sec["source"], by=sec["sample_by"],
                                 method=sec["method"], max_snapshots=sec["max_snapshots"],
                                 trajectories=trajectories)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    mesh.save(path)
    if log is not None:
        again = "" if why == "missing" else f" (the old one was {why})"
        log(f"wrote {path}{again}: {mesh.summary()}")
    return path, mesh, True


def sample_mesh_from_config(config: str | os.PathLike | RunConfig, progress: bool = True, *,
                            log: Callable[[str], None] | None = print) -> Path:
    """Build the sample mesh of a run config (``mrom sample-mesh CONFIG``).

    Checks ``[problem]``, ``[snapshots]`` and ``[hyperreduction]`` first, generates the
    training snapshots if they are missing, then builds the mesh from the training snapshot
    file only (never the test file) unless an up-to-date file exists
    (:func:`ensure_sample_mesh`).

    Parameters
    ----------
    config : path or RunConfig
    progress : bool
        Progress bars while snapshots are generated.
    log : callable, optional
        Receives the line saying what was built and where, or that the file was up to
        date (default: print it).

    Returns
    -------
    Path
        The sample-mesh file.
    """
    from fom.snapshots import snapshot_sets

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    problem, _ = snapshot_sets(cfg)
    sec = hyperreduction_settings(cfg, problem)
    check_mesh_output(cfg, sec)
    if not snapshot_paths(cfg)["train"].exists():
        snapshots_from_config(cfg, progress=progress)
    path, mesh, built = ensure_sample_mesh(cfg, problem=problem, sec=sec, log=log)
    if not built and log is not None:
        log(f"{path} is up to date: {mesh.summary()}")
    return path
