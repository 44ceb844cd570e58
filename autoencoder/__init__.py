"""Convolutional autoencoders for nonlinear trial manifolds (Lee & Carlberg 2019, section 4).

``autoencoder.train`` (TensorFlow/Keras) trains the paper's architecture and writes a model
directory; ``autoencoder.manifold`` loads it for the online solvers with numba kernels only.
Importing this package does not import TensorFlow.
"""

from .manifold import TrainedManifold, load_trained_manifold

__all__ = ["TrainedManifold", "load_trained_manifold"]
