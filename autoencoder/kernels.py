"""Numba kernels of the exported decoder ``g`` and encoder ``h``.

A network is exported to two arrays: ``meta`` (one row of integers per layer, see
:data:`META_FIELDS`) and ``data`` (all weights, float64, concatenated). The kernels evaluate

* ``g(z)`` and its Jacobian ``dg/dz`` together by forward-mode differentiation: the value and
  the ``p`` tangent directions are propagated as one batch of ``p + 1`` rows (Lee & Carlberg
  2019, the Jacobian ``J(x_hat)`` of eqs. (3.6)-(3.8) that the Galerkin and LSPG projections
  need). Dense layers and the channel contraction of every (transposed) convolution are GEMMs
  (``np.dot``, i.e. BLAS); a transposed convolution is a GEMM ``(pixels * (p+1), Cin) @ (Cin,
  k*k*Cout)`` followed by a scatter-add (col2im); activations scale the tangents by their
  derivative at the value. For the usual decoder (dense layers, then transposed convolutions)
  :func:`decode_jacobian_kernel` runs the transposed convolutions on a channel-major batch
  (:func:`_conv_t_t`): per kernel row one BLAS GEMM (``dgemm`` of
  ``scipy.linalg.cython_blas``, :mod:`autoencoder.blas`) restricted to the input rows that
  stay inside the image, whose result is scattered at once, in contiguous vectorized runs.
  :func:`decode_jacobian_parallel` shares the tangent directions out among threads;
* ``h(x)`` (only needed for the initial latent state) by im2col + GEMM.

The decoder's output is an image (``(H, W, C)`` flat, Keras's order); state entry ``i`` is
its pixel ``pix[i]`` unscaled with its channel's bounds, ``g_i = lo_i + rng_i y_{pix_i}``
(:class:`autoencoder.data.Restriction`, :class:`autoencoder.data.Scaling`; the padding of a
padded image is never read). Only some rows of ``g`` and ``J`` (hyper-reduction) are computed
through the decoder's dependency cone by :mod:`autoencoder.restricted`.

Everything here is float64 and independent of TensorFlow. One-dimensional convolutions are
two-dimensional ones with height 1. Reshape and Flatten layers are no-ops: activations are
stored flat in Keras's row-major ``(H, W, C)`` order.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange

from .blas import dgemm

# The threads of decode_jacobian_parallel (numba's OpenMP layer) sleep while they wait instead
# of spinning: a spinning thread on a machine whose cores are busy loses its time slice to the
# other processes and every parallel call then waits for it to be scheduled again (measured
# under load 7 on 2 cores: 3-17 ms per call instead of 0.8-1.1 ms). Read by OpenMP when it is
# loaded (at the first parallel call); a value set by the user is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Layer kinds (``meta[:, 0]``). ``LOCAL`` is the locally connected output layer of
#: :mod:`autoencoder.local_output` (weights ``(h_out * w_out * c_out, kh * kw * c_in)``, one
#: bias per output entry).
DENSE, CONV_T, CONV, ACTIVATION, LOCAL = 0, 1, 2, 3, 4
#: Activation codes (``meta[:, 1]``).
ACTIVATION_CODES = {"linear": 0, "elu": 1, "relu": 2, "tanh": 3, "sigmoid": 4, "softplus": 5,
                    "silu": 6}
#: Columns of ``meta``.
META_FIELDS = ("kind", "act", "h_in", "w_in", "c_in", "h_out", "w_out", "c_out", "kh", "kw",
               "sh", "sw", "pad_h", "pad_w", "w_off", "b_off")
N_META = len(META_FIELDS)


@njit(cache=True, inline="always")
def _sigmoid(a):
    """The logistic function, without overflow for either sign of ``a``."""
    if a >= 0.0:
        return 1.0 / (1.0 + np.exp(-a))
    e = np.exp(a)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def _act1(a, act):
    """Activation ``act`` at ``a`` and its derivative there."""
    if act == 1:
        if a > 0.0:
            return a, 1.0
        y = np.expm1(a)
        return y, y + 1.0
    if act == 2:
        if a > 0.0:
            return a, 1.0
        return 0.0, 0.0
    if act == 3:
        y = np.tanh(a)
        return y, 1.0 - y * y
    if act == 4:
        y = _sigmoid(a)
        return y, y * (1.0 - y)
    if act == 5:
        return np.logaddexp(0.0, a), _sigmoid(a)   # softplus' = sigmoid
    if act == 6:  # SiLU a * sigmoid(a), derivative s + a s (1 - s)
        sg = _sigmoid(a)
        return a * sg, sg * (1.0 + a * (1.0 - sg))
    return a, 1.0


@njit(cache=True)
def _activate(X, act, tangents):
    """Apply activation ``act`` in place to the values (row 0 if ``tangents``, else every row)
    and multiply the tangent rows by its derivative at the value (forward mode)."""
    if act == 0:
        return
    B, F = X.shape
    n_val = 1 if tangents else B
    d = np.empty(F)
    for r in range(n_val):
        for f in range(F):
            X[r, f], d[f] = _act1(X[r, f], act)
    if tangents:
        for b in range(1, B):
            for f in range(F):
                X[b, f] *= d[f]


@njit(cache=True)
def _add_bias(X, bias, tangents, c_out):
    B, F = X.shape
    n_val = 1 if tangents else B
    for r in range(n_val):
        for q in range(F // c_out):
            for o in range(c_out):
                X[r, q * c_out + o] += bias[o]


@njit(cache=True)
def _local_patch(m, X, y, x, P):
    """Gather output pixel ``(y, x)``'s window of the locally connected layer ``m`` from the
    batch ``X`` (B, h_in * w_in * c_in) into ``P`` (B, kh * kw * c_in); cells outside the
    grid are 0 (:class:`autoencoder.local_output.LocalOutput`)."""
    h_in, w_in, c_in = m[2], m[3], m[4]
    kh, kw, sh, sw, ph, pw = m[8], m[9], m[10], m[11], m[12], m[13]
    for a in range(kh):
        iy = y // sh + a - ph
        for b in range(kw):
            ix = x // sw + b - pw
            t0 = (a * kw + b) * c_in
            inside = 0 <= iy < h_in and 0 <= ix < w_in
            s0 = (iy * w_in + ix) * c_in
            for r in range(X.shape[0]):
                for c in range(c_in):
                    P[r, t0 + c] = X[r, s0 + c] if inside else 0.0


@njit(cache=True, inline="always")
def _local_pixel(P, W, bias, e0, c_out, n_val, Y):
    """The ``c_out`` entries ``e0 ..`` of one pixel of a locally connected layer for every
    batch row: ``Y[r, e] = bias[e] (rows r < n_val, the values) + P[r] . W[e]``, with ``P``
    (B, K) the pixel's gathered window and ``W`` the layer's weight rows (shared by the full
    layer, :func:`_local`, and its dependency cone, :mod:`autoencoder.restricted`)."""
    K = P.shape[1]
    for o in range(c_out):
        e = e0 + o
        for r in range(P.shape[0]):
            acc = bias[e] if r < n_val else 0.0
            for k in range(K):
                acc += P[r, k] * W[e, k]
            Y[r, e] = acc


@njit(cache=True)
def _local(m, data, X, tangents):
    """The locally connected layer ``m`` (bias included): every output entry ``e`` is its own
    weight row ``W[e]`` (``kh * kw * c_in``) times its pixel's window of the input."""
    B = X.shape[0]
    h_out, w_out, c_out = m[5], m[6], m[7]
    K = m[8] * m[9] * m[4]
    W = data[m[14]:m[14] + h_out * w_out * c_out * K].reshape((h_out * w_out * c_out, K))
    bias = data[m[15]:m[15] + h_out * w_out * c_out]
    n_val = 1 if tangents else B
    P = np.empty((B, K))
    Y = np.empty((B, h_out * w_out * c_out))
    for y in range(h_out):
        for x in range(w_out):
            _local_patch(m, X, y, x, P)
            _local_pixel(P, W, bias, (y * w_out + x) * c_out, c_out, n_val, Y)
    return Y


