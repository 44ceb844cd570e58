"""Convolutional autoencoders for nonlinear trial manifolds (Lee & Carlberg 2019, section 4).

``autoencoder.train`` (TensorFlow/Keras) trains the paper's architecture and writes a model
directory; ``autoencoder.manifold`` loads it for the online solvers with numba kernels only.
Importing this package does not import TensorFlow, but it sets TensorFlow's
``TF_ENABLE_ONEDNN_OPTS`` to 1 unless it is already set: TensorFlow turns its oneDNN
convolution kernels on by default only on CPUs with AVX-512 neural-network instructions
(VNNI and newer); on others (AVX2 CPUs such as AMD's Zen 2 and Zen 3) it runs Eigen's, with
which the p = 3 Burgers recipe took 1.5x as long on an AVX2 Zen 3 (stage 0 1.4x, the tangent
stage 1.7x; README, "Training time"; ``benchmarks/training_speed.py``). The variable is read
once, when TensorFlow starts: import this package before TensorFlow, or set it in the
environment (0 turns the kernels off); training warns when TensorFlow started first.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from .manifold import TrainedManifold, load_trained_manifold

__all__ = ["TrainedManifold", "load_trained_manifold"]
