"""Shared fixtures: keep TensorFlow quiet and off the GPU, small problems."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import autoencoder  # noqa: E402, F401  (its TensorFlow settings before any test starts TensorFlow)
