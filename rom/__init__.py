"""Reduced-order models on trial manifolds: POD and autoencoder decoders (Lee & Carlberg).

``rom`` holds the trial manifolds (:mod:`rom.manifolds`), the LSPG and Galerkin projections
(:mod:`rom.projection`), error measures (:mod:`rom.metrics`), the results file
(:mod:`rom.results`) and the config-driven online stage (:mod:`rom.online`). Importing it never
imports TensorFlow: the decoder manifold runs on the autoencoder's exported numba kernels.
"""

from .manifolds import AffineManifold, DecoderManifold
from .projection import ROMOptions, ROMResult, solve_rom

__all__ = ["AffineManifold", "DecoderManifold", "ROMOptions", "ROMResult", "solve_rom"]