@njit(cache=True)
def _layer(m, data, X, tangents):
    """Evaluate one layer (meta row ``m``) on the batch ``X`` of shape (B, features)."""
    kind = m[0]
    B = X.shape[0]
    h_in, w_in, c_in, h_out, w_out, c_out = m[2], m[3], m[4], m[5], m[6], m[7]
    kh, kw, sh, sw, ph, pw, w_off, b_off = m[8], m[9], m[10], m[11], m[12], m[13], m[14], m[15]
    if kind == ACTIVATION:
        Y = X.copy()
    elif kind == LOCAL:
        Y = _local(m, data, X, tangents)
    elif kind == DENSE:
        W = data[w_off:w_off + c_in * c_out].reshape((c_in, c_out))
        Y = np.dot(X, W)
        _add_bias(Y, data[b_off:b_off + c_out], tangents, c_out)
    elif kind == CONV_T:
        ncol = kh * kw * c_out
        W = data[w_off:w_off + c_in * ncol].reshape((c_in, ncol))
        cols = np.dot(X.reshape((B * h_in * w_in, c_in)), W)
        Y = np.zeros((B, h_out * w_out * c_out))
        # col2im: for a fixed input pixel and kernel row a, the valid kernel columns b write
        # one contiguous run of (b, o) entries of an output row: one axpy-like loop
        for bb in range(B):
            Yb = Y[bb]
            for i in range(h_in):
                for a in range(kh):
                    y = i * sh + a - ph
                    if y < 0 or y >= h_out:
                        continue
                    for j in range(w_in):
                        cr = cols[(bb * h_in + i) * w_in + j]
                        x0 = j * sw - pw
                        b_lo = max(0, -x0)
                        b_hi = min(kw, w_out - x0)
                        if b_hi <= b_lo:
                            continue
                        y0 = (y * w_out + x0 + b_lo) * c_out
                        k0 = (a * kw + b_lo) * c_out
                        for t in range((b_hi - b_lo) * c_out):
                            Yb[y0 + t] += cr[k0 + t]
        _add_bias(Y, data[b_off:b_off + c_out], tangents, c_out)
    else:  # CONV: im2col + GEMM
        nk = kh * kw * c_in
        W = data[w_off:w_off + nk * c_out].reshape((nk, c_out))
        cols = np.zeros((B * h_out * w_out, nk))
        for bb in range(B):
            for y in range(h_out):
                for a in range(kh):
                    iy = y * sh + a - ph
                    if iy < 0 or iy >= h_in:
                        continue
                    for x in range(w_out):
                        r = (bb * h_out + y) * w_out + x
                        for b in range(kw):
                            ix = x * sw + b - pw
                            if ix < 0 or ix >= w_in:
                                continue
                            s0 = (iy * w_in + ix) * c_in
                            k0 = (a * kw + b) * c_in
                            for c in range(c_in):
                                cols[r, k0 + c] = X[bb, s0 + c]
        Y = np.dot(cols, W).reshape((B, h_out * w_out * c_out))
        _add_bias(Y, data[b_off:b_off + c_out], tangents, c_out)
    _activate(Y, m[1], tangents)
    return Y


