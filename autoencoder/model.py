"""The convolutional autoencoder of Lee & Carlberg (2019), section 6.1, in Keras 3.

Encoder ``h``: ``n`` convolutions (filters ``f_1..f_n``, strides ``s_1..s_n``, ELU) on the
restricted image, flatten, dense to the latent dimension ``p``. Decoder ``g``: dense ``p ->``
(the encoder's last feature map, flattened), ELU, reshape, ``n`` transposed convolutions
mirroring the encoder (filters ``f_{n-1}..f_1, C``, strides ``s_n..s_1``), the last one linear.
No batch normalization; Glorot-uniform initialization. With ``variational = true`` the encoder
has two dense heads, the mean ``z_mean`` and the log-variance ``z_log_var`` (TensorFlow's CVAE
tutorial); the decoder is the same.

With ``decoder = "local"`` (two-dimensional images) the decoder is instead a short generator of
a coarse hidden grid followed by a locally connected output layer
(:class:`autoencoder.local_output.LocalOutput`): dense ``p -> (H_0, W_0, F)`` (the hidden
activation), one stride-2 4 x 4 transposed convolution to ``C`` channels (``local_activation``),
then every image entry its own weights on the ``w x w`` hidden cells around it
(``local_window``; the hidden grid is ``local_stride`` times coarser than the image, ``H_0`` half
as fine again).
"""

from __future__ import annotations

import math
from typing import Any

from fom.errors import InputError


