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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.linalg as sla

from fom.atomic import atomic_path, check_writable_dir
from fom.errors import InputError
from fom.hdf5 import open_for_reading
from fom.problem import Problem
from fom.snapshots import SnapshotSet

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
        """What a ROM result records about its hyper-reduction."""
        return {"hyperreduction": self.method, "n_samples": int(self.rows.size),
                "n_stencil": int(self.stencil.size), "n_basis": int(self.basis_rows.shape[1])}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the sample-mesh file atomically."""
        path = check_writable_dir(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("rows", data=self.rows)
            f.create_dataset("stencil", data=self.stencil)
            f.create_dataset("basis_rows", data=self.basis_rows)
            f.create_dataset("singular_values", data=self.singular_values)
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
                       max_snapshots: int | None = None) -> np.ndarray:
    """Residual snapshots ``(n_snap, N)`` of a training snapshot file (module docstring, 1).

    ``max_snapshots`` keeps that many, evenly spaced over the available ones.
    """
    if source == "velocity":
        problem = snap.problem()
        idx = [(i, k) for i in range(snap.n_mu) for k in range(snap.t.size - 1)]
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
                      method: str = "collocation", max_snapshots: int | None = 20000
                      ) -> SampleMesh:
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
    """
    if method not in METHODS:
        raise InputError(f"hyper-reduction method must be one of {', '.join(METHODS)}, "
                         f"got {method!r}")
    problem = snap.problem()
    res = residual_snapshots(snap, source, max_snapshots)
    if not np.all(np.isfinite(res)):
        raise InputError(f"{snap.path}: residual snapshots contain NaN or Inf values")
    basis, s = pod(res)
    if not 1 <= n_basis <= basis.shape[1]:
        raise InputError(f"n_basis = {n_basis} must lie in [1, {basis.shape[1]}] (the rank "
                         f"of the residual snapshots)")
    basis = basis[:, :n_basis]
    rows = select_rows(problem, basis, n_samples, by)
    if method == "gnat" and rows.size < n_basis:
        raise InputError(f"GNAT needs at least n_basis = {n_basis} sampled rows, got "
                         f"{rows.size}")
    op = problem.sample(rows)
    settings = {"n_samples": n_samples, "n_basis": n_basis, "source": source, "by": by,
                "method": method, "max_snapshots": max_snapshots}
    return SampleMesh(op.rows, op.stencil, np.ascontiguousarray(basis[op.rows]), method,
                      problem.n_dofs, problem.name, settings, s,
                      {"path": str(snap.path), "sha256": snap.checksum()},
                      json.dumps(problem.config(), sort_keys=True))


def interpolation_constant(mesh: SampleMesh) -> float:
    """``1 / sigma_min(Phi_r[S])``: how much gappy reconstruction from the rows can amplify
    the part of a residual outside the basis (the smaller, the better conditioned)."""
    s = np.linalg.svd(mesh.basis_rows, compute_uv=False)
    return math.inf if s[-1] == 0 else float(1.0 / s[-1])