@njit(cache=True)
def _bias_activate_t(Y, bias, act, c_out, P, B):
    """Channel-major batch ``Y`` (see :func:`_conv_t_t`): add ``bias`` to the values, apply
    ``act`` to them and scale the tangents by its derivative."""
    for o in range(c_out):
        bo = bias[o] if bias.size else 0.0
        for q in range(P):
            base = (o * P + q) * B
            y, d = _act1(Y[base] + bo, act)
            Y[base] = y
            if d != 1.0:
                for t in range(np.uint64(1), np.uint64(B)):
                    Y[np.uint64(base) + t] *= d


@njit(cache=True, inline="always")
def _axpy1(y, y0, x, x0, n):
    """``y[y0:y0 + n] += x[x0:x0 + n]`` (unsigned indices: no wraparound checks, so that the
    loop vectorizes)."""
    for t in range(np.uint64(n)):
        y[np.uint64(y0) + t] += x[np.uint64(x0) + t]


@njit(cache=True)
def _conv_t_t(m, data, X, B):
    """Transposed convolution ``m`` (bias and activation included) on a channel-major batch:
    ``X[(c * pixels + q) * B + b]`` is channel ``c`` of pixel ``q`` in batch row ``b`` (row 0
    the value, rows 1.. the tangents); returns the output in the same layout.

    For each kernel row ``a``: one GEMM, restricted to the input rows ``i`` whose outputs ``i
    * sh + a - ph`` lie inside the image (no products that col2im would discard), writes
    ``cols[l, (b, o)]`` (column-major, ``l = q * B + b``), which the scatter (col2im) then
    adds to the output in runs of ``w * B`` (or ``B``) contiguous entries.
    """
    h_in, w_in, c_in, h_out, w_out, c_out = m[2], m[3], m[4], m[5], m[6], m[7]
    kh, kw, sh, sw, ph, pw, w_off, b_off = m[8], m[9], m[10], m[11], m[12], m[13], m[14], m[15]
    ncol = kh * kw * c_out
    nb = kw * c_out  # columns of one kernel row
    L = h_in * w_in * B
    P_out = h_out * w_out
    cols = np.empty(L * nb)  # one kernel row at a time: stays in cache for the scatter
    # scatter into x-parity-split rows (pixel (y, x) at y * w_out + (x % sw) * wq + x // sw)
    # so that the input pixels j of a kernel tap land on a contiguous run; the bias and
    # activation pass below restores Keras's order
    split = w_out % sw == 0
    wq = w_out // sw if split else w_out
    Y = np.zeros(c_out * P_out * B)
    for a in range(kh):
        i_lo = max(0, -((a - ph) // sh))  # ceil((ph - a) / sh)
        i_hi = min(h_in, (h_out - 1 + ph - a) // sh + 1)
        if i_hi <= i_lo:
            continue
        l0 = i_lo * w_in * B
        dgemm(ord('n'), ord('t'), (i_hi - i_lo) * w_in * B, nb, c_in, X, l0, L,
              data, w_off + a * nb, ncol, 0.0, cols, l0, L)
        for b in range(kw):
            j_lo = max(0, -((b - pw) // sw))
            j_hi = min(w_in, (w_out - 1 + pw - b) // sw + 1)
            if j_hi <= j_lo:
                continue
            x0 = j_lo * sw + b - pw
            for o in range(c_out):
                s_col = L * (b * c_out + o)
                for i in range(i_lo, i_hi):
                    y = i * sh + a - ph
                    src = s_col + (i * w_in + j_lo) * B
                    if split:
                        dst = (o * P_out + y * w_out + (x0 % sw) * wq + x0 // sw) * B
                        _axpy1(Y, dst, cols, src, (j_hi - j_lo) * B)
                    else:
                        dst = (o * P_out + y * w_out + x0) * B
                        for j in range(j_hi - j_lo):
                            _axpy1(Y, dst + j * sw * B, cols, src + j * B, B)
    if not split or sw == 1:
        _bias_activate_t(Y, data[b_off:b_off + c_out], m[1], c_out, P_out, B)
        return Y
    act = m[1]
    Z = np.empty(c_out * P_out * B)
    for o in range(c_out):
        bo = data[b_off + o]
        for y in range(h_out):
            row = o * P_out + y * w_out
            for par in range(sw):  # x = xq * sw + par (no integer division per pixel)
                for xq in range(wq):
                    s = (row + par * wq + xq) * B
                    d = (row + xq * sw + par) * B
                    v, dv = _act1(Y[s] + bo, act)
                    Z[d] = v
                    for t in range(np.uint64(1), np.uint64(B)):
                        Z[np.uint64(d) + t] = Y[np.uint64(s) + t] * dv
    return Z


@njit(cache=True)
def _channel_major_ok(meta):
    """Whether the decoder is dense/activation layers, then transposed convolutions and
    activations only (the layers :func:`_conv_t_t` handles; not a locally connected one)."""
    seen = False
    for l in range(meta.shape[0]):
        k = meta[l, 0]
        if k == CONV or k == LOCAL:
            return False
        if k == CONV_T:
            seen = True
        elif k == DENSE and seen:
            return False
    return seen


@njit(cache=True)
def forward(meta, data, X, n_layers, tangents):
    """Evaluate layers ``0 .. n_layers-1`` on the batch ``X`` (B, n_in)."""
    for l in range(n_layers):
        X = _layer(meta[l], data, X, tangents)
    return X


@njit(cache=True)
def _seed(z, j0, j1):
    """The forward-mode batch of the value and the tangent directions ``j0 .. j1-1``: row 0
    is ``z``, row ``1 + t`` the unit vector ``e_{j0 + t}``."""
    p = z.size
    X = np.zeros((1 + j1 - j0, p))
    for k in range(p):
        X[0, k] = z[k]
    for t in range(j1 - j0):
        X[1 + t, j0 + t] = 1.0
    return X


@njit(cache=True)
def decode_kernel(meta, data, z, lo, rng, pix):
    """``g(z)`` in state units: decoder, then ``g_i = lo_i + rng_i y_{pix_i}`` (unscaling and
    prolongation; ``lo``, ``rng``, ``pix`` of shape (N,))."""
    X = forward(meta, data, z.reshape((1, z.size)).copy(), meta.shape[0], False)
    n = pix.size
    g = np.empty(n)
    for k in range(n):
        g[k] = lo[k] + rng[k] * X[0, pix[k]]
    return g


@njit(cache=True)
def _decode_directions(meta, data, z, lo, rng, pix, j0, j1, g, J):
    """Columns ``j0 .. j1-1`` of ``J = dg/dz`` (into ``J``) and, if ``g.size``, ``g(z)``
    (into ``g``), by one forward-mode pass of the value and those ``j1 - j0`` directions;
    state row ``k`` is image entry ``pix[k]`` unscaled by ``lo[k]``, ``rng[k]``."""
    B = 1 + j1 - j0
    n = pix.size
    write_g = g.size > 0
    if not _channel_major_ok(meta):
        X = forward(meta, data, _seed(z, j0, j1), meta.shape[0], True)
        for k in range(n):
            q = pix[k]
            if write_g:
                g[k] = lo[k] + rng[k] * X[0, q]
            for j in range(j0, j1):
                J[k, j] = rng[k] * X[j - j0 + 1, q]
        return
    l = 0
    while meta[l, 0] != CONV_T:
        l += 1
    Xr = forward(meta, data, _seed(z, j0, j1), l, True)  # (B, features), Keras (H, W, C)
    c = meta[l, 4]
    P = meta[l, 2] * meta[l, 3]
    X = np.empty(c * P * B)
    for q in range(P):
        for ch in range(c):
            for bb in range(B):
                X[(ch * P + q) * B + bb] = Xr[bb, q * c + ch]
    for t in range(l, meta.shape[0]):
        m = meta[t]
        if m[0] == CONV_T:
            X = _conv_t_t(m, data, X, B)
            c = m[7]
            P = m[5] * m[6]
        else:  # ACTIVATION
            _bias_activate_t(X, data[:0], m[1], c, P, B)
    for k in range(n):  # image entry pix[k] = site * c + channel, channel-major in X
        site = pix[k] // c
        base = ((pix[k] - site * c) * P + site) * B
        rk = rng[k]
        if write_g:
            g[k] = lo[k] + rk * X[base]
        for j in range(j0, j1):
            J[k, j] = rk * X[base + 1 + j - j0]


@njit(cache=True)
def decode_jacobian_kernel(meta, data, z, lo, rng, pix):
    """``g(z)`` (N,) and ``J = dg/dz`` (N, p) in one forward-mode pass (one thread)."""
    g = np.empty(pix.size)
    J = np.empty((pix.size, z.size))
    _decode_directions(meta, data, z, lo, rng, pix, 0, z.size, g, J)
    return g, J


@njit(cache=True, parallel=True)
def decode_jacobian_parallel(meta, data, z, lo, rng, pix, n_threads):
    """:func:`decode_jacobian_kernel` on up to ``n_threads`` threads.

    Forward mode propagates the ``p`` tangent directions independently of each other, given
    the value (the activations' derivatives are taken at it). Each thread takes a contiguous
    share of the directions and computes the value itself, so the threads never wait for one
    another: ``1 + p / n_threads`` batch rows each instead of ``1 + p``. The first share also
    writes ``g``; each share writes its rows of ``J^T`` (no cache line written by two
    threads), transposed at the end. The results agree with the one-thread kernel to
    round-off (the GEMMs see batches of another size; bit-identical with OpenBLAS in the
    tests).
    """
    p = z.size
    g = np.empty(pix.size)
    Jt = np.empty((p, pix.size))
    n_chunks = max(1, min(n_threads, p))
    for c in prange(n_chunks):
        _decode_directions(meta, data, z, lo, rng, pix, c * p // n_chunks,
                           (c + 1) * p // n_chunks, g if c == 0 else g[:0], Jt.T)
    return g, np.ascontiguousarray(Jt.T)


@njit(cache=True)
def encode_kernel(meta, data, X):
    """Encoder on a batch of scaled, restricted, flattened inputs ``X`` (B, N) -> (B, p)."""
    return forward(meta, data, X, meta.shape[0], False)
