"""Parameterized 1D inviscid Burgers equation (Lee & Carlberg 2019, section 6.1; docs/problems.md).

    dw/dt + d(w^2/2)/dx = a * exp(mu_2 x),   x in [0, L],  t in [0, T]
    w(0, t) = mu_1 (inflow),   w(x, 0) = w_init,   outflow at x = L

Godunov finite volumes on ``n_cells`` uniform cells with centres ``x_i = (i + 1/2) dx``:

    dw_i/dt = -(F_{i+1/2} - F_{i-1/2}) / dx + a exp(mu_2 x_i)                          (3)

with the exact Riemann (Godunov) flux of the convex flux ``F(u) = u^2/2``,

    F(uL, uR) = min_{uL <= u <= uR} F(u)  if uL <= uR,   max_{uR <= u <= uL} F(u)  otherwise,  (4)

the inflow face ``F_{-1/2} = F(mu_1, w_0)`` and the outflow face ``F_{N-1/2} = F(w_{N-1},
w_{N-1})`` (zero-gradient ghost cell). Defaults: ``L = 100``, ``N = 256``, ``a = 0.02``,
``w_init = 1``, ``dt = 0.07``, ``T = 35`` (500 backward-Euler steps).

The Jacobian of (3) is tridiagonal; the derivative of (4) is exact in every case: shock
(``uL > uR``), rarefaction, transonic rarefaction (flux 0, derivative 0) and ``uL = uR``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit

from .errors import InputError
from .problem import Problem
from .sampled import (
    SampledOperator,
    check_sample_rows,
    local_positions,
)
from .tridiagonal import solve_tridiagonal

# ------------------------------------------------------------------ numba kernels


@njit(cache=True, inline="always")
def godunov_flux(ul: float, ur: float) -> tuple[float, float, float]:
    """Godunov flux (4) for ``F(u) = u^2/2`` and its partial derivatives ``dF/duL, dF/duR``."""
    if ul <= ur:  # rarefaction (or constant state): minimum of F on [ul, ur]
        if ul >= 0.0:
            return 0.5 * ul * ul, ul, 0.0
        if ur <= 0.0:
            return 0.5 * ur * ur, 0.0, ur
        return 0.0, 0.0, 0.0  # transonic rarefaction: sonic point u = 0
    # shock: maximum of F on [ur, ul]; the upwind side is given by the shock speed sign
    if ul + ur > 0.0:
        return 0.5 * ul * ul, ul, 0.0
    return 0.5 * ur * ur, 0.0, ur


@njit(cache=True, inline="always")
def right_face_flux(w: np.ndarray, i: int) -> tuple[float, float, float]:
    """Flux (4) through face ``i + 1/2`` and its derivatives w.r.t. ``w_i`` and ``w_{i+1}``.

    At the outflow face the ghost state equals ``w_{N-1}`` (zero gradient), so the whole
    derivative is with respect to ``w_{N-1}`` and the second one is 0.
    """
    n = w.shape[0]
    if i < n - 1:
        return godunov_flux(w[i], w[i + 1])
    fr, drl, drr = godunov_flux(w[i], w[i])
    return fr, drl + drr, 0.0


@njit(cache=True)
def burgers_velocity_jacobian_at(w, mu1, source, dx, f, out, il, idg, iu):
    """Velocity (3) into ``f`` and the Jacobian's nonzeros into ``out`` at given positions.

    ``out[idg[i]] = df_i/dw_i``, ``out[iu[i]] = df_i/dw_{i+1}``, ``out[il[i]] = df_{i+1}/dw_i``.
    The index maps choose the layout: the three diagonals one after the other
    (:func:`diagonal_layout`) or the ``data`` array of the CSR matrix (:func:`csr_layout`).
    """
    n = w.shape[0]
    inv = 1.0 / dx
    fl, _, dlr = godunov_flux(mu1, w[0])
    for i in range(n):
        fr, drl, drr = right_face_flux(w, i)
        f[i] = -(fr - fl) * inv + source[i]
        out[idg[i]] = (dlr - drl) * inv
        if i < n - 1:
            out[iu[i]] = -drr * inv
            out[il[i]] = drl * inv  # d f_{i+1} / d w_i through the face i+1/2
        fl = fr
        dlr = drr  # derivative of face i+1/2 w.r.t. its right state w_{i+1}


def diagonal_layout(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index maps of :func:`burgers_velocity_jacobian_at` for ``[sub | main | super]``."""
    return np.arange(n - 1), n - 1 + np.arange(n), 2 * n - 1 + np.arange(n - 1)


