"""Parameterized 2D premixed H2-air flame (Buffoni & Willcox 2010; Lee & Carlberg 2020, sec. 6.2).

Steady-inflow advection-diffusion-reaction of ``w = (T, Y_H2, Y_O2, Y_H2O)`` on the channel
``[0, Lx] x [0, Ly] = [0, 1.8] x [0, 0.9]`` cm::

    dw/dt = kappa Lap(w) - U dw/dx + s(w; mu),       U = (U, 0)                       (1)

with one-step kinetics ``2 H2 + O2 -> 2 H2O`` and the molar reaction rate

    omega = A c_H2^2 c_O2 exp(-E / (R T)),   c_i = rho max(Y_i, 0) / W_i                (2)

    s_Yi = -nu_i (W_i / rho) omega,  nu = (2, 1, -2) for (H2, O2, H2O),  s_T = Q s_YH2O   (3)

parameterized by ``mu = (A, E)``. Boundaries: on the left edge Dirichlet values, ``(950 K,
0.0282, 0.2259, 0)`` on the inflow window ``0.3 <= y <= 0.6`` cm and ``(300 K, 0, 0, 0)`` on
the rest; zero normal gradient on the right, top and bottom edges. Initial state ``(300 K, 0,
0, 0)``; backward Euler with ``dt = 1e-4`` s to ``t = 0.06`` s (600 steps).

Discretization: cell-centred finite volumes on ``nx x ny`` uniform cells (64 x 32 by default),
cell ``(i, j)`` centred at ``((i + 1/2) dx, (j + 1/2) dy)``. For cell ``P`` with neighbours
``W, E, S, N``::

    dw_P/dt = (F_w - F_e) / dx + (G_s - G_n) / dy + s(w_P)                             (4)

    F_e = U w_P - kappa (w_E - w_P) / dx      (upwind advection, central diffusion; U >= 0)
    G_n = -kappa (w_N - w_P) / dy

Boundary faces (5): on the left edge ``F_w = U g_j - kappa (w_P - g_j) / (dx / 2)``, where
``g_j`` is the average of the Dirichlet data over the face (a face that the window's edge cuts
gets the area-weighted mixture of the two values, so the inflow of every species is exact on
any grid; on the default grid the faces ``j = 10`` and ``j = 21`` are one third inflow;
``inflow_faces = "centre"`` takes the value at the face's centre instead); ``F_e = U w_P`` on
the right edge (outflow, zero gradient); ``G = 0`` on the bottom and top.

The transport part of (4) is affine, ``f_tr = C w + b`` with a constant matrix ``C``; the
reaction couples the four fields of one cell. So row ``r`` of the velocity and its Jacobian is

    f_r = b_r + sum_e C_e w[col_e] + sigma_c omega(T, Y_H2, Y_O2)                        (6)
    df_r/dw[col_e] = C_e + sigma_c d omega / d w[col_e]    (last term for T, Y_H2, Y_O2 only)

with ``sigma = (2 Q W_H2O, -2 W_H2, -W_O2, 2 W_H2O) / rho``. One numba kernel
(:func:`flame_rows`) evaluates (6) for any list of rows from tables of column positions and
coefficients (computed once), with ``omega`` and its gradient computed once per cell the rows
belong to: the full problem and every sample mesh (:class:`FlameSample`) use it on the same
numbers in the same order, so restricted rows are bit-identical to the full ones.

Kinetics at non-physical states (Newton iterates may visit them): the concentrations in (2)
use ``max(Y, 0)``, so the rate vanishes when a reactant's mass fraction is zero or negative
(its derivative there is taken as 0) and a negative mass fraction can never be consumed further;
with backward Euler the exact discrete solution then keeps every ``Y >= 0`` (the transport
matrix is an M-matrix). The Arrhenius factor is set to 0 for ``T <= 0`` (its limit as
``T -> 0+``, with all derivatives, for ``E > 0``) and where ``E / (R T) > 700`` (underflow).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit

from .errors import InputError
from .newton import NewtonOptions
from .problem import Problem
from .sampled import (
    SampledOperator,
    check_sample_rows,
    local_positions,
)

FIELDS = ("T", "Y_H2", "Y_O2", "Y_H2O")
ARRHENIUS_CUTOFF = 700.0  # exp(-700) ~ 1e-304: beyond it the Arrhenius factor is 0

# ------------------------------------------------------------------ numba kernel


@njit(cache=True)
def flame_rows(x, a_pre, e_act, r_gas, rho_w, sigma, site_pos, work, b, row_field, row_site,
               indptr, colpos, coef, rsel, f, data):
    """Velocity (6) and its Jacobian values on a list of rows, reading ``x`` by position.

    Parameters
    ----------
    x : ndarray
        The vector the rows read (the full state, or the state on a sample's stencil).
    a_pre, e_act : float
        Parameters ``A`` and ``E`` of the rate (2).
    r_gas : float
        Gas constant ``R``.
    rho_w : ndarray, shape (2,)
        ``rho / W_H2`` and ``rho / W_O2`` (concentration per unit mass fraction).
    sigma : ndarray, shape (4,)
        Source coefficients of (3): ``s_c = sigma[c] * omega``.
    site_pos : ndarray of int, shape (n_sites, 3)
        Positions in ``x`` of ``T``, ``Y_H2``, ``Y_O2`` of each cell whose rate the rows need.
    work : ndarray, shape (n_sites, 4)
        Scratch: ``omega`` and its derivatives w.r.t. ``T, Y_H2, Y_O2`` per site.
    b : ndarray, shape (n_rows,)
        Constant (boundary) part of the transport, per row.
    row_field, row_site : ndarray of int, shape (n_rows,)
        Field and reaction site (cell) of each row.
    indptr, colpos, coef, rsel : ndarray
        Row ``k``'s entries are ``indptr[k]:indptr[k+1]``; entry ``e`` reads ``x[colpos[e]]``
        with transport coefficient ``coef[e]``, and ``rsel[e]`` (0, 1, 2 or -1) says which
        derivative of ``omega`` (w.r.t. ``T``, ``Y_H2``, ``Y_O2``, or none) it also carries.
    f : ndarray, shape (n_rows,)
        Output: the velocity on the rows.
    data : ndarray, shape (indptr[-1],)
        Output: the Jacobian values, entry by entry.
    """
    for s in range(site_pos.shape[0]):
        temp = x[site_pos[s, 0]]
        y1 = x[site_pos[s, 1]]
        y2 = x[site_pos[s, 2]]
        # Arrhenius factor and its T-derivative, 0 for T <= 0 or beyond the cutoff (E > 0)
        ex = 0.0
        dex = 0.0
        if e_act == 0.0:
            ex = 1.0
        elif temp > 0.0:
            arg = e_act / (r_gas * temp)
            if arg < ARRHENIUS_CUTOFF:
                ex = math.exp(-arg)
                dex = ex * arg / temp
        c1 = rho_w[0] * y1 if y1 > 0.0 else 0.0
        c2 = rho_w[1] * y2 if y2 > 0.0 else 0.0
        dc1 = rho_w[0] if y1 > 0.0 else 0.0
        dc2 = rho_w[1] if y2 > 0.0 else 0.0
        k2 = a_pre * c1 * c1
        work[s, 0] = k2 * c2 * ex
        work[s, 1] = k2 * c2 * dex
        work[s, 2] = 2.0 * a_pre * c1 * dc1 * c2 * ex
        work[s, 3] = k2 * dc2 * ex
    for k in range(b.shape[0]):
        s = row_site[k]
        sig = sigma[row_field[k]]
        acc = b[k]
        for e in range(indptr[k], indptr[k + 1]):
            acc += coef[e] * x[colpos[e]]
            m = rsel[e]
            data[e] = coef[e] + sig * work[s, 1 + m] if m >= 0 else coef[e]
        f[k] = acc + sig * work[s, 0]


# ------------------------------------------------------------------ tables


def _as_floats(value: Any, n: int, key: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"flame2d: {key} must be a list of {n} numbers, got {value!r}") from None
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise InputError(f"flame2d: {key} must be a list of {n} finite numbers, got {value!r}")
    return vals


def _number(value: Any, key: str, *, positive: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0) or (not positive and value < 0):
        what = "a positive number" if positive else "a number >= 0"
        raise InputError(f"flame2d: {key} must be {what}, got {value!r}")
    return float(value)


class FlameSample(SampledOperator):
    """:class:`fom.sampled.SampledOperator` of :class:`Flame2D`.

    The rows' entries of the full tables, with column positions mapped into the stencil;
    evaluated by the same kernel (:func:`flame_rows`) on the same per-entry values in the
    same order, hence bit-identical to the full problem's rows.
    """

    def __init__(self, problem: Flame2D, rows: Any) -> None:
        rows = check_sample_rows(rows, problem.n_dofs, problem.name)
        tab = problem._tables
        starts, stops = tab["indptr"][rows], tab["indptr"][rows + 1]
        counts = stops - starts
        entries = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        cols = tab["indices"][entries]
        stencil = np.unique(cols)
        self._set_maps(rows, stencil, np.concatenate(([0], np.cumsum(counts))),
                       local_positions(stencil, cols))
        self._coef = tab["coef"][entries]
        self._rsel = tab["rsel"][entries]
        self._b = tab["b"][rows]
        self._field = tab["field"][rows]
        cells, self._row_site = np.unique(rows % problem.n_cells, return_inverse=True)
        self._site_pos = local_positions(stencil, tab["site_pos"][cells])
        self._work = np.empty((cells.size, 4))
        self._consts = (problem.gas_constant, problem._rho_w, problem._sigma)

    def velocity_jacobian_into(self, x_st: np.ndarray, t: float, mu: np.ndarray, f: np.ndarray,
                               data: np.ndarray) -> None:
        r_gas, rho_w, sigma = self._consts
        flame_rows(x_st, float(mu[0]), float(mu[1]), r_gas, rho_w, sigma, self._site_pos,
                   self._work, self._b, self._field, self._row_site, self.indptr, self.indices,
                   self._coef, self._rsel, f, data)


class Flame2D(Problem):
    """The 2D premixed H2-air flame of Lee & Carlberg, sec. 6.2 (docs/problems.md), equations
    (1)-(6) of this module.

    Parameters
    ----------
    nx : int
        Cells in x (64).
    ny : int
        Cells in y (32).
    length_x : float
        Channel length in cm (1.8).
    length_y : float
        Channel height in cm (0.9).
    kappa : float
        Diffusivity in cm^2/s, the same for every field (2.0).
    velocity : float
        Advection velocity ``U`` in x, in cm/s (50); must be >= 0 (the left edge is the inflow).
    density : float
        ``rho`` in g/cm^3 (1.39e-3).
    molecular_weights : sequence of 3 floats
        ``W_H2, W_O2, W_H2O`` in g/mol (2.016, 31.9, 18.0).
    gas_constant : float
        ``R`` in J/(mol K) (8.314472); the activation energy ``E`` is in J/mol.
    heat_release : float
        ``Q`` in K (9800): ``s_T = Q s_YH2O``.
    inflow_window : sequence of 2 floats
        ``y`` range of the inflow on the left edge, in cm (0.3, 0.6).
    inflow_faces : {"average", "centre"}
        Dirichlet value of a left-edge face that the window's edge cuts: the area-weighted
        average of the two values (default; the inflow is exact on every grid), or the value at
        the face's centre.
    inflow_values : sequence of 4 floats
        Dirichlet values ``(T, Y_H2, Y_O2, Y_H2O)`` on the inflow window (950, 0.0282, 0.2259,
        0).
    outer_values : sequence of 4 floats
        Dirichlet values on the rest of the left edge (300, 0, 0, 0).
    initial_values : sequence of 4 floats
        Uniform initial state (300, 0, 0, 0).
    dt : float
        Default time step in s (1e-4).
    t_final : float
        Default final time in s (0.06: 600 steps).
    image_shape : sequence of int, optional
        Autoencoder image; default ``(ny, nx, 4)``.
    """

    name = "flame2d"
    param_names = ("A", "E")
    param_bounds = np.array([[2.3375e12, 6.5e12], [5.6255e3, 9.0e3]])
    fields = FIELDS

    def __init__(self, nx: int = 64, ny: int = 32, length_x: float = 1.8, length_y: float = 0.9,
                 kappa: float = 2.0, velocity: float = 50.0, density: float = 1.39e-3,
                 molecular_weights: Sequence[float] = (2.016, 31.9, 18.0),
                 gas_constant: float = 8.314472, heat_release: float = 9800.0,
                 inflow_window: Sequence[float] = (0.3, 0.6), inflow_faces: str = "average",
                 inflow_values: Sequence[float] = (950.0, 0.0282, 0.2259, 0.0),
                 outer_values: Sequence[float] = (300.0, 0.0, 0.0, 0.0),
                 initial_values: Sequence[float] = (300.0, 0.0, 0.0, 0.0),
                 dt: float = 1e-4, t_final: float = 0.06,
                 image_shape: Sequence[int] | None = None) -> None:
        for key, val in (("nx", nx), ("ny", ny)):
            if isinstance(val, bool) or not isinstance(val, int | float) or int(val) != val \
                    or val < 2:
                raise InputError(f"flame2d: {key} must be an integer >= 2, got {val!r}")
        self.nx, self.ny = int(nx), int(ny)
        self.length_x = _number(length_x, "length_x")
        self.length_y = _number(length_y, "length_y")
        self.kappa = _number(kappa, "kappa", positive=False)
        self.velocity_x = _number(velocity, "velocity", positive=False)
        self.density = _number(density, "density")
        self.molecular_weights = _as_floats(molecular_weights, 3, "molecular_weights")
        if min(self.molecular_weights) <= 0:
            raise InputError(f"flame2d: molecular_weights must be positive, "
                             f"got {list(molecular_weights)}")
        self.gas_constant = _number(gas_constant, "gas_constant")
        self.heat_release = _number(heat_release, "heat_release", positive=False)
        lo, hi = _as_floats(inflow_window, 2, "inflow_window")
        if not 0.0 <= lo < hi <= self.length_y:
            raise InputError(f"flame2d: inflow_window must satisfy 0 <= lo < hi <= length_y = "
                             f"{self.length_y}, got {[lo, hi]}")
        self.inflow_window = (lo, hi)
        if inflow_faces not in ("average", "centre"):
            raise InputError(f"flame2d: inflow_faces must be 'average' or 'centre', "
                             f"got {inflow_faces!r}")
        self.inflow_faces = inflow_faces
        self.inflow_values = _as_floats(inflow_values, 4, "inflow_values")
        self.outer_values = _as_floats(outer_values, 4, "outer_values")
        self.initial_values = _as_floats(initial_values, 4, "initial_values")
        self.dt = _number(dt, "dt")
        self.t_final = _number(t_final, "t_final")
        shape = tuple(int(s) for s in image_shape) if image_shape is not None \
            else (self.ny, self.nx, len(FIELDS))
        self.grid_shape = (self.ny, self.nx)
        self.n_cells = self.nx * self.ny
        self.n_dofs = len(FIELDS) * self.n_cells
        if math.prod(shape) != self.n_dofs:
            raise InputError(f"flame2d: image_shape {list(shape)} has {math.prod(shape)} entries, "
                             f"expected n_dofs = {self.n_dofs}")
        self.image_shape = shape
        self.dx = self.length_x / self.nx
        self.dy = self.length_y / self.ny
        self.x = (np.arange(self.nx) + 0.5) * self.dx
        self.y = (np.arange(self.ny) + 0.5) * self.dy
        self.grid = {"x": self.x, "y": self.y}
        w_h2, w_o2, w_h2o = self.molecular_weights
        rho = self.density
        self._rho_w = np.array([rho / w_h2, rho / w_o2])
        self._sigma = np.array([2.0 * self.heat_release * w_h2o, -2.0 * w_h2, -w_o2,
                                2.0 * w_h2o]) / rho
        self.left_values = self._left_face_values()
        self._tables = self._build_tables()

    # ------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        return {"nx": self.nx, "ny": self.ny, "length_x": self.length_x,
                "length_y": self.length_y, "kappa": self.kappa, "velocity": self.velocity_x,
                "density": self.density, "molecular_weights": list(self.molecular_weights),
                "gas_constant": self.gas_constant, "heat_release": self.heat_release,
                "inflow_window": list(self.inflow_window), "inflow_faces": self.inflow_faces,
                "inflow_values": list(self.inflow_values),
                "outer_values": list(self.outer_values),
                "initial_values": list(self.initial_values), "dt": self.dt,
                "t_final": self.t_final, "image_shape": list(self.image_shape)}

    def newton_defaults(self) -> NewtonOptions:
        """Newton settings for :func:`fom.solve`.

        Tolerance: the residual mixes kelvins (``T`` rows, up to ~2000) with mass fractions,
        and round-off in the ``T`` rows alone is ~1e-11 in the 2-norm, so the 1D problem's
        ``atol = 1e-12`` cannot be met: ``atol = 1e-8`` (1e-8 K in ``T``, 1e-8 in each ``Y``).
        Predictor: the trajectories are smooth in time at the default step, and the quartic
        extrapolation of the last five states as the initial guess takes 1.7-2.0 Newton
        iterations per step on the training set, against 3.8-4.3 for the linear one.
        """
        return NewtonOptions(atol=1e-8, rtol=0.0, stol=1e-14, max_iter=30, predictor=4)

    def lu_options(self) -> dict[str, Any]:
        """SuperLU options for ``M = alpha0 I - beta dt df/dx``: minimum-degree ordering of
        ``M + M^T`` with diagonal pivots (symmetric mode, no pivoting).

        With partial pivoting SuperLU picks the reaction entries of the ``T`` rows (kelvins per
        unit mass fraction, 1e3-1e4 times the diagonal of the ``Y`` columns) as pivots, and
        the fill doubles (1.2e6-1.3e6 nonzeros in ``L + U`` on the 64 x 32 grid against 6.5e5).
        Without pivoting the solves are as accurate on this matrix (relative residual ~1e-13
        at flame states of the parameter box, no element growth: ``max |U| = max |M|``). The
        Newton iteration tests the true residual in any case, and a zero pivot makes the
        sparse solver fall back to partial pivoting.
        """
        return {"permc_spec": "MMD_AT_PLUS_A", "diag_pivot_thresh": 0.0,
                "options": {"SymmetricMode": True}}

    def check_mu(self, mu: Any, *, check_bounds: bool = False) -> np.ndarray:
        """As :meth:`Problem.check_mu`; also ``A >= 0`` and ``E >= 0`` (the rate (2))."""
        arr = super().check_mu(mu, check_bounds=check_bounds)
        for k in range(2):
            if arr[k] < 0:
                raise InputError(f"flame2d: parameter {self.param_names[k]} must be >= 0, "
                                 f"got {arr[k]}")
        return arr

    def _left_face_values(self) -> np.ndarray:
        """Dirichlet value of each left-edge face, shape (4, ny), equation (5): the data
        averaged over the face, or (``inflow_faces = "centre"``) taken at its centre."""
        lo, hi = self.inflow_window
        y0 = np.arange(self.ny) * self.dy
        if self.inflow_faces == "centre":
            centre = y0 + 0.5 * self.dy
            frac = ((centre >= lo) & (centre <= hi)).astype(np.float64)
        else:
            frac = np.clip(np.minimum(y0 + self.dy, hi) - np.maximum(y0, lo), 0.0, None) / self.dy
            frac = np.where(np.isclose(frac, 1.0, rtol=0, atol=1e-12), 1.0, frac)
            frac = np.where(np.isclose(frac, 0.0, rtol=0, atol=1e-12), 0.0, frac)
        inflow = np.array(self.inflow_values)[:, None]
        outer = np.array(self.outer_values)[:, None]
        return frac[None, :] * inflow + (1.0 - frac[None, :]) * outer

    def _build_tables(self) -> dict[str, np.ndarray]:
        """Per-row tables of (6): CSR structure, transport coefficients, reaction columns."""
        nx, ny, nc = self.nx, self.ny, self.n_cells
        kx = self.kappa / self.dx**2
        ky = self.kappa / self.dy**2
        ux = self.velocity_x / self.dx
        n = self.n_dofs
        field = np.repeat(np.arange(4), nc)
        cell = np.tile(np.arange(nc), 4)
        i, j = cell % nx, cell // nx
        base = field * nc
        # slots: S, W, P, E, N (same field), then T, Y_H2, Y_O2 of the cell (other fields)
        cols = np.full((n, 8), -1, dtype=np.int64)
        coef = np.zeros((n, 8))
        rsel = np.full((n, 8), -1, dtype=np.int64)
        has_s, has_n, has_w, has_e = j > 0, j < ny - 1, i > 0, i < nx - 1
        cols[:, 0] = np.where(has_s, base + cell - nx, -1)
        coef[:, 0] = np.where(has_s, ky, 0.0)
        cols[:, 1] = np.where(has_w, base + cell - 1, -1)
        coef[:, 1] = np.where(has_w, kx + ux, 0.0)
        cols[:, 2] = base + cell
        coef[:, 2] = -(has_s * ky + has_n * ky + has_e * kx + np.where(has_w, kx, 2.0 * kx)
                       + ux)
        cols[:, 3] = np.where(has_e, base + cell + 1, -1)
        coef[:, 3] = np.where(has_e, kx, 0.0)
        cols[:, 4] = np.where(has_n, base + cell + nx, -1)
        coef[:, 4] = np.where(has_n, ky, 0.0)
        for c in range(3):  # reaction columns: the rate depends on T, Y_H2, Y_O2 of the cell
            own = field == c
            rsel[own, 2] = c
            cols[:, 5 + c] = np.where(own, -1, c * nc + cell)
            rsel[:, 5 + c] = np.where(own, -1, c)
        # boundary (Dirichlet) part of the transport on the left edge, equation (5)
        b = np.where(i == 0, (ux + 2.0 * kx) * self.left_values[field, j], 0.0)
        # sort each row's entries by column, dropping the empty slots
        key = np.where(cols < 0, np.iinfo(np.int64).max, cols)
        order = np.argsort(key, axis=1, kind="stable")
        cols = np.take_along_axis(cols, order, axis=1)
        coef = np.take_along_axis(coef, order, axis=1)
        rsel = np.take_along_axis(rsel, order, axis=1)
        keep = cols >= 0
        indptr = np.concatenate(([0], np.cumsum(keep.sum(axis=1)))).astype(np.int64)
        cells = np.arange(nc)
        site_pos = np.stack([c * nc + cells for c in range(3)], axis=1).astype(np.int64)
        return {"indptr": indptr, "indices": cols[keep], "coef": coef[keep],
                "rsel": rsel[keep], "b": b, "field": field.astype(np.int64),
                "site": cell.astype(np.int64), "site_pos": site_pos, "work": np.empty((nc, 4))}

    # ------------------------------------------------------------ states
    def initial_state(self, mu: np.ndarray) -> np.ndarray:
        self.check_mu(mu)
        return np.repeat(np.array(self.initial_values), self.n_cells)

    def as_fields(self, x: np.ndarray) -> np.ndarray:
        """View of a state (or states ``(..., N)``) as ``(..., 4, ny, nx)`` fields."""
        x = np.asarray(x)
        return x.reshape(x.shape[:-1] + (len(FIELDS), self.ny, self.nx))

    # ------------------------------------------------------------ full evaluation
    def jacobian_structure(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR structure of ``df/dx`` (5-point stencil per field plus the cell's reaction
        columns ``T, Y_H2, Y_O2``; 7 or 8 entries per row), computed once."""
        return self._tables["indptr"], self._tables["indices"]

    def velocity_jacobian_into(self, x: np.ndarray, t: float, mu: np.ndarray, f: np.ndarray,
                               data: np.ndarray) -> None:
        """Velocity (6) into ``f`` and the CSR values into ``data``: one numba call."""
        tab = self._tables
        flame_rows(x, float(mu[0]), float(mu[1]), self.gas_constant, self._rho_w, self._sigma,
                   tab["site_pos"], tab["work"], tab["b"], tab["field"], tab["site"],
                   tab["indptr"], tab["indices"], tab["coef"], tab["rsel"], f, data)

    def _full(self, x: Any, mu: Any) -> tuple[np.ndarray, np.ndarray]:
        """Velocity and CSR values at a full state (shape checked, values not)."""
        mu = self.check_mu(mu)
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.n_dofs,):
            raise InputError(f"state has shape {x.shape}, expected ({self.n_dofs},) for "
                             f"problem {self.name}")
        f = np.empty(self.n_dofs)
        data = np.empty(self._tables["indices"].size)
        self.velocity_jacobian_into(x, 0.0, mu, f, data)
        return f, data

    def velocity(self, x: np.ndarray, t: float, mu: np.ndarray) -> np.ndarray:
        return self._full(x, mu)[0]

    def jacobian(self, x: np.ndarray, t: float, mu: np.ndarray) -> sp.csr_matrix:
        data = self._full(x, mu)[1]
        indptr, indices = self.jacobian_structure()
        return sp.csr_matrix((data, indices.copy(), indptr.copy()),
                             shape=(self.n_dofs, self.n_dofs))

    # ------------------------------------------------------------ hyper-reduction
    def sample(self, rows: np.ndarray) -> FlameSample:
        """The velocity and Jacobian on ``rows`` from the state on their stencil only."""
        return FlameSample(self, rows)

    def stencil(self, rows: np.ndarray) -> np.ndarray:
        rows = np.unique(self.check_rows(rows))
        return self.sample(rows).stencil if rows.size else rows
