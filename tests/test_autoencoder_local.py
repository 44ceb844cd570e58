"""The locally connected decoder (``[autoencoder] decoder = "local"``): the Keras layer against
its formula evaluated by plain loops, the numba kernels (value, Jacobian, restricted rows)
against Keras in float64, saving and loading, and the config's checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from numerics import keras_jacobian

from autoencoder import kernels as K
from autoencoder.export import export_network
from autoencoder.local_output import LocalOutput
from autoencoder.model import build_autoencoder, build_decoder, load_keras_model, local_grids
from autoencoder.restricted import cone_cost, cone_decode, cone_plan
from fom.errors import InputError

#: A ``decoder = "local"`` architecture small enough for tests (the encoder: one conv layer).
ARCH = {"filters": [4], "kernel_size": [3], "strides": [2], "padding": "same",
        "activation": "elu", "latent_activation": "linear", "output_activation": "linear",
        "variational": False, "decoder": "local", "local_features": 3, "local_channels": 2,
        "local_window": 3, "local_stride": 2, "local_activation": "silu"}


def _loop_formula(h: np.ndarray, w: np.ndarray, bias: np.ndarray, window: tuple[int, int],
                  strides: tuple[int, int]) -> np.ndarray:
    """The layer's definition, entry by entry: ``out[y, x, o] = bias + sum_{a, b, c}
    w[y, x, o, (a kw + b) C + c] h[y // sh + a - kh // 2, x // sw + b - kw // 2, c]``."""
    (kh, kw), (sh, sw) = window, strides
    H, W, C_out = bias.shape
    h_in, w_in, C = h.shape
    out = bias.copy()
    for y in range(H):
        for x in range(W):
            for o in range(C_out):
                for a in range(kh):
                    for b in range(kw):
                        iy, ix = y // sh + a - kh // 2, x // sw + b - kw // 2
                        if 0 <= iy < h_in and 0 <= ix < w_in:
                            for c in range(C):
                                out[y, x, o] += w[y, x, o, (a * kw + b) * C + c] * h[iy, ix, c]
    return out


@pytest.mark.parametrize("hidden, image, window, strides", [
    ((4, 5, 3), (7, 9, 2), (3, 3), (2, 2)),     # odd image: the last hidden cell half used
    ((3, 3, 2), (6, 6, 1), (2, 4), (2, 2)),     # even windows: asymmetric reach
    ((5, 4, 2), (5, 12, 2), (3, 1), (1, 3)),    # stride 1 one way, 3 the other
    ((8, 8, 1), (6, 6, 1), (3, 3), (2, 2)),     # a hidden grid larger than needed
])
def test_layer_matches_its_formula(hidden: tuple, image: tuple, window: tuple,
                                   strides: tuple) -> None:
    keras.utils.set_random_seed(3)
    layer = LocalOutput(image, window, strides, dtype="float64")
    h = np.random.default_rng(0).normal(size=(2, *hidden))
    layer.build((None, *hidden))                      # the weights, then a random bias
    bias = np.random.default_rng(1).normal(size=image)
    layer.bias.assign(bias)
    out = layer(tf.constant(h)).numpy()
    w = layer.kernel.numpy()
    assert w.shape == (*image, window[0] * window[1] * hidden[2])
    for i in range(2):
        ref = _loop_formula(h[i], w, bias, window, strides)
        assert np.max(np.abs(out[i] - ref)) < 1e-12 * np.max(np.abs(ref))


def _randomized(model: keras.Model, seed: int) -> keras.Model:
    """``model`` with every weight random normal (the biases too, which start at 0)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("image, p", [((11, 13, 2), 3), ((12, 12, 1), 5)])
def test_numba_kernels_match_keras(image: tuple, p: int) -> None:
    """g and dg/dz of the exported decoder (SiLU hidden grid, locally connected output) equal
    Keras's value and autodiff Jacobian in float64; the restricted rows equal the full ones."""
    keras.utils.set_random_seed(p)
    dec = _randomized(build_decoder(image, p, ARCH, dtype="float64"), p)
    assert tuple(dec.output.shape[1:]) == image
    meta, data = export_network(dec)
    assert list(meta[:, 0]) == [K.DENSE, K.CONV_T, K.LOCAL]
    assert meta[1, 1] == K.ACTIVATION_CODES["silu"]
    n = int(np.prod(image))
    lo, rng = np.full(n, 0.25), np.full(n, 2.0)
    pix = np.random.default_rng(0).permutation(n)
    z = np.random.default_rng(1).normal(size=p)
    y, Jy = keras_jacobian(dec, z)
    g, J = K.decode_jacobian_kernel(meta, data, z, lo, rng, pix)
    scale = np.max(np.abs(y))
    assert np.max(np.abs(g - (0.25 + 2.0 * y[pix]))) < 1e-12 * 2 * scale
    assert np.max(np.abs(J - 2.0 * Jy[pix])) < 1e-12 * 2 * np.max(np.abs(Jy))
    # the value-only kernel (batch of one row: other BLAS calls, the same sums to round-off)
    assert np.max(np.abs(K.decode_kernel(meta, data, z, lo, rng, pix) - g)) < 1e-14 * scale
    # a few rows through the dependency cone: the same numbers as the full decoder's rows
    rows = np.array([0, 5, n - 1, n // 2, 5])
    plan = cone_plan(meta, data, pix[rows])
    g_r, J_r = cone_decode(plan.layers, plan.groups, plan.index, plan.weights, plan.out_pos,
                           z, lo[rows], rng[rows])
    assert np.max(np.abs(g_r - g[rows])) < 1e-13 * np.max(np.abs(g))
    assert np.max(np.abs(J_r - J[rows])) < 1e-13 * np.max(np.abs(J))
    cost = cone_cost(plan)
    assert 0 < cost["macs"] < cost["full_macs"]


def test_full_macs_count_the_taps_inside() -> None:
    """The full cost of the local layer counts only the taps that read the hidden grid."""
    from autoencoder.restricted import _layer_macs

    keras.utils.set_random_seed(0)
    meta, _ = export_network(build_decoder((6, 6, 1), 2, ARCH, dtype="float64"))
    m = meta[2]
    # hidden grid 4 x 4 (local_grids), pixel y reads cells y // 2 - 1 .. y // 2 + 1: rows 0, 1
    # read 2 cells, the others 3, per direction: (2 + 2 + 3 * 4) ** 2 pairs, C = 2 channels
    assert local_grids((6, 6, 1), ARCH)[1] == (4, 4, 2)
    assert _layer_macs(m) == 16 ** 2 * 2 * 1


def test_save_and_load(tmp_path) -> None:
    """An autoencoder with the local decoder saves and loads (safe mode) with equal outputs."""
    keras.utils.set_random_seed(0)
    ae, _, _ = build_autoencoder((10, 10, 2), 2, ARCH)
    x = np.random.default_rng(0).normal(size=(3, 10, 10, 2)).astype(np.float32)
    ae.save(tmp_path / "ae.keras")
    back = load_keras_model(tmp_path / "ae.keras")
    assert np.array_equal(back(x).numpy(), ae(x).numpy())


def test_config_checks() -> None:
    from autoencoder.model import check_image
    from autoencoder.settings import AUTOENCODER_SCHEMA, check_architecture
    from fom.config import parse_section

    sec = parse_section({"dims": 1, "decoder": "local", "filters": [4], "strides": [2],
                         "kernel_size": 3}, AUTOENCODER_SCHEMA, "c.toml [autoencoder]")
    with pytest.raises(InputError, match=r"c.toml \[autoencoder\] decoder: 'local' needs "
                                         r"dims = 2, got dims = 1"):
        check_architecture(sec, "c.toml [autoencoder]")
    with pytest.raises(InputError, match="decoder"):
        parse_section({"decoder": "loca"}, AUTOENCODER_SCHEMA, "c.toml [autoencoder]")
    # no divisibility constraint: the local decoder draws any image size
    check_image((58, 58, 2), ARCH, "c [autoencoder]")
    with pytest.raises(InputError, match="needs dims = 2"):
        check_image((58, 2), ARCH, "c [autoencoder]")


def test_exported_local_layer_is_checked() -> None:
    """A locally connected layer in an exported file with a zero stride, or with weights
    beyond the data, is refused naming the file and the layer."""
    from pathlib import Path

    from autoencoder.manifold import _check_network

    keras.utils.set_random_seed(0)
    meta, data = export_network(build_decoder((6, 6, 1), 2, ARCH, dtype="float64"))
    _check_network(meta, data, 2, 36, "decoder", Path("m.h5"))
    bad = meta.copy()
    bad[2, 10] = 0
    with pytest.raises(InputError, match=r"m.h5: decoder layer 2 \(locally connected\) has a "
                                         r"window 3 x 3, strides 0 x 2"):
        _check_network(bad, data, 2, 36, "decoder", Path("m.h5"))
    with pytest.raises(InputError, match="m.h5: decoder layer 2 points outside /decoder/data"):
        _check_network(meta, data[:-1], 2, 36, "decoder", Path("m.h5"))
