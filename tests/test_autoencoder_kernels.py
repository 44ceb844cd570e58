"""Numba decoder/encoder kernels against Keras (forward pass, autodiff Jacobian), finite
differences and the row-restricted evaluation (design.md, "The decoder kernels")."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from autoencoder import kernels as K  # noqa: E402
from autoencoder.export import UnsupportedLayerError, export_network  # noqa: E402
from autoencoder.model import build_decoder, build_encoder  # noqa: E402

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


def _keras_jacobian(model: keras.Model, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    zt = tf.constant(z[None])
    with tf.GradientTape() as tape:
        tape.watch(zt)
        y = tf.reshape(model(zt), [-1])
    J = tape.jacobian(y, zt)
    return y.numpy(), J.numpy().reshape(y.shape[0], z.size)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_decoder_kernels_match_keras(case: int) -> None:
    p, feat, convs = CASES[case]
    model = _decoder(p, feat, convs, seed=case)
    meta, data = export_network(model)
    n = int(np.prod(model.output.shape[1:]))
    perm = np.arange(n)
    rng = np.random.default_rng(case)
    for _ in range(2):
        z = rng.normal(size=p)
        y_ref, J_ref = _keras_jacobian(model, z)
        g, J = K.decode_jacobian_kernel(meta, data, z, 0.0, 1.0, perm)
        assert _rel(g, y_ref) < 1e-10
        assert _rel(J, J_ref) < 1e-9
        assert _rel(K.decode_kernel(meta, data, z, 0.0, 1.0, perm), y_ref) < 1e-10
        # row-restricted evaluation: the same rows of the full results
        rows = np.unique(rng.integers(0, n, size=min(n, 17)))
        for frac in (0.0, 1.0):  # last layer only / every transposed conv restricted
            plan = K.restriction_plan(meta, rows, frac)
            if frac == 1.0 and len(convs) > 1:
                assert plan[0] < plan[1]  # really restricted more than the last layer
            gr, Jr = K.decode_rows_kernel(meta, data, z, 0.0, 1.0, rows, *plan)
            np.testing.assert_allclose(gr, g[rows], rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(Jr, J[rows], rtol=1e-13, atol=1e-14)


def test_jacobian_matches_central_differences() -> None:
    p, feat, convs = CASES[1]
    model = _decoder(p, feat, convs, seed=7)
    meta, data = export_network(model)
    perm = np.arange(int(np.prod(model.output.shape[1:])))
    z = np.random.default_rng(3).normal(size=p)
    _, J = K.decode_jacobian_kernel(meta, data, z, 0.5, 2.0, perm)
    h = 1e-6
    for j in range(p):
        e = np.zeros(p)
        e[j] = h
        fd = (K.decode_kernel(meta, data, z + e, 0.5, 2.0, perm)
              - K.decode_kernel(meta, data, z - e, 0.5, 2.0, perm)) / (2 * h)
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
    assert _rel(z, enc(x.reshape(3, *shape)).numpy()) < 1e-10
    y_ref, J_ref = _keras_jacobian(dec, z[0])
    g, J = K.decode_jacobian_kernel(md, dd, z[0], 0.0, 1.0, np.arange(x.shape[1]))
    assert _rel(g, y_ref) < 1e-10
    assert _rel(J, J_ref) < 1e-9


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
    assert _rel(K.encode_kernel(meta, data, X), model(X.reshape(2, 11, 9, 2)).numpy()) < 1e-10


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


def test_row_restriction_plan_on_a_large_image() -> None:
    """64 x 64 output, 5 sampled pixels: every transposed conv is evaluated only near them."""
    model = _decoder(4, (8, 8, 8), [(8, 5, 2, "same", "elu"), (4, 5, 2, "same", "elu"),
                                    (1, 5, 2, "same", "linear")], seed=11)
    meta, data = export_network(model)
    rows = np.array([0, 100, 2080, 4000, 4095])
    n_full, n_last, sites, offsets = K.restriction_plan(meta, rows, 0.5)
    assert (n_full, n_last) == (1, 3)
    assert offsets[-1] < 0.5 * (16 * 16 + 32 * 32)
    z = np.random.default_rng(2).normal(size=4)
    g, J = K.decode_jacobian_kernel(meta, data, z, 0.0, 1.0, np.arange(4096))
    gr, Jr = K.decode_rows_kernel(meta, data, z, 0.0, 1.0, rows, n_full, n_last, sites,
                                  offsets)
    np.testing.assert_allclose(gr, g[rows], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(Jr, J[rows], rtol=1e-13, atol=1e-14)


def test_single_threaded_blas_is_scoped() -> None:
    from autoencoder.blas import _find_setter, single_threaded

    setter = _find_setter()
    if setter is None:
        pytest.skip("no scipy OpenBLAS with openblas_set_num_threads_local")
    before = setter(2)
    try:
        inside = single_threaded(lambda: setter(1))
        assert inside == 1
        assert setter(2) == 2  # restored after the call
        with pytest.raises(ZeroDivisionError):
            single_threaded(lambda: 1 / 0)
        assert setter(2) == 2  # restored after an exception too
    finally:
        setter(before)
