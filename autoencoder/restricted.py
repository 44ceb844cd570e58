"""The decoder and its Jacobian at a few output entries, through their dependency cone.

Hyper-reduced ROMs need ``g(z)`` and ``J(z) = dg/dz`` only at the state rows of a sample
mesh's stencil. An output pixel of a transposed convolution with kernel ``k`` and stride ``s``
depends on about ``(k/s)^2`` input pixels, so going back from the requested outputs through the
decoder gives, for every layer, the (small) set of its outputs that matter: the *dependency
cone*. :func:`cone_plan` computes it once per sample mesh; :func:`cone_decode` then evaluates
each layer only on its part of the cone, in forward mode (value plus ``p`` tangents, as the full
kernels of :mod:`autoencoder.kernels`):

- a dense layer computes only the needed output units (a GEMM with the needed columns of its
  weight matrix);
- a (transposed) convolution computes only the needed output pixels, all channels at each:
  the pixels are grouped by the set of kernel taps that can reach them (for a transposed
  convolution of stride ``s``, by the output's parity class modulo ``s``), the inputs of each
  group gathered into a patch matrix (im2col restricted to the group; taps that fall outside the
  input contribute zeros), and the group computed by one BLAS GEMM
  ``(pixels * B, taps * c_in) @ (taps * c_in, c_out)``;
- a locally connected layer (:class:`autoencoder.local_output.LocalOutput`) computes only the
  needed output entries, each from its own weight row and its pixel's gathered window;
- activations act elementwise on the needed entries.

The plan holds the gathered weights, so an evaluation reads nothing of the full output size and
costs what :func:`cone_cost` reports, a number that depends on the requested rows and the
architecture, not on how many pixels the image has beyond the cone. The values equal the full
decoder's rows to round-off (the same products, summed in another order).

Layers and weights are those of :mod:`autoencoder.export` (``meta``, ``data``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .kernels import ACTIVATION, CONV, CONV_T, DENSE, LOCAL, _act1, _local_pixel

#: Fields of a plan's per-layer record (``ConePlan.layers``).
REC = ("kind", "act", "c_in", "c_out", "n_in", "n_out", "n_cls", "cls_off", "w_off", "b_off")
#: Fields of a plan's per-group record (``ConePlan.groups``) of a convolution layer.
GRP = ("n_sites", "n_taps", "site_off", "gather_off", "w_off")


@dataclass(frozen=True)
class ConePlan:
    """Everything :func:`cone_decode` needs for one set of requested outputs.

    Attributes
    ----------
    layers : int64 (n_layers, len(REC))
    groups : int64 (n_groups, len(GRP))
    index : int64
        Output sites of each group (compact positions) and gather tables (compact input
        positions, -1 for a zero).
    weights : float64
        The dense layers' needed columns, the groups' stacked tap weights, the biases.
    out_pos : int64 (n_requested,)
        Position of each requested output in the last layer's compact output.
    macs : int
        Multiply-adds of one evaluation per batch row (value or tangent).
    full_macs : int
        The same for the full decoder.
    """

    layers: np.ndarray
    groups: np.ndarray
    index: np.ndarray
    weights: np.ndarray
    out_pos: np.ndarray
    macs: int
    full_macs: int
    cone_sizes: tuple[int, ...]


def _spatial_in_needed(m: np.ndarray, need_sites: np.ndarray) -> np.ndarray:
    """Input sites of the (transposed) convolution or locally connected layer ``m`` that the
    output ``need_sites`` read."""
    iy, ix = _input_cells(m, need_sites)
    sites = (iy[:, None, :] * m[3] + ix[None, :, :])
    ok = (iy[:, None, :] >= 0) & (ix[None, :, :] >= 0)
    return np.unique(sites[ok])


def _input_cells(m: np.ndarray, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input rows ``iy`` (kh, n) and columns ``ix`` (kw, n) that kernel taps ``a``, ``b`` of
    the output ``sites`` of layer ``m`` read (-1: none, outside the input)."""
    kind = m[0]
    h_in, w_in, w_out = m[2], m[3], m[6]
    kh, kw, sh, sw, ph, pw = m[8], m[9], m[10], m[11], m[12], m[13]
    ys, xs = sites // w_out, sites % w_out
    a = np.arange(kh)[:, None]
    b = np.arange(kw)[:, None]
    if kind == LOCAL:    # y // sh + a - ph
        iy = ys[None, :] // sh + a - ph
        ix = xs[None, :] // sw + b - pw
    elif kind == CONV_T:   # y = i * sh + a - ph
        ty = (ys[None, :] + ph - a)          # (kh, n)
        tx = (xs[None, :] + pw - b)
        iy = np.where((ty >= 0) & (ty % sh == 0), ty // sh, -1)
        ix = np.where((tx >= 0) & (tx % sw == 0), tx // sw, -1)
    else:                # CONV: input (y * sh + a - ph, x * sw + b - pw)
        iy = ys[None, :] * sh + a - ph
        ix = xs[None, :] * sw + b - pw
    return (np.where((iy >= 0) & (iy < h_in), iy, -1),
            np.where((ix >= 0) & (ix < w_in), ix, -1))


def _local_gather(m: np.ndarray, out_sites: np.ndarray, in_sites: np.ndarray) -> np.ndarray:
    """``gather[s, a * kw + b]``: compact position (in ``in_sites``) of the input cell that
    tap ``(a, b)`` of the locally connected layer ``m``'s output site ``s`` reads, or -1."""
    pos_in = np.full(m[2] * m[3], -1, dtype=np.int64)
    pos_in[in_sites] = np.arange(in_sites.size)
    iy, ix = _input_cells(m, out_sites)                     # (kh, n), (kw, n)
    ok = (iy[:, None, :] >= 0) & (ix[None, :, :] >= 0)      # (kh, kw, n)
    cell = np.where(ok, pos_in[np.where(ok, iy[:, None, :] * m[3] + ix[None, :, :], 0)], -1)
    return cell.reshape(m[8] * m[9], -1).T.copy()


def _conv_groups(m: np.ndarray, out_sites: np.ndarray, in_sites: np.ndarray, data: np.ndarray
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Groups of output sites sharing one tap set: ``(site positions, gather table, W)``.

    ``gather[s, t]`` is the compact position (in ``in_sites``) of the input that tap ``t``
    of site ``s`` reads, or -1; ``W`` stacks the taps' ``(c_in, c_out)`` weight blocks.
    """
    kind = m[0]
    c_in, w_out, c_out = m[4], m[6], m[7]
    w_in = m[3]
    kh, kw, sh, sw, ph, pw, w_off = m[8], m[9], m[10], m[11], m[12], m[13], m[14]
    pos_in = np.full(m[2] * w_in, -1, dtype=np.int64)
    pos_in[in_sites] = np.arange(in_sites.size)
    ys, xs = out_sites // w_out, out_sites % w_out
    if kind == CONV_T:
        W = data[w_off:w_off + c_in * kh * kw * c_out].reshape(c_in, kh, kw, c_out)
        cls = (ys % sh) * sw + (xs % sw)
        n_cls = sh * sw
    else:
        W = data[w_off:w_off + kh * kw * c_in * c_out].reshape(kh, kw, c_in, c_out)
        cls = np.zeros(out_sites.size, dtype=np.int64)
        n_cls = 1
    groups = []
    for c in range(n_cls):
        sel = np.flatnonzero(cls == c)
        if sel.size == 0:
            continue
        if kind == CONV_T:
            py, px = c // sw, c % sw
            taps = [(a, b) for a in range(kh) for b in range(kw)
                    if (py + ph - a) % sh == 0 and (px + pw - b) % sw == 0]
        else:
            taps = [(a, b) for a in range(kh) for b in range(kw)]
        if not taps:  # no kernel tap reaches these outputs (kernel smaller than the stride)
            continue
        gather = np.full((sel.size, len(taps)), -1, dtype=np.int64)
        blocks = []
        for t, (a, b) in enumerate(taps):
            y, x = ys[sel], xs[sel]
            if kind == CONV_T:
                iy, ix = (y + ph - a) // sh, (x + pw - b) // sw
            else:
                iy, ix = y * sh + a - ph, x * sw + b - pw
            ok = (iy >= 0) & (iy < m[2]) & (ix >= 0) & (ix < w_in)
            gather[ok, t] = pos_in[iy[ok] * w_in + ix[ok]]
            blocks.append(W[:, a, b, :] if kind == CONV_T else W[a, b])
        groups.append((sel.astype(np.int64), gather, np.concatenate(blocks, axis=0)))
    return groups


def _taps_inside(n_in: int, n_out: int, k: int, s: int, pad: int, transposed: bool) -> int:
    """Number of (input, tap) pairs of one spatial axis that connect an input to an output
    inside the image (the products a convolution really makes along that axis)."""
    i = np.arange(n_in)[:, None] if transposed else np.arange(n_out)[:, None]
    pos = i * s + np.arange(k)[None, :] - pad
    return int(((pos >= 0) & (pos < (n_out if transposed else n_in))).sum())


def _layer_macs(m: np.ndarray) -> int:
    """Multiply-adds of the full layer ``m`` per batch row (taps outside the image skipped)."""
    kind, c_in, c_out = m[0], int(m[4]), int(m[7])
    if kind == DENSE:
        return c_in * c_out
    if kind == LOCAL:  # each output entry: its taps inside the input, times c_in
        iy, ix = _input_cells(m, np.arange(m[5] * m[6]))
        return int(((iy >= 0).sum(0) * (ix >= 0).sum(0)).sum()) * c_in * c_out
    if kind in (CONV_T, CONV):
        t = kind == CONV_T
        return (_taps_inside(m[2], m[5], m[8], m[10], m[12], t)
                * _taps_inside(m[3], m[6], m[9], m[11], m[13], t) * c_in * c_out)
    return 0


def cone_plan(meta: np.ndarray, data: np.ndarray, pix: np.ndarray) -> ConePlan:
    """The dependency cone of the decoder outputs ``pix`` (flat ``(H, W, C)`` image indices,
    any order, repetitions allowed) and the gathered weights to evaluate it."""
    meta = np.asarray(meta, dtype=np.int64)
    pix = np.asarray(pix, dtype=np.int64)
    n_l = meta.shape[0]
    # backward: the needed outputs of every layer (units; for convolutions whole sites)
    need: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n_l
    want = np.unique(pix)
    for l in range(n_l - 1, -1, -1):
        m = meta[l]
        if m[0] in (CONV_T, CONV, LOCAL):
            c = m[7]
            sites = np.unique(want // c)
            need[l] = (sites[:, None] * c + np.arange(c)[None, :]).ravel()
            in_sites = _spatial_in_needed(m, sites)
            want = (in_sites[:, None] * m[4] + np.arange(m[4])[None, :]).ravel()
        elif m[0] == DENSE:
            need[l] = want
            want = np.arange(m[4], dtype=np.int64)
        else:  # ACTIVATION
            need[l] = want
    # forward: records, groups, gathered weights
    layers, groups, index, weights = [], [], [], []
    n_idx = n_w = 0
    macs = full = 0
    prev = np.arange(meta[0, 4] if meta[0, 0] == DENSE else meta[0, 2] * meta[0, 3] * meta[0, 4],
                     dtype=np.int64)
    for l in range(n_l):
        m = meta[l]
        rec = np.zeros(len(REC), dtype=np.int64)
        rec[0], rec[1], rec[2], rec[3] = m[0], m[1], m[4], m[7]
        rec[4], rec[5] = prev.size, need[l].size
        full += _layer_macs(m)
        if m[0] == DENSE:
            w = data[m[14]:m[14] + m[4] * m[7]].reshape(m[4], m[7])
            rec[8] = n_w
            weights.append(np.ascontiguousarray(w[:, need[l]]).ravel())
            n_w += weights[-1].size
            rec[9] = n_w
            weights.append(data[m[15] + need[l]])
            n_w += need[l].size
            macs += m[4] * need[l].size
        elif m[0] == LOCAL:  # one group: every needed site, its own weights per entry
            out_sites = need[l][::m[7]] // m[7]
            gather = _local_gather(m, out_sites, prev[::m[4]] // m[4])
            n_taps = m[4] * m[8] * m[9]
            w = data[m[14]:m[14] + m[5] * m[6] * m[7] * n_taps].reshape(-1, n_taps)
            rec[6], rec[7] = 1, len(groups)
            groups.append(np.array([out_sites.size, gather.shape[1], n_idx, n_idx, n_w],
                                   dtype=np.int64))
            index.append(gather.ravel())
            n_idx += gather.size
            weights.append(np.ascontiguousarray(w[need[l]]).ravel())
            n_w += weights[-1].size
            rec[9] = n_w
            weights.append(data[m[15] + need[l]])
            n_w += need[l].size
            macs += int((gather >= 0).sum()) * m[4] * m[7]
        elif m[0] in (CONV_T, CONV):
            out_sites = need[l][::m[7]] // m[7]
            in_sites = prev[::m[4]] // m[4]
            rec[6], rec[7] = 0, len(groups)
            for sel, gather, w in _conv_groups(m, out_sites, in_sites, data):
                g = np.zeros(len(GRP), dtype=np.int64)
                g[0], g[1] = sel.size, gather.shape[1]
                g[2] = n_idx
                index.append(sel)
                n_idx += sel.size
                g[3] = n_idx
                index.append(gather.ravel())
                n_idx += gather.size
                g[4] = n_w
                weights.append(np.ascontiguousarray(w).ravel())
                n_w += w.size
                groups.append(g)
                rec[6] += 1
                macs += int((gather >= 0).sum()) * m[4] * m[7]
            rec[9] = n_w
            weights.append(data[m[15]:m[15] + m[7]])
            n_w += m[7]
        layers.append(rec)
        prev = need[l]
    pos = np.full(int(prev.max()) + 1 if prev.size else 0, -1, dtype=np.int64)
    pos[prev] = np.arange(prev.size)
    return ConePlan(np.array(layers, dtype=np.int64).reshape(-1, len(REC)),
                    np.array(groups, dtype=np.int64).reshape(-1, len(GRP)),
                    np.concatenate(index) if index else np.zeros(0, dtype=np.int64),
                    np.concatenate(weights) if weights else np.zeros(0),
                    pos[pix], int(macs), int(full), tuple(int(x.size) for x in need))


def cone_cost(plan: ConePlan) -> dict[str, float]:
    """Multiply-adds per batch row of the restricted and the full decoder, and their ratio."""
    return {"macs": plan.macs, "full_macs": plan.full_macs,
            "fraction": plan.macs / plan.full_macs if plan.full_macs else 1.0}


@njit(cache=True)
def _bias_act(Y, bias, act, n_sites, c_out, B):
    """Bias (value row) and activation on a compact conv output ``Y[b, site * c_out + o]``."""
    for s in range(n_sites):
        for o in range(c_out):
            k = s * c_out + o
            v, d = _act1(Y[0, k] + bias[o], act)
            Y[0, k] = v
            for b in range(1, B):
                Y[b, k] *= d


@njit(cache=True)
def _cone_local(grp, index, weights, X, c_in, c_out, n_out, b_off):
    """The needed entries of a locally connected layer (plan group ``grp``: sites, taps, -,
    gather table, weight rows in the compact output's order; biases at ``b_off``)."""
    B = X.shape[0]
    n_s, n_t, g_off, gw = grp[0], grp[1], grp[3], grp[4]
    K = n_t * c_in
    W = weights[gw:gw + n_out * K].reshape((n_out, K))
    bias = weights[b_off:b_off + n_out]
    P = np.empty((B, K))
    Y = np.empty((B, n_out))
    for s in range(n_s):
        for t in range(n_t):
            src = index[g_off + s * n_t + t]
            for b in range(B):
                for c in range(c_in):
                    P[b, t * c_in + c] = X[b, src * c_in + c] if src >= 0 else 0.0
        _local_pixel(P, W, bias, s * c_out, c_out, 1, Y)
    return Y


@njit(cache=True)
def cone_forward(layers, groups, index, weights, X):
    """Evaluate the cone plan on the batch ``X`` (B, p) (row 0 the value, rows 1.. the
    tangents); returns the last layer's compact output (B, n_out)."""
    B = X.shape[0]
    for l in range(layers.shape[0]):
        kind, act, c_in, c_out = layers[l, 0], layers[l, 1], layers[l, 2], layers[l, 3]
        n_out, w_off, b_off = layers[l, 5], layers[l, 8], layers[l, 9]
        if kind == DENSE:
            W = weights[w_off:w_off + c_in * n_out].reshape((c_in, n_out))
            Y = np.dot(X, W)
            for k in range(n_out):
                v, d = _act1(Y[0, k] + weights[b_off + k], act)
                Y[0, k] = v
                for b in range(1, B):
                    Y[b, k] *= d
        elif kind == LOCAL:
            Y = _cone_local(groups[layers[l, 7]], index, weights, X, c_in, c_out, n_out,
                            b_off)
        elif kind == ACTIVATION:
            Y = X.copy()
            for k in range(n_out):
                v, d = _act1(Y[0, k], act)
                Y[0, k] = v
                for b in range(1, B):
                    Y[b, k] *= d
        else:
            Y = np.zeros((B, n_out))
            for gi in range(layers[l, 7], layers[l, 7] + layers[l, 6]):
                n_s, n_t = groups[gi, 0], groups[gi, 1]
                s_off, g_off, gw = groups[gi, 2], groups[gi, 3], groups[gi, 4]
                P = np.zeros((n_s * B, n_t * c_in))
                for s in range(n_s):
                    for t in range(n_t):
                        src = index[g_off + s * n_t + t]
                        if src < 0:
                            continue
                        for b in range(B):
                            row = s * B + b
                            for c in range(c_in):
                                P[row, t * c_in + c] = X[b, src * c_in + c]
                W = weights[gw:gw + n_t * c_in * c_out].reshape((n_t * c_in, c_out))
                R = np.dot(P, W)
                for s in range(n_s):
                    dst = index[s_off + s] * c_out
                    for b in range(B):
                        for o in range(c_out):
                            Y[b, dst + o] = R[s * B + b, o]
            _bias_act(Y, weights[b_off:b_off + c_out], act, n_out // c_out, c_out, B)
        X = Y
    return X


@njit(cache=True)
def cone_decode(layers, groups, index, weights, out_pos, z, lo, rng):
    """``g`` and ``J`` at the requested outputs: ``g_k = lo_k + rng_k y_k``, ``J_k = rng_k
    dy_k/dz`` with ``y`` the decoder output (``lo``, ``rng``: the unscaling per requested
    row)."""
    p = z.size
    X = np.zeros((p + 1, p))
    for k in range(p):
        X[0, k] = z[k]
        X[k + 1, k] = 1.0
    Y = cone_forward(layers, groups, index, weights, X)
    n = out_pos.size
    g = np.empty(n)
    J = np.empty((n, p))
    for k in range(n):
        q = out_pos[k]
        g[k] = lo[k] + rng[k] * Y[0, q]
        for j in range(p):
            J[k, j] = rng[k] * Y[j + 1, q]
    return g, J
