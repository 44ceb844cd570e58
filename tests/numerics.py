"""Numerical helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def central_difference_jacobian(fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                                h: float = 1e-6) -> np.ndarray:
    """Dense ``d fun / dx`` at ``x`` by central differences, column by column."""
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        cols.append((fun(x + e) - fun(x - e)) / (2 * h))
    return np.stack(cols, axis=1)


def keras_jacobian(model: Any, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A Keras decoder's flattened output at the latent ``z`` and its Jacobian ``(n_out, p)``
    by TensorFlow's automatic differentiation (the reference of the numba kernels)."""
    import tensorflow as tf

    zt = tf.constant(z[None])
    with tf.GradientTape() as tape:
        tape.watch(zt)
        y = tf.reshape(model(zt), [-1])
    return y.numpy(), tape.jacobian(y, zt).numpy().reshape(y.shape[0], z.size)