def _conv_out(n: int, k: int, s: int, padding: str) -> int:
    return -(-n // s) if padding == "same" else (n - k) // s + 1


def _conv_t_out(n: int, k: int, s: int, padding: str) -> int:
    return n * s if padding == "same" else n * s + max(k - s, 0)  # Keras's output length


def check_image(image_shape: tuple[int, ...], arch: dict[str, Any],
                where: str = "[autoencoder]") -> None:
    """Refuse an architecture whose mirrored decoder does not give back the image.

    With ``'same'`` padding the product of the strides must divide every spatial size of the
    image (``H`` and ``W`` of an ``(H, W, C)`` image, ``L`` of ``(L, C)``); with ``'valid'``
    padding the transposed convolutions must undo the convolutions' sizes exactly.

    Raises
    ------
    InputError
        Naming ``where``'s ``strides`` (and ``kernel_size``) and the image, e.g. ``[autoencoder]
        strides: [2, 2, 2, 2] (product 16) do not divide the image's height 58 ...``.
    """
    if arch.get("decoder", "mirror") == "local":  # the decoder does not mirror the encoder
        if len(image_shape) != 3:
            raise InputError(f"{where} decoder: 'local' needs dims = 2 (an image of shape "
                             f"(H, W, C)), got the image {list(image_shape)}")
        encoder_feature_shape(image_shape, arch)
        return
    spatial = [int(n) for n in image_shape[:-1]]
    names = ["height", "width"] if len(spatial) == 2 else ["length"]
    ks, ss, pad = arch["kernel_size"], arch["strides"], arch["padding"]
    ks = [ks] * len(ss) if isinstance(ks, int) else list(ks)
    prod = 1
    for s in ss:
        prod *= s
    hint = ("; set [autoencoder] image_size to pad the image to a size they divide, or "
            "choose other strides")
    for n, name in zip(spatial, names, strict=True):
        if pad == "same":
            if n % prod:
                raise InputError(f"{where} strides: {list(ss)} (product {prod}) do not divide "
                                 f"the image's {name} {n} (image {list(image_shape)}){hint}")
            continue
        m = n
        for k, s in zip(ks, ss, strict=True):
            m = _conv_out(m, k, s, pad)
            if m < 1:
                raise InputError(f"{where} strides: the convolutions shrink the image's {name} "
                                 f"{n} to nothing (image {list(image_shape)}){hint}")
        for k, s in zip(reversed(ks), reversed(ss), strict=True):
            m = _conv_t_out(m, k, s, pad)
        if m != n:
            raise InputError(f"{where} strides: with kernel_size {ks} and padding 'valid' the "
                             f"mirrored decoder gives the image's {name} {m}, not {n} (image "
                             f"{list(image_shape)}){hint}")


def encoder_feature_shape(image_shape: tuple[int, ...], arch: dict[str, Any]) -> tuple[int, ...]:
    """Shape of the encoder's last feature map for ``image_shape``."""
    spatial = list(image_shape[:-1])
    for k, s in zip(arch["kernel_size"], arch["strides"], strict=True):
        spatial = [_conv_out(n, k, s, arch["padding"]) for n in spatial]
        if min(spatial) < 1:
            raise InputError(f"the encoder's convolutions shrink the {list(image_shape)} image "
                             f"to nothing; use fewer or smaller strides")
    return (*spatial, arch["filters"][-1])


def build_encoder(image_shape: tuple[int, ...], p: int, arch: dict[str, Any],
                  dtype: str = "float32") -> Any:
    """Encoder ``h`` (a functional ``keras.Model`` named ``encoder``)."""
    import keras

    L = keras.layers
    conv = L.Conv2D if len(image_shape) == 3 else L.Conv1D
    x = inp = keras.Input(shape=tuple(image_shape), name="image", dtype=dtype)
    for i, (f, k, s) in enumerate(zip(arch["filters"], arch["kernel_size"], arch["strides"],
                                      strict=True)):
        x = conv(f, k, strides=s, padding=arch["padding"], activation=arch["activation"],
                 name=f"conv{i}", dtype=dtype)(x)
    x = L.Flatten(name="flatten", dtype=dtype)(x)
    if arch["variational"]:
        mean = L.Dense(p, name="z_mean", dtype=dtype)(x)
        log_var = L.Dense(p, name="z_log_var", dtype=dtype)(x)
        return keras.Model(inp, [mean, log_var], name="encoder")
    z = L.Dense(p, activation=arch["latent_activation"], name="z", dtype=dtype)(x)
    return keras.Model(inp, z, name="encoder")


def build_decoder(image_shape: tuple[int, ...], p: int, arch: dict[str, Any],
                  dtype: str = "float32") -> Any:
    """Decoder ``g`` (a functional ``keras.Model`` named ``decoder``), mirroring the encoder
    (or :func:`build_local_decoder` for ``decoder = "local"``).

    Raises
    ------
    InputError
        If the mirrored transposed convolutions do not give back ``image_shape``.
    """
    import keras

    if arch.get("decoder", "mirror") == "local":
        return build_local_decoder(image_shape, p, arch, dtype)
    L = keras.layers
    convt = L.Conv2DTranspose if len(image_shape) == 3 else L.Conv1DTranspose
    feat = encoder_feature_shape(image_shape, arch)
    n_feat = 1
    for s in feat:
        n_feat *= s
    z = keras.Input(shape=(p,), name="latent", dtype=dtype)
    x = L.Dense(n_feat, activation=arch["activation"], name="dense", dtype=dtype)(z)
    x = L.Reshape(feat, name="reshape", dtype=dtype)(x)
    n = len(arch["filters"])
    filters = list(reversed(arch["filters"][:-1])) + [image_shape[-1]]
    strides = list(reversed(arch["strides"]))
    kernels = list(reversed(arch["kernel_size"]))
    for i in range(n):
        last = i == n - 1
        x = convt(filters[i], kernels[i], strides=strides[i], padding=arch["padding"],
                  activation=arch["output_activation"] if last else arch["activation"],
                  name=f"deconv{i}", dtype=dtype)(x)
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise InputError(f"the mirrored decoder outputs shape {list(x.shape[1:])}, not the "
                         f"image shape {list(image_shape)}; choose strides/padding that "
                         f"divide the image size")
    return keras.Model(z, x, name="decoder")


def local_grids(image_shape: tuple[int, ...], arch: dict[str, Any]
                ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The ``decoder = "local"`` decoder's dense feature map ``(H_0, W_0, F)`` and hidden grid
    ``(2 H_0, 2 W_0, C)`` for ``image_shape`` ``(H, W, channels)``: ``H_0 = ceil(ceil(H / s)
    / 2)``, ``s = local_stride``."""
    s = arch["local_stride"]
    h0, w0 = (math.ceil(math.ceil(n / s) / 2) for n in image_shape[:2])
    return (h0, w0, arch["local_features"]), (2 * h0, 2 * w0, arch["local_channels"])


def build_local_decoder(image_shape: tuple[int, ...], p: int, arch: dict[str, Any],
                        dtype: str = "float32") -> Any:
    """The ``decoder = "local"`` decoder ``g`` (module docstring): dense, reshape, one
    transposed convolution to the hidden grid, :class:`~autoencoder.local_output.LocalOutput`
    (and an ``Activation`` if ``output_activation`` is not linear)."""
    import keras

    from .local_output import LocalOutput

    L = keras.layers
    feat, hidden = local_grids(image_shape, arch)
    z = keras.Input(shape=(p,), name="latent", dtype=dtype)
    x = L.Dense(feat[0] * feat[1] * feat[2], activation=arch["activation"], name="dense",
                dtype=dtype)(z)
    x = L.Reshape(feat, name="reshape", dtype=dtype)(x)
    x = L.Conv2DTranspose(hidden[2], 4, strides=2, padding="same",
                          activation=arch["local_activation"], name="deconv0", dtype=dtype)(x)
    win, s = arch["local_window"], arch["local_stride"]
    x = LocalOutput(tuple(image_shape), (win, win), (s, s), name="local", dtype=dtype)(x)
    if arch["output_activation"] != "linear":
        x = L.Activation(arch["output_activation"], name="output", dtype=dtype)(x)
    return keras.Model(z, x, name="decoder")


def load_keras_model(path: Any) -> Any:
    """A saved Keras model of this package (safe mode, not compiled), the custom layers
    registered first (:class:`~autoencoder.local_output.LocalOutput`)."""
    import keras

    from . import local_output  # noqa: F401  (registers LocalOutput with Keras)

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def build_autoencoder(image_shape: tuple[int, ...], p: int, arch: dict[str, Any],
                      dtype: str = "float32") -> tuple[Any, Any, Any]:
    """``(autoencoder, encoder, decoder)``; the autoencoder maps an image to ``g(h(x))``
    (for a variational encoder, through the mean)."""
    import keras

    check_image(image_shape, arch)
    enc = build_encoder(image_shape, p, arch, dtype)
    dec = build_decoder(image_shape, p, arch, dtype)
    x = keras.Input(shape=tuple(image_shape), name="input", dtype=dtype)
    code = enc(x)
    mean = code[0] if arch["variational"] else code
    ae = keras.Model(x, dec(mean), name="autoencoder")
    return ae, enc, dec
