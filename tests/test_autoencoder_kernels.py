"""Numba decoder/encoder kernels against Keras (forward pass, autodiff Jacobian) to float64
round-off, finite differences, the row-restricted and the multi-threaded evaluation, and the
BLAS plumbing (scipy's cython_blas dgemm, threadpoolctl)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from numerics import keras_jacobian

from autoencoder import kernels as K
from autoencoder.export import UnsupportedLayerError, export_network
from autoencoder.model import build_decoder, build_encoder

#: Largest relative difference (max |a - b| / max |b|) allowed against Keras / TensorFlow:
#: float64 round-off of a few layers (measured: <= 4e-15).
RTOL = 1e-12

L = keras.layers


def _decoder(p: int, feat: tuple[int, ...], convs: list[tuple], seed: int) -> keras.Model:
    """Dense -> Reshape(feat) -> transposed convs (filters, kernel, stride, padding, act)."""
    keras.utils.set_random_seed(seed)
    two_d = len(feat) == 3
    convt = L.Conv2DTranspose if two_d else L.Conv1DTranspose
    z = keras.Input((p,), dtype="float64")
    x = L.Dense(int(np.prod(feat)), activation="elu", dtype="float64",
                bias_initializer="random_normal")(z)
    x = L.Reshape(feat, dtype="float64")(x)
    for f, k, s, pad, act in convs:
        x = convt(f, k, strides=s, padding=pad, activation=act, dtype="float64",
                  bias_initializer="random_normal")(x)
    return keras.Model(z, x)


CASES = [
    # p, feature shape, transposed convs
    (1, (2, 2, 4), [(3, 5, 2, "same", "elu"), (1, 5, 1, "same", "linear")]),
    (3, (2, 2, 8), [(4, 5, 2, "same", "elu"), (4, 3, 2, "same", "tanh"),
                    (1, 5, 1, "same", "linear")]),
    (5, (3, 2, 4), [(3, 3, 2, "valid", "elu"), (2, 4, 2, "same", "sigmoid"),
                    (2, 3, 1, "valid", "linear")]),
    (4, (2, 3, 3), [(3, 2, 3, "valid", "relu"), (1, 4, 2, "same", "softplus")]),
    (10, (4, 8), [(6, 25, 4, "same", "elu"), (3, 5, 2, "valid", "elu"),
                  (1, 4, 2, "same", "linear")]),
    (2, (5, 3), [(4, 3, 1, "same", "elu"), (2, 2, 3, "same", "elu"),
                 (1, 3, 2, "valid", "linear")]),
]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _identity(n: int, lo: float = 0.0, rng: float = 1.0) -> tuple[np.ndarray, ...]:
    """Per-row unscaling ``lo``, ``rng`` and the image entry ``pix`` of every state row of an
    unpadded image in image order (the kernels' last three arguments)."""
    return np.full(n, lo), np.full(n, rng), np.arange(n)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_decoder_kernels_match_keras(case: int) -> None:
    p, feat, convs = CASES[case]
    model = _decoder(p, feat, convs, seed=case)
    meta, data = export_network(model)
    n = int(np.prod(model.output.shape[1:]))
    unit = _identity(n)
    rng = np.random.default_rng(case)
    for _ in range(2):
        z = rng.normal(size=p)
        y_ref, J_ref = keras_jacobian(model, z)
        g, J = K.decode_jacobian_kernel(meta, data, z, *unit)
        assert _rel(g, y_ref) < RTOL
        assert _rel(J, J_ref) < RTOL
        assert _rel(K.decode_kernel(meta, data, z, *unit), y_ref) < RTOL
        for threads in (2, 3):  # directions shared out among threads: the same results
            gp, Jp = K.decode_jacobian_parallel(meta, data, z, *unit, threads)
            assert _rel(gp, g) < 1e-14 and _rel(Jp, J) < 1e-14
        # state rows in another order, some image entries left out (padding), per-row
        # unscaling: g_k = lo_k + rng_k y_{pix_k}
        pix = rng.permutation(n)[: max(1, n - n // 5)]
        lo, sc = rng.normal(size=pix.size), rng.uniform(0.5, 2.0, pix.size)
        gk, Jk = K.decode_jacobian_kernel(meta, data, z, lo, sc, pix)
        np.testing.assert_allclose(gk, lo + sc * g[pix], rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(Jk, sc[:, None] * J[pix], rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(K.decode_kernel(meta, data, z, lo, sc, pix), gk,
                                   rtol=1e-14, atol=1e-14)
        gp, Jp = K.decode_jacobian_parallel(meta, data, z, lo, sc, pix, 2)
        assert _rel(gp, gk) < 1e-14 and _rel(Jp, Jk) < 1e-14


def test_jacobian_matches_central_differences() -> None:
    p, feat, convs = CASES[1]
    model = _decoder(p, feat, convs, seed=7)
    meta, data = export_network(model)
    unit = _identity(int(np.prod(model.output.shape[1:])), 0.5, 2.0)
    z = np.random.default_rng(3).normal(size=p)
    _, J = K.decode_jacobian_kernel(meta, data, z, *unit)
    h = 1e-6
    for j in range(p):
        e = np.zeros(p)
        e[j] = h
        fd = (K.decode_kernel(meta, data, z + e, *unit)
              - K.decode_kernel(meta, data, z - e, *unit)) / (2 * h)
        assert _rel(J[:, j], fd) < 1e-7


ARCH = dict(filters=[4, 8, 8], kernel_size=[5, 5, 5], strides=[1, 2, 2], padding="same",
            activation="elu", latent_activation="elu", output_activation="linear",
            variational=False)


@pytest.mark.parametrize("shape", [(16, 16, 1), (8, 12, 2), (64, 1)])
@pytest.mark.parametrize("p", [2, 6])
def test_paper_style_encoder_and_decoder(shape: tuple[int, ...], p: int) -> None:
    arch = dict(ARCH, kernel_size=[5, 5, 5] if len(shape) == 3 else [9, 9, 9])
    keras.utils.set_random_seed(p)
    enc = build_encoder(shape, p, arch, dtype="float64")
    dec = build_decoder(shape, p, arch, dtype="float64")
    me, de = export_network(enc)
    md, dd = export_network(dec)
    x = np.random.default_rng(0).random((3, int(np.prod(shape))))
    z = K.encode_kernel(me, de, x)
    assert _rel(z, enc(x.reshape(3, *shape)).numpy()) < RTOL
    y_ref, J_ref = keras_jacobian(dec, z[0])
    g, J = K.decode_jacobian_kernel(md, dd, z[0], *_identity(x.shape[1]))
    assert _rel(g, y_ref) < RTOL
    assert _rel(J, J_ref) < RTOL


def test_forward_conv_valid_padding_and_strides() -> None:
    keras.utils.set_random_seed(3)
    x = keras.Input((11, 9, 2), dtype="float64")
    y = L.Conv2D(3, (3, 4), strides=(2, 3), padding="valid", activation="tanh",
                 dtype="float64", bias_initializer="random_normal")(x)
    y = L.Conv2D(2, 3, strides=2, padding="same", dtype="float64")(y)
    y = L.Flatten(dtype="float64")(y)
    y = L.Dense(3, dtype="float64")(y)
    model = keras.Model(x, y)
    meta, data = export_network(model)
    X = np.random.default_rng(1).normal(size=(2, 11 * 9 * 2))
    assert _rel(K.encode_kernel(meta, data, X), model(X.reshape(2, 11, 9, 2)).numpy()) < RTOL


def test_unsupported_layer_is_refused_by_name() -> None:
    z = keras.Input((3,))
    x = L.Dense(16)(z)
    x = L.BatchNormalization(name="bn")(x)
    with pytest.raises(UnsupportedLayerError, match="'bn'.*BatchNormalization"):
        export_network(keras.Model(z, x))
    x = L.Dense(8, activation="gelu", name="gelu_dense")(z)
    with pytest.raises(UnsupportedLayerError, match="gelu"):
        export_network(keras.Model(z, x))
    x = L.Reshape((4, 2))(L.Dense(8)(z))
    x = L.Conv1DTranspose(2, 3, dilation_rate=2, name="dil")(x)
    with pytest.raises(UnsupportedLayerError, match="dilation"):
        export_network(keras.Model(z, x))


def test_dgemm_from_cython_blas_matches_numpy() -> None:
    """The intrinsic's argument order, transposes, offsets and beta, against numpy."""
    from numba import njit

    from autoencoder.blas import dgemm

    @njit
    def run(a, a_off, b, b_off, c, c_off, m, n, k, lda, ldb, ldc, beta):
        dgemm(ord('n'), ord('t'), m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    rng = np.random.default_rng(0)
    m, n, k, lda, ldb, ldc = 5, 4, 3, 7, 6, 8
    a, b, c = rng.normal(size=40), rng.normal(size=40), rng.normal(size=50)
    c0 = c.copy()
    run(a, 2, b, 1, c, 3, m, n, k, lda, ldb, ldc, 0.5)
    A = np.lib.stride_tricks.as_strided(a[2:], (m, k), (8, 8 * lda))  # column-major views
    Bt = np.lib.stride_tricks.as_strided(b[1:], (n, k), (8, 8 * ldb))
    C0 = np.lib.stride_tricks.as_strided(c0[3:], (m, n), (8, 8 * ldc))
    C = np.lib.stride_tricks.as_strided(c[3:], (m, n), (8, 8 * ldc))
    np.testing.assert_allclose(C, A @ Bt.T + 0.5 * C0, rtol=1e-14, atol=1e-14)
    outside = np.ones(c.size, dtype=bool)
    for j in range(n):
        outside[3 + j * ldc: 3 + j * ldc + m] = False
    np.testing.assert_array_equal(c[outside], c0[outside])  # nothing else written


def test_single_threaded_blas_is_scoped() -> None:
    from threadpoolctl import ThreadpoolController

    from autoencoder.blas import blas_controllers, single_threaded

    libs = blas_controllers()
    assert libs, "threadpoolctl found no BLAS library"

    def counts() -> list[int]:
        return [lib.get_num_threads() for lib in libs]

    with ThreadpoolController().limit(limits=2, user_api="blas"):
        assert set(counts()) == {2}
        assert set(single_threaded(counts)) == {1}
        assert set(counts()) == {2}  # restored after the call
        with pytest.raises(ZeroDivisionError):
            single_threaded(lambda: 1 / 0)
        assert set(counts()) == {2}  # restored after an exception too


def test_trained_manifold_threads() -> None:
    """``TrainedManifold.threads``: the same ``g`` and ``J`` on one and on two threads (in
    state units, through the permutation); a bad count is a one-line input error."""
    from pathlib import Path

    from autoencoder.data import Restriction, Scaling
    from autoencoder.manifold import TrainedManifold
    from fom.errors import InputError

    shape, p = (16, 16, 1), 5
    keras.utils.set_random_seed(1)
    md, dd = export_network(build_decoder(shape, p, ARCH, dtype="float64"))
    me, de = export_network(build_encoder(shape, p, ARCH, dtype="float64"))
    r = Restriction(shape, np.random.default_rng(0).permutation(256))
    args = (Path("m"), p, 256, "deviation", r, Scaling(-1.0, 3.0), md, dd, me, de, {})
    one = TrainedManifold(*args)
    two = TrainedManifold(*args, threads=2)
    z = np.random.default_rng(1).normal(size=p)
    g1, J1 = one.decode_with_jacobian(z)
    g2, J2 = two.decode_with_jacobian(z)
    assert _rel(g2, g1) < 1e-14 and _rel(J2, J1) < 1e-14
    assert _rel(one.decode(z), g1) < 1e-14  # the value-only kernel
    with pytest.raises(InputError, match="threads must be a positive integer, got 0"):
        TrainedManifold(*args, threads=0)
