"""Export of trained Keras networks to the arrays of :mod:`autoencoder.kernels`.

Supported layers: ``InputLayer``, ``Dense``, ``Reshape``, ``Flatten``, ``Conv1D``, ``Conv2D``,
``Conv1DTranspose``, ``Conv2DTranspose`` (channels-last, no dilation, no groups, no
``output_padding``, ``'same'`` or ``'valid'`` padding, any stride), the locally connected
:class:`autoencoder.local_output.LocalOutput`, ``Activation`` and ``ELU`` layers, with
activations linear, ELU, ReLU, tanh, sigmoid, softplus, SiLU. Anything else raises
:class:`UnsupportedLayerError` naming the layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fom.errors import InputError

from .kernels import ACTIVATION, ACTIVATION_CODES, CONV, CONV_T, DENSE, LOCAL, N_META


class UnsupportedLayerError(InputError):
    """A layer (or layer option) the numba kernels cannot evaluate."""


def _act_code(layer: Any, fn: Any) -> int:
    import keras

    name = keras.activations.serialize(fn) if fn is not None else "linear"
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    if name not in ACTIVATION_CODES:
        raise UnsupportedLayerError(f"layer {layer.name!r}: activation {name!r} is not "
                                    f"supported by the exporter (supported: "
                                    f"{', '.join(ACTIVATION_CODES)})")
    return ACTIVATION_CODES[name]


def _spatial(shape: tuple[int | None, ...]) -> tuple[int, int, int]:
    dims = [int(s) for s in shape[1:]]
    if len(dims) == 1:
        return 1, 1, dims[0]
    if len(dims) == 2:
        return 1, dims[0], dims[1]
    if len(dims) == 3:
        return dims[0], dims[1], dims[2]
    raise InputError(f"unsupported tensor shape {shape}")


def conv_padding(n_in: int, n_out: int, k: int, s: int, padding: str, transposed: bool) -> int:
    """Padding before the first entry, as TensorFlow applies it ('same': the smaller half)."""
    if padding == "valid":
        return 0
    if transposed:
        total = max((n_in - 1) * s + k - n_out, 0)
    else:
        total = max((n_out - 1) * s + k - n_in, 0)
    return total // 2


def export_network(model: Any, skip: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Export a chain-structured Keras model to ``(meta, data)`` for the numba kernels.

    Parameters
    ----------
    model : keras.Model
        Layers are taken in ``model.layers`` order; each must feed the next.
    skip : tuple of str
        Names of layers to leave out (e.g. the log-variance head of a variational encoder).

    Raises
    ------
    UnsupportedLayerError
        For a layer type or option the kernels do not implement.
    """
    import keras

    L = keras.layers
    rows: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    offset = 0

    def add(vals: dict[str, int], weights: list[np.ndarray]) -> None:
        nonlocal offset
        m = np.zeros(N_META, dtype=np.int64)
        for i, key in enumerate(("kind", "act", "h_in", "w_in", "c_in", "h_out", "w_out",
                                 "c_out", "kh", "kw", "sh", "sw", "pad_h", "pad_w")):
            m[i] = vals.get(key, 0)
        offs = []
        for w in weights:
            offs.append(offset)
            chunks.append(np.ascontiguousarray(w, dtype=np.float64).ravel())
            offset += chunks[-1].size
        m[14] = offs[0] if offs else 0
        m[15] = offs[1] if len(offs) > 1 else 0
        rows.append(m)

    for layer in model.layers:
        if layer.name in skip or isinstance(layer, L.InputLayer):
            continue
        if isinstance(layer, L.Reshape | L.Flatten):
            continue
        if isinstance(layer, L.Dense):
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
            if len(layer.input.shape) != 2:
                raise UnsupportedLayerError(f"layer {layer.name!r}: Dense on a tensor of rank "
                                            f"{len(layer.input.shape)} is not supported")
            n_in, n_out = kernel.shape
            bias = (layer.bias.numpy() if layer.use_bias else np.zeros(n_out))
            add({"kind": DENSE, "act": _act_code(layer, layer.activation), "h_in": 1,
                 "w_in": 1, "c_in": n_in, "h_out": 1, "w_out": 1, "c_out": n_out},
                [kernel, bias])
        elif isinstance(layer, L.Conv1DTranspose | L.Conv2DTranspose | L.Conv1D | L.Conv2D):
            transposed = isinstance(layer, L.Conv1DTranspose | L.Conv2DTranspose)
            name = type(layer).__name__
            if layer.data_format != "channels_last":
                raise UnsupportedLayerError(f"layer {layer.name!r} ({name}): only "
                                            f"channels_last is supported")
            if any(d != 1 for d in layer.dilation_rate):
                raise UnsupportedLayerError(f"layer {layer.name!r} ({name}): dilation is not "
                                            f"supported")
            if getattr(layer, "groups", 1) != 1:
                raise UnsupportedLayerError(f"layer {layer.name!r} ({name}): groups are not "
                                            f"supported")
            if transposed and layer.output_padding is not None:
                raise UnsupportedLayerError(f"layer {layer.name!r} ({name}): output_padding "
                                            f"is not supported")
            if layer.padding not in ("same", "valid"):
                raise UnsupportedLayerError(f"layer {layer.name!r} ({name}): padding "
                                            f"{layer.padding!r} is not supported")
            h_in, w_in, c_in = _spatial(layer.input.shape)
            h_out, w_out, c_out = _spatial(layer.output.shape)
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
            if kernel.ndim == 3:
                kernel = kernel[None]
            strides = tuple(layer.strides)
            sh, sw = (1, strides[0]) if len(strides) == 1 else strides
            kh, kw = kernel.shape[:2]
            vals = {"kind": CONV_T if transposed else CONV,
                    "act": _act_code(layer, layer.activation), "h_in": h_in, "w_in": w_in,
                    "c_in": c_in, "h_out": h_out, "w_out": w_out, "c_out": c_out, "kh": kh,
                    "kw": kw, "sh": sh, "sw": sw,
                    "pad_h": conv_padding(h_in, h_out, kh, sh, layer.padding, transposed),
                    "pad_w": conv_padding(w_in, w_out, kw, sw, layer.padding, transposed)}
            bias = layer.bias.numpy() if layer.use_bias else np.zeros(c_out)
            if transposed:  # (kh, kw, c_out, c_in) -> (c_in, kh*kw*c_out)
                w = kernel.transpose(3, 0, 1, 2).reshape(c_in, kh * kw * c_out)
            else:  # (kh, kw, c_in, c_out) -> (kh*kw*c_in, c_out)
                w = kernel.reshape(kh * kw * c_in, c_out)
            add(vals, [w, bias])
        elif type(layer).__name__ == "LocalOutput":  # autoencoder.local_output (imports Keras)
            h_in, w_in, c_in = _spatial(layer.input.shape)
            h_out, w_out, c_out = layer.out_shape
            (kh, kw), (sh, sw) = layer.window, layer.strides
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
            add({"kind": LOCAL, "act": 0, "h_in": h_in, "w_in": w_in, "c_in": c_in,
                 "h_out": h_out, "w_out": w_out, "c_out": c_out, "kh": kh, "kw": kw,
                 "sh": sh, "sw": sw, "pad_h": kh // 2, "pad_w": kw // 2},
                [kernel.reshape(h_out * w_out * c_out, kh * kw * c_in), layer.bias.numpy()])
        elif isinstance(layer, L.Activation | L.ELU):
            if isinstance(layer, L.ELU):
                if float(layer.alpha) != 1.0:
                    raise UnsupportedLayerError(f"layer {layer.name!r}: ELU alpha != 1 is not "
                                                f"supported")
                code = ACTIVATION_CODES["elu"]
            else:
                code = _act_code(layer, layer.activation)
            n = int(np.prod([int(s) for s in layer.input.shape[1:]]))
            add({"kind": ACTIVATION, "act": code, "h_in": 1, "w_in": 1, "c_in": n,
                 "h_out": 1, "w_out": 1, "c_out": n}, [])
        else:
            raise UnsupportedLayerError(
                f"layer {layer.name!r} of type {type(layer).__name__} is not supported by the "
                f"numba exporter (supported: Dense, Reshape, Flatten, Conv1D/2D, "
                f"Conv1D/2DTranspose, LocalOutput, Activation, ELU)")
    if not rows:
        raise UnsupportedLayerError(f"model {model.name!r} has no layers to export")
    data = np.concatenate(chunks) if chunks else np.zeros(0)
    return np.vstack(rows), data