def csr_layout(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR structure of the tridiagonal Jacobian and the index maps into its ``data``.

    Returns ``(indptr, indices, il, idg, iu)``; row ``i`` holds columns ``i-1, i, i+1``.
    """
    start = np.maximum(3 * np.arange(n) - 1, 0)
    indptr = np.append(start, 3 * n - 2)
    cols = np.arange(n)[:, None] + np.array([-1, 0, 1])
    indices = cols[(cols >= 0) & (cols < n)]
    idg = start + (np.arange(n) > 0)
    return indptr, indices, start[1:], idg, idg[:-1] + 1


@njit(cache=True)
def burgers_velocity(w, mu1, source, dx, f):
    """Velocity (3) only."""
    n = w.shape[0]
    inv = 1.0 / dx
    fl = godunov_flux(mu1, w[0])[0]
    for i in range(n):
        ur = w[i + 1] if i < n - 1 else w[i]
        fr = godunov_flux(w[i], ur)[0]
        f[i] = -(fr - fl) * inv + source[i]
        fl = fr


@njit(cache=True)
def burgers_sampled(w, mu1, source, dx, pl, pc, pr, dptr, f, data):
    """Velocity (3) and Jacobian entries on sampled rows, reading a local state vector.

    Row ``k`` is cell ``i``: ``w[pc[k]]`` is ``w_i``, ``w[pl[k]]`` and ``w[pr[k]]`` its
    neighbours (``-1``: the inflow boundary value ``mu_1`` on the left, the zero-gradient
    outflow ghost on the right). ``data[dptr[k]:]`` receives ``df_i/dw_{i-1}`` (if ``i > 0``),
    ``df_i/dw_i``, ``df_i/dw_{i+1}`` (if ``i < N - 1``). Bitwise equal to the rows of
    :func:`burgers_velocity_jacobian_at` (the same flux evaluations).
    """
    inv = 1.0 / dx
    for k in range(pc.shape[0]):
        wc = w[pc[k]]
        ul = mu1 if pl[k] < 0 else w[pl[k]]
        fl, dll, dlr = godunov_flux(ul, wc)
        if pr[k] >= 0:
            fr, drl, drr = godunov_flux(wc, w[pr[k]])
        else:  # outflow face: the ghost state equals w_i (see right_face_flux)
            fr, drl, drr = godunov_flux(wc, wc)
            drl, drr = drl + drr, 0.0
        f[k] = -(fr - fl) * inv + source[k]
        q = dptr[k]
        if pl[k] >= 0:
            data[q] = dll * inv
            q += 1
        data[q] = (dlr - drl) * inv
        if pr[k] >= 0:
            data[q + 1] = -drr * inv


@njit(cache=True)
def burgers_integrate(w0, mu1, source, dx, dt, n_steps, bdf2, atol, rtol, stol, max_iter,
                      states, iters, resnorms):
    """Integrate (3) by backward Euler or BDF2 with Newton and tridiagonal solves.

    Fills ``states[0..n_steps]``, ``iters[n]`` (Newton iterations of step n) and
    ``resnorms[n]`` (final residual 2-norm). Newton on step n stops when
    ``||r|| <= atol + rtol * ||r_0||`` or when the update satisfies
    ``||dw|| <= stol * (1 + ||w||)``. Returns 0 on success, else the failing step index.
    """
    n = w0.shape[0]
    f = np.empty(n)
    jbuf = np.empty(3 * n - 2)
    jl, jd, ju = jbuf[:n - 1], jbuf[n - 1:2 * n - 1], jbuf[2 * n - 1:]
    il = np.arange(n - 1)
    idg = n - 1 + np.arange(n)
    iu = 2 * n - 1 + np.arange(n - 1)
    r = np.empty(n)
    states[0, :] = w0
    for step in range(1, n_steps + 1):
        if bdf2 and step >= 2:
            a1, a2, beta = -4.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0
        else:
            a1, a2, beta = -1.0, 0.0, 1.0
        w = states[step]
        w[:] = states[step - 1]
        bdt = beta * dt
        r0 = 0.0
        norm = 0.0
        converged = False
        k = 0
        while True:
            burgers_velocity_jacobian_at(w, mu1, source, dx, f, jbuf, il, idg, iu)
            norm = 0.0
            for i in range(n):
                hist = a1 * states[step - 1, i]
                if a2 != 0.0:
                    hist += a2 * states[step - 2, i]
                r[i] = w[i] + hist - bdt * f[i]
                norm += r[i] * r[i]
            norm = math.sqrt(norm)
            if k == 0:
                r0 = norm
            if norm <= atol + rtol * r0:
                converged = True
                break
            if k >= max_iter:
                break
            for i in range(n - 1):
                jl[i] = -bdt * jl[i]
                ju[i] = -bdt * ju[i]
            wnorm = 0.0
            for i in range(n):
                jd[i] = 1.0 - bdt * jd[i]
                wnorm += w[i] * w[i]
            if not solve_tridiagonal(jl, jd, ju, r):
                break
            dnorm = 0.0
            for i in range(n):
                w[i] -= r[i]
                dnorm += r[i] * r[i]
            k += 1
            if math.sqrt(dnorm) <= stol * (1.0 + math.sqrt(wnorm)):
                # converged on the step size: report the residual at the accepted state
                burgers_velocity(w, mu1, source, dx, f)
                norm = 0.0
                for i in range(n):
                    hist = a1 * states[step - 1, i]
                    if a2 != 0.0:
                        hist += a2 * states[step - 2, i]
                    ri = w[i] + hist - bdt * f[i]
                    norm += ri * ri
                norm = math.sqrt(norm)
                converged = True
                break
        iters[step] = k
        resnorms[step] = norm
        if not converged or not math.isfinite(norm):
            return step
    return 0


# ------------------------------------------------------------------ problem class


def _default_image_shape(n: int) -> tuple[int, ...]:
    s = math.isqrt(n)
    return (s, s, 1) if s * s == n else (n, 1)


class Burgers1D(Problem):
    """The paper's parameterized 1D inviscid Burgers problem (the default; docs/problems.md).

    Parameters
    ----------
    n_cells : int
        Number of finite-volume cells ``N`` (default 256).
    length : float
        Domain length ``L`` (default 100).
    dt : float
        Default time step (0.07: 500 steps to ``t_final``).
    t_final : float
        Default final time (35).
    source_amplitude : float
        Factor ``a`` of the source ``a exp(mu_2 x)`` (default 0.02).
    w_init : float
        Uniform initial state (default 1).
    image_shape : sequence of int, optional
        Restriction shape for the autoencoder; default ``(16, 16, 1)`` for ``N = 256``.
    """

    name = "burgers1d"
    param_names = ("mu1", "mu2")
    param_bounds = np.array([[4.25, 5.5], [0.015, 0.03]])

    def __init__(self, n_cells: int = 256, length: float = 100.0, dt: float = 0.07,
                 t_final: float = 35.0, source_amplitude: float = 0.02, w_init: float = 1.0,
                 image_shape: tuple[int, ...] | None = None) -> None:
        if int(n_cells) != n_cells or n_cells < 2:
            raise InputError(f"burgers1d: n_cells must be an integer >= 2, got {n_cells!r}")
        for key, val in (("length", length), ("dt", dt), ("t_final", t_final)):
            if not (isinstance(val, int | float) and math.isfinite(val) and val > 0):
                raise InputError(f"burgers1d: {key} must be a positive number, got {val!r}")
        for key, val in (("source_amplitude", source_amplitude), ("w_init", w_init)):
            if not (isinstance(val, int | float) and math.isfinite(val)):
                raise InputError(f"burgers1d: {key} must be a finite number, got {val!r}")
        self.n_cells = int(n_cells)
        self.length = float(length)
        self.dt = float(dt)
        self.t_final = float(t_final)
        self.source_amplitude = float(source_amplitude)
        self.w_init = float(w_init)
        self.n_dofs = self.n_cells
        self.grid_shape = (self.n_cells,)
        self.dx = self.length / self.n_cells
        self.x = (np.arange(self.n_cells) + 0.5) * self.dx
        self.grid = {"x": self.x}
        shape = tuple(int(s) for s in image_shape) if image_shape is not None \
            else _default_image_shape(self.n_cells)
        if math.prod(shape) != self.n_cells:
            raise InputError(
                f"burgers1d: image_shape {list(shape)} has {math.prod(shape)} entries, "
                f"expected n_cells = {self.n_cells}"
            )
        self.image_shape = shape
        self._csr = csr_layout(self.n_cells)

    def config(self) -> dict[str, Any]:
        return {"n_cells": self.n_cells, "length": self.length, "dt": self.dt,
                "t_final": self.t_final, "source_amplitude": self.source_amplitude,
                "w_init": self.w_init, "image_shape": list(self.image_shape)}

    def source(self, mu: np.ndarray) -> np.ndarray:
        """Source term ``a exp(mu_2 x_i)`` at the cell centres."""
        return self.source_amplitude * np.exp(mu[1] * self.x)

    def initial_state(self, mu: np.ndarray) -> np.ndarray:
        self.check_mu(mu)
        return np.full(self.n_cells, self.w_init)

    def velocity(self, x: np.ndarray, t: float, mu: np.ndarray) -> np.ndarray:
        mu = self.check_mu(mu)
        f = np.empty(self.n_cells)
        burgers_velocity(np.ascontiguousarray(x, dtype=np.float64), mu[0], self.source(mu),
                         self.dx, f)
        return f

    def jacobian_structure(self) -> tuple[np.ndarray, np.ndarray] | None:
        """CSR structure of the (tridiagonal) Jacobian: ``(indptr, indices)``.

        None for a subclass that redefines :meth:`velocity` or :meth:`jacobian`: the fused
        kernel computes this class's model and must not stand in for another one.
        """
        cls = type(self)
        if cls.velocity is not Burgers1D.velocity or cls.jacobian is not Burgers1D.jacobian:
            return None
        return self._csr[0], self._csr[1]

    def velocity_jacobian_into(self, x: np.ndarray, t: float, mu: np.ndarray, f: np.ndarray,
                               data: np.ndarray) -> None:
        """Velocity into ``f`` and the Jacobian's CSR values into ``data``, one numba call
        (this class's model, equations (3)-(4), whatever a subclass overrides)."""
        _, _, il, idg, iu = self._csr
        burgers_velocity_jacobian_at(x, mu[0], self.source(mu), self.dx, f, data, il, idg, iu)

    def jacobian(self, x: np.ndarray, t: float, mu: np.ndarray) -> sp.csr_matrix:
        mu = self.check_mu(mu)
        n = self.n_cells
        f, data = np.empty(n), np.empty(3 * n - 2)
        self.velocity_jacobian_into(np.ascontiguousarray(x, dtype=np.float64), t, mu, f, data)
        indptr, indices = self._csr[0], self._csr[1]
        return sp.csr_matrix((data, indices.copy(), indptr.copy()), shape=(n, n))

    def stencil(self, rows: np.ndarray) -> np.ndarray:
        rows = self.check_rows(rows)
        nb = np.concatenate([rows - 1, rows, rows + 1])
        return np.unique(nb[(nb >= 0) & (nb < self.n_cells)])

    def sample(self, rows: Any) -> SampledBurgers1D:
        """Velocity (3) and its Jacobian on the cells ``rows`` from their stencil only."""
        return SampledBurgers1D(self, rows)

    def compiled_integrator(self):
        """Whole-trajectory numba kernel for :func:`fom.solve` (:func:`burgers_integrate`)."""

        def integrate(mu, dt, n_steps, scheme_name, atol, rtol, stol, max_iter):
            states = np.empty((n_steps + 1, self.n_cells))
            iters = np.zeros(n_steps + 1, dtype=np.int64)
            res = np.zeros(n_steps + 1)
            failed = burgers_integrate(self.initial_state(mu), mu[0], self.source(mu), self.dx,
                                       dt, n_steps, scheme_name == "bdf2", atol, rtol, stol,
                                       max_iter, states, iters, res)
            return states, iters, res, int(failed)

        return integrate


class SampledBurgers1D(SampledOperator):
    """:class:`fom.sampled.SampledOperator` of :class:`Burgers1D` (kernel
    :func:`burgers_sampled`): cell ``i`` reads cells ``i - 1, i, i + 1``."""

    def __init__(self, problem: Burgers1D, rows: Any) -> None:
        n = problem.n_cells
        rows = check_sample_rows(rows, n, problem.name)
        left = np.where(rows > 0, rows - 1, -1)
        right = np.where(rows < n - 1, rows + 1, -1)
        stencil = np.unique(np.concatenate([left[left >= 0], rows, right[right >= 0]]))
        self.pl = local_positions(stencil, left)
        self.pc = local_positions(stencil, rows)
        self.pr = local_positions(stencil, right)
        counts = 1 + (self.pl >= 0) + (self.pr >= 0)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        cols = np.stack([self.pl, self.pc, self.pr], axis=1)
        indices = cols[cols >= 0]     # row by row, ascending: pl < pc < pr
        self._set_maps(rows, stencil, indptr, indices)
        self.dptr = self.indptr[:-1].copy()
        self.x_rows = problem.x[rows]
        self.amplitude, self.dx = problem.source_amplitude, problem.dx

    def velocity_jacobian_into(self, x_st, t, mu, f, data):
        source = self.amplitude * np.exp(mu[1] * self.x_rows)
        burgers_sampled(x_st, mu[0], source, self.dx, self.pl, self.pc, self.pr, self.dptr,
                        f, data)
