"""Numba kernels of the online ROM solvers: the hot loops of one Gauss–Newton iterate.

Every kernel writes into caller-owned arrays (no allocation), so a time step's iterations
reuse one workspace. Notation of :mod:`fom.steppers`: a scheme with coefficients
``alpha_0..alpha_k`` and ``beta`` has the time-discrete residual and Jacobian

    r^n(x) = alpha_0 x + h - beta dt f(x),        dr^n/dx = alpha_0 I - beta dt df/dx     (1)

where ``h = sum_j alpha_j x^{n-j}`` is the history term. On the trial manifold
``x = x_ref + g(z)`` with ``J = dg/dz`` (N x p), the Gauss–Newton Jacobian of LSPG is

    A = (dr^n/dx) J = alpha_0 J - beta dt (df/dx) J                                        (2)

(Lee & Carlberg 2020, section 3.3, manifold LSPG). ``df/dx`` comes as CSR arrays, from the
problem's fused kernel (:meth:`fom.Problem.velocity_jacobian_into`) or its CSR ``jacobian``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def residual_into(x, hist, f, alpha0, bdt, r):
    """``r = alpha0 x + hist - bdt f`` (residual (1)).

    Returns ``(||r||_2, scale)`` with ``scale = || |alpha0 x| + |hist| + |bdt f| ||_2``, the
    size of the terms that cancel in ``r``: the round-off in ``r`` is a small multiple of
    ``eps * scale``.
    """
    s = 0.0
    sc = 0.0
    for i in range(x.shape[0]):
        a = alpha0 * x[i]
        c = bdt * f[i]
        v = a + hist[i] - c
        r[i] = v
        s += v * v
        m = abs(a) + abs(hist[i]) + abs(c)
        sc += m * m
    return math.sqrt(s), math.sqrt(sc)


@njit(cache=True)
def csr_matmat_into(indptr, indices, data, b, scale, shift, shift_b, out):
    """``out = shift * shift_b + scale * (M @ b)`` for CSR ``M`` (n x N) and dense ``b``.

    With ``scale = -beta dt``, ``shift = alpha_0`` and ``shift_b = J`` this is the LSPG
    Jacobian (2); with ``scale = 1``, ``shift = 0`` it is the plain product ``(df/dx) J``.
    ``shift_b`` must have the shape of ``out``.
    """
    n, k = out.shape
    for i in range(n):
        for c in range(k):
            out[i, c] = shift * shift_b[i, c]
        for q in range(indptr[i], indptr[i + 1]):
            a = scale * data[q]
            j = indices[q]
            for c in range(k):
                out[i, c] += a * b[j, c]


@njit(cache=True)
def householder_lstsq(a_in, b_in, a, b, x):
    """Least-squares solve ``min ||A X - B||_F`` by Householder QR, without large allocations.

    Parameters
    ----------
    a_in : (m, p) array, m >= p
        The matrix; left unchanged (copied into the workspace ``a``).
    b_in : (m, k) array
        Right-hand sides; left unchanged (copied into ``b``).
    a, b : C-contiguous workspaces of the shapes of ``a_in``, ``b_in``
        On return ``a`` holds ``R`` strictly above its diagonal and the Householder vectors
        on and below it, and ``b`` holds ``Q^T B``.
    x : (p, k) array
        The solution ``X = R^{-1} (Q^T B)[:p]``.

    Returns
    -------
    float
        ``min_k |R_kk| / max_k |R_kk|``, a cheap lower bound on the inverse condition number;
        0 if ``A`` is numerically rank deficient (then ``x`` is not meaningful).

    Notes
    -----
    The loops run over rows in the outer loop (row-major arrays): each reflector is applied
    as ``C -= v (2 / v^T v) (v^T C)`` with ``v^T C`` accumulated row by row.
    """
    m, p = a_in.shape
    kk = b_in.shape[1]
    for i in range(m):
        for j in range(p):
            a[i, j] = a_in[i, j]
        for j in range(kk):
            b[i, j] = b_in[i, j]
    wa = np.empty(p)
    wb = np.empty(kk)
    diag = np.empty(p)
    rmax = 0.0
    rmin = np.inf
    for j in range(p):
        norm = 0.0
        for i in range(j, m):
            norm += a[i, j] * a[i, j]
        norm = math.sqrt(norm)
        if norm == 0.0:
            return 0.0
        alpha = -norm if a[j, j] >= 0.0 else norm  # R_jj; v = a[j:, j] - alpha e_1
        a[j, j] -= alpha
        vv = norm * norm - 2.0 * alpha * (a[j, j] + alpha) + alpha * alpha
        diag[j] = alpha
        if vv > 0.0:
            for c in range(j + 1, p):
                wa[c] = 0.0
            for c in range(kk):
                wb[c] = 0.0
            for i in range(j, m):
                vi = a[i, j]
                for c in range(j + 1, p):
                    wa[c] += vi * a[i, c]
                for c in range(kk):
                    wb[c] += vi * b[i, c]
            f = 2.0 / vv
            for c in range(j + 1, p):
                wa[c] *= f
            for c in range(kk):
                wb[c] *= f
            for i in range(j, m):
                vi = a[i, j]
                for c in range(j + 1, p):
                    a[i, c] -= vi * wa[c]
                for c in range(kk):
                    b[i, c] -= vi * wb[c]
        r = abs(alpha)
        rmax = max(rmax, r)
        rmin = min(rmin, r)
    if rmax == 0.0 or rmin <= 1e-14 * rmax:
        return 0.0
    for c in range(kk):
        for j in range(p - 1, -1, -1):
            s = b[j, c]
            for q in range(j + 1, p):
                s -= a[j, q] * x[q, c]
            x[j, c] = s / diag[j]
    return rmin / rmax


@njit(cache=True)
def normal_equations_lstsq(a_in, b_in, g, x):
    """Least-squares solve ``min ||A X - B||`` by the normal equations and Cholesky.

    ``g`` (p, p) is a workspace (on return: the Cholesky factor ``L`` of ``A^T A`` in its lower
    triangle); ``x`` (p, k) receives the solution. Cheaper than QR for ``m >> p`` but squares
    the condition number. Returns ``min L_kk / max L_kk`` (0 if ``A^T A`` is not numerically
    positive definite).
    """
    m, p = a_in.shape
    kk = b_in.shape[1]
    for i in range(p):
        for j in range(i + 1):
            s = 0.0
            for q in range(m):
                s += a_in[q, i] * a_in[q, j]
            g[i, j] = s
        for c in range(kk):
            s = 0.0
            for q in range(m):
                s += a_in[q, i] * b_in[q, c]
            x[i, c] = s
    lmax = 0.0
    lmin = np.inf
    for j in range(p):
        s = g[j, j]
        for q in range(j):
            s -= g[j, q] * g[j, q]
        if not s > 0.0:
            return 0.0
        d = math.sqrt(s)
        g[j, j] = d
        lmax = max(lmax, d)
        lmin = min(lmin, d)
        for i in range(j + 1, p):
            s = g[i, j]
            for q in range(j):
                s -= g[i, q] * g[j, q]
            g[i, j] = s / d
    if lmin <= 1e-7 * lmax:  # cond(A^T A) > 1e14
        return 0.0
    for c in range(kk):
        for i in range(p):  # forward: L y = A^T b
            s = x[i, c]
            for q in range(i):
                s -= g[i, q] * x[q, c]
            x[i, c] = s / g[i, i]
        for i in range(p - 1, -1, -1):  # backward: L^T x = y
            s = x[i, c]
            for q in range(i + 1, p):
                s -= g[q, i] * x[q, c]
            x[i, c] = s / g[i, i]
    return lmin / lmax


@njit(cache=True)
def axpy_state_into(x_ref, g, x):
    """``x = x_ref + g`` (the trial-manifold state)."""
    for i in range(x.shape[0]):
        x[i] = x_ref[i] + g[i]
