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


#: Machine epsilon of float64.
_EPS = 2.220446049250313e-16


@njit(cache=True)
def _inverse_condition(t, diag, lower, y):
    """``1 / (||T||_F ||T^{-1}||_F)`` of the p x p triangular matrix ``T`` (0 if it overflows).

    ``T`` is upper triangular with the diagonal ``diag`` and the entries ``t[i, q]`` (``q > i``)
    above it, or, with ``lower``, the transpose of the lower triangular matrix with diagonal
    ``diag`` and entries ``t[q, i]`` (``q > i``) below it (``||T^{-1}||_F`` is the same for
    both). ``y`` (p,) is a workspace.

    Since ``s_max <= ||T||_F <= sqrt(p) s_max`` and ``1 / s_min <= ||T^{-1}||_F <= sqrt(p) /
    s_min`` for the extreme singular values ``s_max``, ``s_min`` of ``T``, the result ``e``
    bounds the inverse condition number ``1 / cond_2(T) = s_min / s_max`` from below within
    a factor ``p`` (by ``||M||_2 <= ||M||_F <= sqrt(p) ||M||_2``; Golub & Van Loan, "Matrix
    Computations", section 2.3):

        1 / (p cond_2(T))  <=  e  <=  1 / cond_2(T)                                          (3)

    ``T^{-1}`` is formed column by column (``T y = e_j``, ``p^3 / 6`` flops).
    """
    p = diag.shape[0]
    nt = 0.0
    ni = 0.0
    for j in range(p):
        nt += diag[j] * diag[j]
        for q in range(j + 1, p):
            v = t[q, j] if lower else t[j, q]
            nt += v * v
        # column j of T^{-1}: y[j] = 1 / T_jj, y[i] = -(sum_{q=i+1..j} T_iq y[q]) / T_ii
        y[j] = 1.0 / diag[j]
        ni += y[j] * y[j]
        for i in range(j - 1, -1, -1):
            s = 0.0
            for q in range(i + 1, j + 1):
                s += (t[q, i] if lower else t[i, q]) * y[q]
            y[i] = -s / diag[i]
            ni += y[i] * y[i]
    e = 1.0 / (math.sqrt(nt) * math.sqrt(ni))
    return e if math.isfinite(e) else 0.0


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
        ``e = 1 / (||R||_F ||R^{-1}||_F)``, a lower bound of the inverse condition number
        ``1 / cond_2(A)`` within a factor ``p`` (bound (3)); 0 if ``A`` is numerically rank
        deficient, ``e <= max(m, p) eps`` (then ``x`` is not meaningful; fall back to an SVD
        least-squares solve). Every ``A`` that ``numpy.linalg.lstsq``'s default cutoff
        ``rcond = max(m, p) eps`` treats as rank deficient gets 0.

    Notes
    -----
    The loops run over rows in the outer loop (row-major arrays): each reflector is applied
    as ``C -= v (2 / v^T v) (v^T C)`` with ``v^T C`` accumulated row by row. The rank test
    costs ``O(p^3)`` flops against the factorization's ``2 m p^2``; only ``O(p + k)`` is
    allocated.

    ``min |R_kk| / max |R_kk|`` is not such a bound (it only bounds ``1 / cond_2`` from
    above): for ``A = [[1, 1e8], [0, 1], [0, 0]]`` it is 1 while ``1 / cond_2(A) = 1e-16``.
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
    e = _inverse_condition(a, diag, False, wa)
    if e <= max(m, p) * _EPS:
        return 0.0
    for c in range(kk):
        for j in range(p - 1, -1, -1):
            s = b[j, c]
            for q in range(j + 1, p):
                s -= a[j, q] * x[q, c]
            x[j, c] = s / diag[j]
    return e


