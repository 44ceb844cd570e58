"""The locally connected output layer of the ``decoder = "local"`` architecture (Keras 3).

Every entry ``(y, x, o)`` of the output image has its own weights on the ``kh x kw`` cells of
a coarser hidden grid around it, all ``C`` channels::

    out[y, x, o] = bias[y, x, o] + sum_{a < kh, b < kw, c < C} w[y, x, o, (a kw + b) C + c]
                                     * h[y // sh + a - kh // 2, x // sw + b - kw // 2, c]

(cells outside the hidden grid read 0). It is the sparse output layer of a shallow masked
decoder (Kim, Choi, Widemann & Zohdi 2022, NM-ROM): each state entry depends on a few hidden
units only, but unlike a transposed convolution no two entries share weights, so a sharp front
can be drawn differently at every place it passes. The numba kernels evaluate it as layer kind
``LOCAL`` (:mod:`autoencoder.kernels`, :mod:`autoencoder.restricted`), with the weights
exported as a ``(h_out * w_out * c_out, kh * kw * C)`` matrix in this order.

This module imports Keras; import it before loading a saved model that uses the layer
(:func:`autoencoder.model.build_decoder` and the loaders do).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="manifold_rom")
class LocalOutput(keras.layers.Layer):
    """Locally connected upsampling: hidden grid ``(h_in, w_in, C)`` -> image ``shape``.

    Parameters
    ----------
    shape : (int, int, int)
        The output image ``(h_out, w_out, c_out)``.
    window : (int, int)
        ``(kh, kw)``: hidden cells read per output entry in each direction.
    strides : (int, int)
        ``(sh, sw)``: output pixels per hidden cell in each direction.
    """

    def __init__(self, shape: tuple[int, int, int], window: tuple[int, int],
                 strides: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_shape = tuple(int(s) for s in shape)
        self.window = tuple(int(k) for k in window)
        self.strides = tuple(int(s) for s in strides)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        h_in, w_in, c_in = (int(s) for s in input_shape[1:])
        h, w, c = self.out_shape
        n_taps = self.window[0] * self.window[1] * c_in
        self.kernel = self.add_weight(
            name="kernel", shape=(h, w, c, n_taps),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(n_taps)))
        self.bias = self.add_weight(name="bias", shape=(h, w, c), initializer="zeros")
        # the padded hidden grid must hold cells y // sh + a for every y < h_out, a < kh
        self._pads = [(k // 2, max(0, -(-n // s) + k - 1 - k // 2 - m))
                      for n, m, k, s in zip((h, w), (h_in, w_in), self.window, self.strides,
                                            strict=True)]

    def call(self, hidden: Any) -> Any:
        """The window of every hidden cell ``(i, j)`` is gathered once, and the ``sh * sw``
        output pixels ``(i sh + a, j sw + d)`` that read it are computed from it by one batched
        product (no upsampled copy of the windows: half the time of gathering per pixel)."""
        (kh, kw), (sh, sw) = self.window, self.strides
        h, w, c = self.out_shape
        nh, nw = -(-h // sh), -(-w // sw)
        hp = ops.pad(hidden, [(0, 0), *self._pads, (0, 0)])
        P = ops.concatenate([hp[:, a:a + nh, b:b + nw, :] for a in range(kh)
                             for b in range(kw)], axis=-1)           # (B, nh, nw, K)
        k = ops.pad(self.kernel, [(0, nh * sh - h), (0, nw * sw - w), (0, 0), (0, 0)])
        k = ops.reshape(k, (nh, sh, nw, sw, c, -1))
        out = ops.reshape(ops.einsum("bijq,iajdcq->biajdc", P, k), (-1, nh * sh, nw * sw, c))
        return out[:, :h, :w, :] + self.bias

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[Any, ...]:
        return (input_shape[0], *self.out_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shape": list(self.out_shape),
                "window": list(self.window), "strides": list(self.strides)}
