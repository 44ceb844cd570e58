"""Parameterized 2D viscous Burgers equation (the setting of the NM-ROM study of Kim, Choi,
Widemann & Zohdi 2022; the package's second test problem).

    u_t + u u_x + v u_y = (u_xx + u_yy) / Re
    v_t + u v_x + v v_y = (v_xx + v_yy) / Re          on [0, 1]^2,  t in [0, T]

with homogeneous Dirichlet boundaries (``u = v = 0`` on the boundary nodes) and the initial
state ``u = v = mu sin(2 pi x) sin(2 pi y)`` at the nodes with ``x <= 0.5`` and ``y <= 0.5``,
0 elsewhere. Defaults: ``Re = 1e4``, ``T = 2``, 1500 backward-Euler steps, ``n = 60``.

Finite differences on ``n x n`` nodes ``x_i = i / (n - 1)``, ``y_j = j / (n - 1)`` (boundary
included); the unknowns are the ``(n - 2)^2`` interior nodes of each component. At an interior
node, for ``s`` either component,

    ds_ij/dt = - u_ij (s_ij - s_{i-1,j}) / dx - v_ij (s_ij - s_{i,j-1}) / dy
               + (s_{i+1,j} - 2 s_ij + s_{i-1,j}) / (Re dx^2)
               + (s_{i,j+1} - 2 s_ij + s_{i,j-1}) / (Re dy^2)                          (1)

(first-order backward differences for the convection whatever the sign of ``u, v``, the
central 5-point Laplacian for the diffusion). State layout: ``x = [u, v]``, each component the
interior in row-major order with ``x`` varying fastest: the unknown of component ``c`` at
interior column ``i`` and row ``j`` (0-based, node ``(i + 1, j + 1)``) is
``x[c m^2 + j m + i]`` with ``m = n - 2``.

The Jacobian of (1) has six entries per row: the row's own component at the node and its
four neighbours, and the other component at the node. Differentiating (1) (``a = u_ij``,
``b = v_ij``, ``c_x = 1/(Re dx^2)``, ``c_y = 1/(Re dy^2)``):

    ds/ds_{i-1,j} = a/dx + c_x,    ds/ds_{i+1,j} = c_x,
    ds/ds_{i,j-1} = b/dy + c_y,    ds/ds_{i,j+1} = c_y,
    du/du_ij = -(u_ij - u_{i-1,j})/dx - a/dx - b/dy - 2 c_x - 2 c_y,
    du/dv_ij = -(u_ij - u_{i,j-1})/dy,
    dv/dv_ij = -a/dx - (v_ij - v_{i,j-1})/dy - b/dy - 2 c_x - 2 c_y,
    dv/du_ij = -(v_ij - v_{i-1,j})/dx.                                                  (2)

One numba kernel evaluates (1)-(2) row by row through a *neighbour table*: for each row the
positions, in the vector it reads, of the six values it needs (-1 for a boundary value, which is
0). The full problem's tables index the full state; a sample mesh's tables index the state on
its stencil. Both run the same arithmetic on the same numbers, so the sampled rows equal the
full rows bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit

from .errors import InputError
from .newton import NewtonOptions
from .problem import Problem
from .sampled import SampledOperator, check_sample_rows, local_positions

# neighbour-table slots: the row's node (u, v), then the row's own component at the four
# neighbours (west i-1, east i+1, south j-1, north j+1)
SLOT_U, SLOT_V, SLOT_W, SLOT_E, SLOT_S, SLOT_N = range(6)
N_SLOTS = 6

# ------------------------------------------------------------------ numba kernel


@njit(cache=True)
def burgers2d_rows(x, field, cols, dpos, inv_dx, inv_dy, cx, cy, f, data, with_jacobian):
    """Velocity (1) and, if ``with_jacobian``, the Jacobian entries (2) of a set of rows.

    Parameters
    ----------
    x : ndarray (float64)
        The vector the tables index: the full state or the state on a stencil.
    field : ndarray (int8), shape (R,)
        Component of each row (0 = u, 1 = v).
    cols : ndarray (int64), shape (R, 6)
        Positions in ``x`` of the row's inputs in the slot order ``(u, v)`` at the node, then
        the row's own component at the west, east, south and north neighbours; -1 for a
        boundary node (value 0, no Jacobian entry).
    dpos : ndarray (int64), shape (R, 6)
        Position in ``data`` of the Jacobian entry of each slot (-1 where ``cols`` is -1).
    inv_dx, inv_dy, cx, cy : float
        ``1/dx``, ``1/dy``, ``1/(Re dx^2)``, ``1/(Re dy^2)``.
    f : ndarray, shape (R,)
        Output velocity of each row.
    data : ndarray
        Output Jacobian values (written at ``dpos``; untouched without ``with_jacobian``).
    """
    for r in range(field.shape[0]):
        a = x[cols[r, 0]]
        b = x[cols[r, 1]]
        own = field[r]
        s = a if own == 0 else b
        kw, ke, ks, kn = cols[r, 2], cols[r, 3], cols[r, 4], cols[r, 5]
        sw = x[kw] if kw >= 0 else 0.0
        se = x[ke] if ke >= 0 else 0.0
        ss = x[ks] if ks >= 0 else 0.0
        sn = x[kn] if kn >= 0 else 0.0
        gx = (s - sw) * inv_dx
        gy = (s - ss) * inv_dy
        f[r] = -a * gx - b * gy + (se - 2.0 * s + sw) * cx + (sn - 2.0 * s + ss) * cy
        if with_jacobian:
            diag = -a * inv_dx - b * inv_dy - 2.0 * cx - 2.0 * cy
            if own == 0:
                data[dpos[r, 0]] = diag - gx
                data[dpos[r, 1]] = -gy
            else:
                data[dpos[r, 0]] = -gx
                data[dpos[r, 1]] = diag - gy
            if kw >= 0:
                data[dpos[r, 2]] = a * inv_dx + cx
            if ke >= 0:
                data[dpos[r, 3]] = cx
            if ks >= 0:
                data[dpos[r, 4]] = b * inv_dy + cy
            if kn >= 0:
                data[dpos[r, 5]] = cy


# ------------------------------------------------------------------ tables


def neighbour_table(rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Field and global neighbour table of state ``rows`` on an ``m x m`` interior.

    Returns ``(field (R,) int8, cols (R, 6) int64)`` in the slot order of
    :func:`burgers2d_rows`; ``cols`` holds global state indices, -1 for boundary nodes.
    """
    rows = np.asarray(rows, dtype=np.int64)
    size = m * m
    comp, k = np.divmod(rows, size)
    j, i = np.divmod(k, m)
    base = comp * size
    cols = np.empty((rows.size, N_SLOTS), dtype=np.int64)
    cols[:, SLOT_U] = k
    cols[:, SLOT_V] = size + k
    cols[:, SLOT_W] = np.where(i > 0, base + k - 1, -1)
    cols[:, SLOT_E] = np.where(i < m - 1, base + k + 1, -1)
    cols[:, SLOT_S] = np.where(j > 0, base + k - m, -1)
    cols[:, SLOT_N] = np.where(j < m - 1, base + k + m, -1)
    return comp.astype(np.int8), cols


