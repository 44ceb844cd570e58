"""A trained manifold, loaded for the online solvers without TensorFlow.

The trial manifold of Lee & Carlberg (2019), eq. (3.1): ``x~(t; mu) = x_ref(mu) + g(x^(t; mu))``,
with ``g`` the decoder in state units (decoder, then unscaling, then prolongation) and the
reference state of Remark 3.1, ``x_ref(mu) = x0(mu) - g(x^0(mu))``, so ``x~(0) = x0``.

This module imports numpy, h5py and numba only. The model directory layout (docs/formats.md,
"Trained-model folders")::

    manifest.json      shapes, p, target, scaling (per channel), architecture, training
                       settings, snapshot checksum, test reconstruction error (written last:
                       a directory without it is incomplete)
    autoencoder.keras  the Keras model (load with safe_mode=True)
    exported.h5        /decoder/{meta,data}, /encoder/{meta,data}, /restriction/{pix,pad}
    history.json       per-epoch losses, learning rates and times

Format version 2 (multi-channel images, padding, one scaling per channel); folders of version
1 (``/restriction/perm``, one scalar scaling, no padding) are read as well.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numba
import numpy as np

from fom.errors import InputError

from . import kernels as K
from .blas import single_threaded
from .data import Restriction, Scaling
from .restricted import ConePlan, cone_cost, cone_decode, cone_plan

MANIFEST = "manifest.json"
EXPORTED = "exported.h5"
KERAS_FILE = "autoencoder.keras"
HISTORY = "history.json"
FORMAT_VERSION = 2
#: Format versions :func:`load_trained_manifold` reads.
READABLE_VERSIONS = (1, 2)
#: Row sets whose dependency-cone plans :meth:`TrainedManifold.decode_rows` keeps.
MAX_PLANS = 4


def _out_size(m: np.ndarray) -> int:
    return int(m[5] * m[6] * m[7])


def _in_size(m: np.ndarray) -> int:
    return int(m[2] * m[3] * m[4])


def _check_network(meta: np.ndarray, data: np.ndarray, n_in: int, n_out: int, what: str,
                   path: Path) -> None:
    if meta.ndim != 2 or meta.shape[1] != K.N_META or meta.shape[0] < 1:
        raise InputError(f"{path}: /{what}/meta has shape {meta.shape}, expected (n, {K.N_META})")
    if _in_size(meta[0]) != n_in or _out_size(meta[-1]) != n_out:
        raise InputError(f"{path}: the {what} maps {_in_size(meta[0])} -> "
                         f"{_out_size(meta[-1])} values, expected {n_in} -> {n_out}")
    for l in range(meta.shape[0]):
        m = meta[l]
        if l > 0 and _in_size(m) != _out_size(meta[l - 1]):
            raise InputError(f"{path}: {what} layer {l} expects {_in_size(m)} inputs but the "
                             f"previous layer gives {_out_size(meta[l - 1])}")
        if (m[0] not in (K.DENSE, K.CONV_T, K.CONV, K.ACTIVATION, K.LOCAL)
                or m[1] not in range(len(K.ACTIVATION_CODES))):
            raise InputError(f"{path}: {what} layer {l} has an unknown kind or activation")
        n_bias = int(m[7])
        if m[0] == K.DENSE:
            need = int(m[14] + m[4] * m[7])
        elif m[0] in (K.CONV_T, K.CONV):
            need = int(m[14] + m[4] * m[7] * m[8] * m[9])
        elif m[0] == K.LOCAL:
            if min(m[8], m[9], m[10], m[11]) < 1 or m[1] != 0:
                raise InputError(f"{path}: {what} layer {l} (locally connected) has a window "
                                 f"{m[8]} x {m[9]}, strides {m[10]} x {m[11]} (each must be "
                                 f">= 1) or an activation (must be linear)")
            n_bias = _out_size(m)
            need = int(m[14] + n_bias * m[4] * m[8] * m[9])
        else:
            continue
        if min(m[14], m[15]) < 0 or need > data.size or m[15] + n_bias > data.size:
            raise InputError(f"{path}: {what} layer {l} points outside /{what}/data")


@dataclass
class TrainedManifold:
    """Decoder ``g`` and encoder ``h`` of a trained autoencoder, in state units, float64.

    Attributes
    ----------
    p : int
        Latent dimension.
    n_dofs : int
        State dimension ``N``.
    target : {"deviation", "raw"}
        What the autoencoder was trained on: ``x - x0`` (the paper's section 5.3) or ``x``.
    restriction : autoencoder.data.Restriction
        State <-> image (``pix``: image entry of each state entry; the pad values).
    scaling : autoencoder.data.Scaling
        Per-channel bounds: the decoder's output ``y`` is ``g_i = lo_i + rng_i y_{pix_i}`` in
        state units, with ``lo_i``, ``rng_i`` those of row ``i``'s channel.
    """

    path: Path
    p: int
    n_dofs: int
    target: str
    restriction: Restriction
    scaling: Scaling
    dec_meta: np.ndarray
    dec_data: np.ndarray
    enc_meta: np.ndarray
    enc_data: np.ndarray
    manifest: dict[str, Any]
    #: Threads of :meth:`decode_with_jacobian` (at most ``p`` and numba's thread count): with
    #: more than one, the ``p`` tangent directions are shared out among threads that each
    #: also compute the value (:func:`autoencoder.kernels.decode_jacobian_parallel`). With two
    #: threads each does 0.6 (``p = 10``) or 0.8 (``p = 3``) of the one-thread kernel's work
    #: (measured in CPU time), which pays only on cores that are otherwise idle; on busy ones
    #: every call waits for the other thread to be scheduled and is slower than one thread
    #: (measured under load 5-8 on 2 cores: 1.2-2x slower); hence 1 by default.
    #: Importing :mod:`autoencoder.kernels` makes numba's OpenMP threads wait passively
    #: (``OMP_WAIT_POLICY=PASSIVE``) unless numba started its threads before: then set that
    #: variable in the environment.
    threads: int = 1

    def __post_init__(self) -> None:
        r = self.restriction
        if r.n_dofs != self.n_dofs or self.scaling.lo.size != r.n_channels:
            raise InputError(f"{self.path}: the restriction ({r.n_dofs} entries, "
                             f"{r.n_channels} channels) does not fit N = {self.n_dofs} and "
                             f"{self.scaling.lo.size} scaling channel(s)")
        self.pix = r.pix
        self._lo, self._rng = self.scaling.rows(r)
        #: the encoder's input template: every entry at its channel's scaled pad value
        self._pad_scaled = np.tile((r.pad - self.scaling.lo) / self.scaling.range,
                                   r.n_pixels // r.n_channels)
        last_weight = max(l for l in range(self.dec_meta.shape[0])
                          if self.dec_meta[l, 0] != K.ACTIVATION)
        if self.dec_meta[last_weight, 0] not in (K.DENSE, K.CONV_T, K.LOCAL):
            raise InputError(f"{self.path}: the decoder's last weight layer must be Dense, "
                             f"a transposed convolution or locally connected")
        self._plans: dict[bytes, tuple[ConePlan, np.ndarray, np.ndarray]] = {}
        if not isinstance(self.threads, int) or self.threads < 1:
            raise InputError(f"threads must be a positive integer, got {self.threads!r}")

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.restriction.image_shape

    @property
    def lo(self) -> np.ndarray:
        """Per-channel lower bounds of the scaling."""
        return self.scaling.lo

    @property
    def hi(self) -> np.ndarray:
        """Per-channel upper bounds of the scaling."""
        return self.scaling.hi

    # ------------------------------------------------------------------ checks
    def _z(self, z: Any) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float64).reshape(-1)
        if z.size != self.p:
            raise InputError(f"latent vector has {z.size} entries, the manifold {self.path} "
                             f"has p = {self.p}")
        return z

    def _x(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.n_dofs:
            raise InputError(f"state vector has {x.size} entries, the manifold {self.path} "
                             f"was trained on N = {self.n_dofs}")
        return x

    # ------------------------------------------------------------------ decoder
    def decode(self, z: Any) -> np.ndarray:
        """``g(z)``, shape (N,): decoder, unscaled per channel and prolonged to a state."""
        return single_threaded(K.decode_kernel, self.dec_meta, self.dec_data, self._z(z),
                               self._lo, self._rng, self.pix)

    def decode_with_jacobian(self, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """``g(z)`` (N,) and ``J(z) = dg/dz`` (N, p) in one forward-mode pass (on
        :attr:`threads` threads)."""
        z = self._z(z)
        threads = min(self.threads, self.p, numba.get_num_threads())
        if threads > 1:
            return single_threaded(K.decode_jacobian_parallel, self.dec_meta, self.dec_data,
                                   z, self._lo, self._rng, self.pix, threads)
        return single_threaded(K.decode_jacobian_kernel, self.dec_meta, self.dec_data, z,
                               self._lo, self._rng, self.pix)

    def _plan(self, rows: Any) -> tuple[ConePlan, np.ndarray, np.ndarray]:
        """The dependency-cone plan of state rows ``rows`` and their unscaling (cached for
        the last :data:`MAX_PLANS` row sets: a sample mesh's rows do not change)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        key = rows.tobytes()
        hit = self._plans.get(key)
        if hit is not None:
            return hit
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_dofs):
            raise InputError(f"rows must lie in [0, {self.n_dofs}), got {rows.min()}.."
                             f"{rows.max()}")
        plan = cone_plan(self.dec_meta, self.dec_data, self.pix[rows])
        hit = (plan, np.ascontiguousarray(self._lo[rows]), np.ascontiguousarray(self._rng[rows]))
        if len(self._plans) >= MAX_PLANS:
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = hit
        return hit

    def decode_rows(self, z: Any, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """Entries ``rows`` of ``g(z)`` and the same rows of ``J(z)`` (hyper-reduction).

        Every layer is evaluated only on the part of its output that those rows depend on
        (the dependency cone, :mod:`autoencoder.restricted`), equal to the full rows to
        round-off.
        """
        plan, lo, rng = self._plan(rows)
        return single_threaded(cone_decode, plan.layers, plan.groups, plan.index,
                               plan.weights, plan.out_pos, self._z(z), lo, rng)

    def cone_cost(self, rows: Any) -> dict[str, float]:
        """Multiply-adds per batch row (value or tangent) of :meth:`decode_rows` at ``rows``
        and of the full decoder, and their ratio (:func:`autoencoder.restricted.cone_cost`)."""
        return cone_cost(self._plan(rows)[0])

    # ------------------------------------------------------------------ encoder
    def encode(self, y: Any) -> np.ndarray:
        """``h(y)``, shape (p,). ``y`` lives where ``g``'s outputs do: a deviation ``x - x0``
        for ``target = "deviation"``, a state for ``target = "raw"``."""
        return self.encode_many(self._x(y)[None])[0]

    def encode_many(self, Y: Any) -> np.ndarray:
        """``h`` of each row of ``Y`` (n, N) -> (n, p)."""
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] != self.n_dofs:
            raise InputError(f"states must have shape (n, {self.n_dofs}), got {Y.shape}")
        S = np.empty((Y.shape[0], self._pad_scaled.size))
        S[:] = self._pad_scaled
        S[:, self.pix] = (Y - self._lo) / self._rng
        return K.encode_kernel(self.enc_meta, self.enc_data, S)

    def reference_state(self, x0: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(x_ref, z0)`` with ``x_ref + g(z0) = x0`` (Remark 3.1).

        ``z0 = h(0)`` for every ``mu`` when trained on deviations (section 5.3), ``h(x0)``
        when trained on raw states; ``x_ref = x0 - g(z0)``.
        """
        x0 = self._x(x0)
        z0 = self.encode(np.zeros_like(x0) if self.target == "deviation" else x0)
        return x0 - self.decode(z0), z0

    def reconstruct(self, states: np.ndarray, through_reference: bool = False) -> np.ndarray:
        """Autoencoder reconstruction (encode, decode) of one trajectory (n_t, N).

        By default ``x0 + g(h(x^n - x0))`` for ``target = "deviation"`` and ``g(h(x^n))`` for
        ``"raw"``. With ``through_reference`` the decoded point is placed on the ROM's trial
        manifold instead, ``x_ref + g(h(.))`` with ``x_ref`` of :meth:`reference_state`, which
        adds the decoder's error at the initial latent state, ``g(x^0) - (0 or x0)``, to
        every step.
        """
        states = np.asarray(states, dtype=np.float64)
        x0 = states[0]
        y = states - x0 if self.target == "deviation" else states
        G = np.array([self.decode(z) for z in self.encode_many(y)])
        if through_reference:
            return self.reference_state(x0)[0] + G
        return x0 + G if self.target == "deviation" else G


def _read_manifest(path: Path) -> dict[str, Any]:
    f = path / MANIFEST
    if not f.is_file():
        raise InputError(f"{f}: missing (not a complete trained-model directory)")
    try:
        man = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{f}: unreadable or invalid JSON ({exc})") from None
    if not isinstance(man, dict):
        raise InputError(f"{f}: must be a JSON object")
    for key in ("p", "n_dofs", "target", "image_shape", "scaling", "format_version"):
        if key not in man:
            raise InputError(f"{f}: missing key '{key}'")
    if man["format_version"] not in READABLE_VERSIONS:
        raise InputError(f"{f}: format version {man['format_version']!r}, expected one of "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    return man


def load_trained_manifold(model_dir: str | os.PathLike,
                          allow_incomplete: bool = False) -> TrainedManifold:
    """Load a trained-model directory written by :func:`autoencoder.train.train_model`.

    Parameters
    ----------
    model_dir : path
    allow_incomplete : bool
        Also load a model whose training a wall-time budget paused (``"complete": false``
        in the manifest); by default such a model is refused.

    Raises
    ------
    InputError
        Naming the file at fault (missing file, bad JSON, shapes that disagree with the
        manifest, an incomplete model).
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise InputError(f"model directory {path} does not exist")
    man = _read_manifest(path)
    mf = path / MANIFEST
    if man.get("complete", True) is not True and not allow_incomplete:
        last = man.get("training_result", {})
        raise InputError(f"{mf}: incomplete model (the wall-time budget stopped stage "
                         f"{last.get('stage')} after epoch {last.get('epochs_run')} of "
                         f"{last.get('epochs')}); run 'mrom train' again to continue it")
    version = man["format_version"]
    try:
        p, n = int(man["p"]), int(man["n_dofs"])
        image_shape = tuple(int(s) for s in man["image_shape"])
        scaling = Scaling.from_dict(man["scaling"])
        target = str(man["target"])
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(f"{mf}: malformed entry ({exc})") from None
    except InputError as exc:
        raise InputError(f"{mf}: {exc}") from None
    if target not in ("deviation", "raw"):
        raise InputError(f"{mf}: target must be 'deviation' or 'raw', got {target!r}")
    if not image_shape or int(np.prod(image_shape)) < n or p < 1:
        raise InputError(f"{mf}: image shape {list(image_shape)} does not hold N = {n} values")
    if scaling.lo.size != image_shape[-1]:
        raise InputError(f"{mf}: scaling has {scaling.lo.size} channel(s), the image "
                         f"{image_shape[-1]}")
    ef = path / EXPORTED
    if not ef.is_file():
        raise InputError(f"{ef}: missing")
    names = ["decoder/meta", "decoder/data", "encoder/meta", "encoder/data"]
    names += ["restriction/perm"] if version == 1 else ["restriction/pix", "restriction/pad"]
    try:
        with h5py.File(ef, "r") as f:
            arrs = {k: np.asarray(f[k][()]) for k in names}
    except (OSError, KeyError) as exc:
        raise InputError(f"{ef}: unreadable or incomplete ({exc})") from None
    dec_meta = np.ascontiguousarray(arrs["decoder/meta"], dtype=np.int64)
    enc_meta = np.ascontiguousarray(arrs["encoder/meta"], dtype=np.int64)
    dec_data = np.ascontiguousarray(arrs["decoder/data"], dtype=np.float64)
    enc_data = np.ascontiguousarray(arrs["encoder/data"], dtype=np.float64)
    if version == 1:  # image.ravel() = x[perm]: a permutation, no padding
        perm = np.asarray(arrs["restriction/perm"], dtype=np.int64)
        if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)) \
                or int(np.prod(image_shape)) != n:
            raise InputError(f"{ef}: /restriction/perm is not a permutation of {n} entries")
        pix, pad = np.empty_like(perm), np.zeros(image_shape[-1])
        pix[perm] = np.arange(n)
    else:
        pix, pad = arrs["restriction/pix"], arrs["restriction/pad"]
        if pix.shape != (n,):
            raise InputError(f"{ef}: /restriction/pix has shape {pix.shape}, expected ({n},)")
    try:
        restriction = Restriction(image_shape, pix, pad)
    except InputError as exc:
        raise InputError(f"{ef}: {exc}") from None
    m = restriction.n_pixels
    _check_network(dec_meta, dec_data, p, m, "decoder", ef)
    _check_network(enc_meta, enc_data, m, p, "encoder", ef)
    for name, d in (("decoder", dec_data), ("encoder", enc_data)):
        if not np.all(np.isfinite(d)):
            raise InputError(f"{ef}: /{name}/data contains NaN or Inf values")
    return TrainedManifold(path, p, n, target, restriction, scaling, dec_meta, dec_data,
                           enc_meta, enc_data, man)
