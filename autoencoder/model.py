"""The convolutional autoencoder of Lee & Carlberg (2019), section 6.1, in Keras 3.

Encoder ``h``: ``n`` convolutions (filters ``f_1..f_n``, strides ``s_1..s_n``, ELU) on the
restricted image, flatten, dense to the latent dimension ``p``. Decoder ``g``: dense ``p ->``
(the encoder's last feature map, flattened), ELU, reshape, ``n`` transposed convolutions
mirroring the encoder (filters ``f_{n-1}..f_1, C``, strides ``s_n..s_1``), the last one linear.
No batch normalization; Glorot-uniform initialization. With ``variational = true`` the encoder
has two dense heads, the mean ``z_mean`` and the log-variance ``z_log_var`` (TensorFlow's CVAE
tutorial); the decoder is the same.
"""

from __future__ import annotations

from typing import Any

from fom.errors import InputError


def _conv_out(n: int, k: int, s: int, padding: str) -> int:
    return -(-n // s) if padding == "same" else (n - k) // s + 1


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
    """Decoder ``g`` (a functional ``keras.Model`` named ``decoder``), mirroring the encoder.

    Raises
    ------
    InputError
        If the mirrored transposed convolutions do not give back ``image_shape``.
    """
    import keras

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


def build_autoencoder(image_shape: tuple[int, ...], p: int, arch: dict[str, Any],
                      dtype: str = "float32") -> tuple[Any, Any, Any]:
    """``(autoencoder, encoder, decoder)``; the autoencoder maps an image to ``g(h(x))``
    (for a variational encoder, through the mean)."""
    import keras

    enc = build_encoder(image_shape, p, arch, dtype)
    dec = build_decoder(image_shape, p, arch, dtype)
    x = keras.Input(shape=tuple(image_shape), name="input", dtype=dtype)
    code = enc(x)
    mean = code[0] if arch["variational"] else code
    ae = keras.Model(x, dec(mean), name="autoencoder")
    return ae, enc, dec