def csr_from_table(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR structure of a matrix whose row ``r`` has entries in the columns ``cols[r]``.

    Entries with ``cols < 0`` are absent; the columns of a row must be distinct. Returns
    ``(indptr, indices, dpos)`` with sorted column indices per row and ``dpos[r, k]`` the
    position in the CSR ``data`` of the entry of ``cols[r, k]`` (-1 where absent).
    """
    present = cols >= 0
    key = np.where(present, cols, np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")
    rank = np.argsort(order, axis=1, kind="stable")
    counts = present.sum(axis=1)
    indptr = np.zeros(cols.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    sorted_key = np.take_along_axis(key, order, axis=1)
    indices = sorted_key[np.arange(cols.shape[1])[None, :] < counts[:, None]]
    dpos = np.where(present, indptr[:-1, None] + rank, -1)
    return indptr, indices.astype(np.int64), dpos.astype(np.int64)


# ------------------------------------------------------------------ problem class


class Burgers2D(Problem):
    """Parameterized 2D viscous Burgers problem, equations (1)-(2) of :mod:`fom.burgers2d`.

    Parameters
    ----------
    n : int
        Nodes per direction including the boundary (default 60: ``N = 2 * 58^2 = 6728``).
    reynolds : float
        Reynolds number ``Re`` (default 1e4).
    dt, t_final : float
        Default time step and final time (``2/1500`` and 2).
    """

    name = "burgers2d"
    param_names = ("mu",)
    param_bounds = np.array([[0.85, 1.15]])
    fields = ("u", "v")
    boundary_values = (0.0, 0.0)  # homogeneous Dirichlet

    def __init__(self, n: int = 60, reynolds: float = 1e4, dt: float = 2.0 / 1500,
                 t_final: float = 2.0) -> None:
        if isinstance(n, bool) or not isinstance(n, int | float) or int(n) != n or n < 3:
            raise InputError(f"burgers2d: n must be an integer >= 3, got {n!r}")
        for key, val in (("reynolds", reynolds), ("dt", dt), ("t_final", t_final)):
            if isinstance(val, bool) or not (isinstance(val, int | float) and math.isfinite(val)
                                             and val > 0):
                raise InputError(f"burgers2d: {key} must be a positive number, got {val!r}")
        self.n = int(n)
        self.reynolds = float(reynolds)
        self.dt = float(dt)
        self.t_final = float(t_final)
        m = self.n - 2
        self.m = m
        self.grid_shape = (m, m)
        self.n_dofs = 2 * m * m
        self.image_shape = (m, m, 2)
        self.h = 1.0 / (self.n - 1)
        nodes = np.arange(self.n) / (self.n - 1)
        self.nodes = nodes
        self.grid = {"x": nodes[1:-1].copy(), "y": nodes[1:-1].copy()}
        # 1/dx, 1/dy, 1/(Re dx^2), 1/(Re dy^2) of (1)-(2); dx = dy = h
        self.coefficients = (1.0 / self.h, 1.0 / self.h,
                             1.0 / (self.reynolds * self.h * self.h),
                             1.0 / (self.reynolds * self.h * self.h))
        self._full = SampledBurgers2D(self, np.arange(self.n_dofs))

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "reynolds": self.reynolds, "dt": self.dt, "t_final": self.t_final}

    def newton_defaults(self) -> NewtonOptions:
        """Newton tolerance of the study: ``||r||_2 <= 1e-8`` (absolute), nothing else; each
        step starts from the quadratic extrapolation of the last three states."""
        return NewtonOptions(atol=1e-8, rtol=0.0, stol=0.0, max_iter=20, predictor=2)

    def initial_state(self, mu: np.ndarray) -> np.ndarray:
        mu = self.check_mu(mu)
        xs = self.nodes[1:-1]
        prof = np.where(xs <= 0.5, np.sin(2.0 * np.pi * xs), 0.0)
        u0 = mu[0] * np.outer(prof, prof)  # (y, x); the profile is the same in x and y
        return np.concatenate([u0.ravel(), u0.ravel()])

    # ---------------------------------------------------------------- evaluation
    def velocity(self, x: np.ndarray, t: float, mu: np.ndarray) -> np.ndarray:
        self.check_mu(mu)
        f = np.empty(self.n_dofs)
        self._full.evaluate(self.check_state(x, finite=False), f, np.empty(0), False)
        return f

    def jacobian_structure(self) -> tuple[np.ndarray, np.ndarray] | None:
        """CSR structure of ``df/dx`` (six entries per row, fewer next to the boundary)."""
        return self._full.indptr, self._full.indices

    def velocity_jacobian_into(self, x: np.ndarray, t: float, mu: np.ndarray, f: np.ndarray,
                               data: np.ndarray) -> None:
        """Velocity (1) into ``f`` and the values of (2) on :meth:`jacobian_structure` into
        ``data``, one numba call, no allocation."""
        self._full.evaluate(x, f, data, True)

    def jacobian(self, x: np.ndarray, t: float, mu: np.ndarray) -> sp.csr_matrix:
        mu = self.check_mu(mu)
        f, data = np.empty(self.n_dofs), np.empty(self._full.nnz)
        self.velocity_jacobian_into(self.check_state(x, finite=False), t, mu, f, data)
        indptr, indices = self.jacobian_structure()
        return sp.csr_matrix((data, indices.copy(), indptr.copy()),
                             shape=(self.n_dofs, self.n_dofs))

    def sample(self, rows: Any) -> SampledBurgers2D:
        """Velocity (1) and Jacobian (2) on the state rows ``rows`` from their stencil only."""
        return SampledBurgers2D(self, rows)


class SampledBurgers2D(SampledOperator):
    """:class:`fom.sampled.SampledOperator` of :class:`Burgers2D`: the kernel
    :func:`burgers2d_rows` over the rows' neighbour table in positions local to the stencil.

    The sample of all rows is the full problem's fused kernel (its stencil is every state
    entry, so local and global positions coincide).
    """

    def __init__(self, problem: Burgers2D, rows: Any) -> None:
        rows = check_sample_rows(rows, problem.n_dofs, problem.name)
        self.field, cols = neighbour_table(rows, problem.m)
        stencil = np.unique(cols[cols >= 0])
        self.cols = local_positions(stencil, cols)
        indptr, indices, self.dpos = csr_from_table(self.cols)
        self._set_maps(rows, stencil, indptr, indices)
        self.coef = problem.coefficients

    def evaluate(self, x_st: np.ndarray, f: np.ndarray, data: np.ndarray,
                 with_jacobian: bool) -> None:
        """Run :func:`burgers2d_rows` on ``x_st = x[stencil]`` (velocity only if asked)."""
        burgers2d_rows(x_st, self.field, self.cols, self.dpos, *self.coef, f, data,
                       with_jacobian)

    def velocity_jacobian_into(self, x_st, t, mu, f, data):
        self.evaluate(x_st, f, data, True)