@njit(cache=True)
def normal_equations_lstsq(a_in, b_in, g, x):
    """Least-squares solve ``min ||A X - B||`` by the normal equations and Cholesky.

    ``g`` (p, p) is a workspace (on return: the Cholesky factor ``L`` of ``A^T A`` in its lower
    triangle); ``x`` (p, k) receives the solution. Cheaper than QR for ``m >> p`` but squares
    the condition number.

    Returns ``e = 1 / (||L||_F ||L^{-1}||_F)``, a lower bound of ``1 / cond_2(A)`` within a
    factor ``p`` (bound (3) with ``L^T`` in place of ``R``), or 0 (``x`` not meaningful) if
    ``A^T A`` is not numerically positive definite or ``e <= sqrt(max(m, p) eps)``: beyond
    ``cond_2(A) ~ 1 / sqrt(eps)`` the rounding of ``A^T A`` hides the true condition number,
    and ``L`` no longer reveals it; below that bound the solution's relative error is at
    most about ``cond_2(A)^2 eps <= 1 / max(m, p)``.
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
    if not _cholesky(g):
        return 0.0
    diag = np.empty(p)
    for j in range(p):
        diag[j] = g[j, j]
    e = _inverse_condition(g, diag, True, np.empty(p))
    if e <= math.sqrt(max(m, p) * _EPS):
        return 0.0
    for c in range(kk):
        _cholesky_solve(g, x[:, c])
    return e


@njit(cache=True)
def _cholesky(g):
    """Cholesky factor ``L`` of the symmetric matrix whose lower triangle ``g`` holds, in
    place (the lower triangle becomes ``L``); False if it is not numerically positive
    definite."""
    p = g.shape[0]
    for j in range(p):
        s = g[j, j]
        for q in range(j):
            s -= g[j, q] * g[j, q]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        g[j, j] = d
        for i in range(j + 1, p):
            s = g[i, j]
            for q in range(j):
                s -= g[i, q] * g[j, q]
            g[i, j] = s / d
    return True


@njit(cache=True)
def _cholesky_solve(g, x):
    """Solve ``L L^T x = b`` in place (``x`` holds ``b``) with the factor of :func:`_cholesky`."""
    p = g.shape[0]
    for i in range(p):  # forward: L y = b
        s = x[i]
        for q in range(i):
            s -= g[i, q] * x[q]
        x[i] = s / g[i, i]
    for i in range(p - 1, -1, -1):  # backward: L^T x = y
        s = x[i]
        for q in range(i + 1, p):
            s -= g[q, i] * x[q]
        x[i] = s / g[i, i]


@njit(cache=True)
def axpy_state_into(x_ref, g, x):
    """``x = x_ref + g`` (the trial-manifold state)."""
    for i in range(x.shape[0]):
        x[i] = x_ref[i] + g[i]


@njit(cache=True)
def point_into(x_ref, g, jac, row_pos, x, x_rows, jac_rows):
    """The trial-manifold point ``x = x_ref + g`` and, when the residual is sampled
    (``row_pos`` non-empty: the positions of the residual rows in ``x``), its rows
    ``x_rows = x[row_pos]`` and ``jac_rows = J[row_pos]``."""
    for i in range(x.shape[0]):
        x[i] = x_ref[i] + g[i]
    p = jac.shape[1]
    for k in range(row_pos.shape[0]):
        i = row_pos[k]
        x_rows[k] = x[i]
        for j in range(p):
            jac_rows[k, j] = jac[i, j]


@njit(cache=True)
def lspg_system_into(x_rows, hist, f, alpha0, bdt, indptr, indices, data, jac, jac_rows,
                     r, a):
    """The LSPG residual ``r = alpha0 x + hist - bdt f`` (1) on the residual rows and its
    Gauss–Newton Jacobian ``A = alpha0 J_rows - bdt (df/dx) J`` (2); returns ``(||r||,
    scale)`` as :func:`residual_into`."""
    rn, scale = residual_into(x_rows, hist, f, alpha0, bdt, r)
    csr_matmat_into(indptr, indices, data, jac, -bdt, alpha0, jac_rows, a)
    return rn, scale


@njit(cache=True)
def gauss_newton_into(a, r, wa, wb, d, gram, use_qr, step, ad, grad):
    """The Gauss–Newton step ``step = argmin_s ||A s + r||`` (Householder QR or normal
    equations), ``ad = A step`` and ``grad = A^T r``.

    Returns the solver's inverse-condition bound (0: numerically rank deficient; then
    ``step`` and ``ad`` are not set) and ``||A step||`` (``= ||Q^T r||``).
    """
    m, p = a.shape
    for j in range(p):
        s = 0.0
        for i in range(m):
            s += a[i, j] * r[i, 0]
        grad[j] = s
    c = householder_lstsq(a, r, wa, wb, d) if use_qr else normal_equations_lstsq(a, r, gram, d)
    if not c > 0.0:
        return 0.0, 0.0
    for j in range(p):
        step[j] = -d[j, 0]
    nrm = 0.0
    for i in range(m):
        s = 0.0
        for j in range(p):
            s += a[i, j] * step[j]
        ad[i] = s
        nrm += s * s
    return c, math.sqrt(nrm)


@njit(cache=True)
def secant_update(secant, z, z_old, a_old, r, grad, grad_old):
    """Dennis–Gay–Welsch update of the secant approximation ``S`` (in place) of the
    second-order term Gauss–Newton neglects, with the step ``s = z - z_old``, ``y = grad -
    grad_old`` and ``y# = grad - A_old^T r`` (secant condition ``S s = y#``), sized as in
    NL2SOL so that ``S`` does not overshoot the observed curvature (Dennis & Schnabel 1983,
    section 10.3). No update when ``y . s <= 0``."""
    p = z.shape[0]
    m = r.shape[0]
    sv = np.empty(p)
    y = np.empty(p)
    ys = 0.0
    for j in range(p):
        sv[j] = z[j] - z_old[j]
        y[j] = grad[j] - grad_old[j]
        ys += y[j] * sv[j]
    if not ys > 0.0:
        return
    ysh = np.empty(p)
    for j in range(p):
        s = 0.0
        for i in range(m):
            s += a_old[i, j] * r[i, 0]
        ysh[j] = grad[j] - s
    ssv = np.empty(p)
    sss = 0.0
    for i in range(p):
        s = 0.0
        for j in range(p):
            s += secant[i, j] * sv[j]
        ssv[i] = s
        sss += sv[i] * s
    if sss > 0.0:
        svy = 0.0
        for j in range(p):
            svy += sv[j] * ysh[j]
        f = min(1.0, abs(svy) / sss)
        for i in range(p):
            ssv[i] *= f
            for j in range(p):
                secant[i, j] *= f
    w = np.empty(p)
    wsv = 0.0
    for j in range(p):
        w[j] = ysh[j] - ssv[j]
        wsv += w[j] * sv[j]
    for i in range(p):
        for j in range(p):
            secant[i, j] += (w[i] * y[j] + y[i] * w[j]) / ys - wsv * y[i] * y[j] / (ys * ys)


@njit(cache=True)
def secant_step_into(a, secant, grad, qn):
    """The structured quasi-Newton step ``(A^T A + S) qn = -grad`` by Cholesky; returns the
    predicted decrease ``-grad . qn``, or 0 if ``A^T A + S`` is not positive definite or the
    step is not a descent direction (then the Gauss–Newton step is used)."""
    m, p = a.shape
    h = np.empty((p, p))
    for i in range(p):
        for j in range(i + 1):
            s = 0.0
            for q in range(m):
                s += a[q, i] * a[q, j]
            h[i, j] = s + 0.5 * (secant[i, j] + secant[j, i])
    if not _cholesky(h):
        return 0.0
    for i in range(p):
        qn[i] = -grad[i]
    _cholesky_solve(h, qn)
    pred = 0.0
    for j in range(p):
        if not math.isfinite(qn[j]):
            return 0.0
        pred -= grad[j] * qn[j]
    return pred if pred > 0.0 else 0.0
