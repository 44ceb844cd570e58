"""Training of the convolutional autoencoder and the trained-manifold directory.

Lee & Carlberg (2019), section 6.1: Adam on the mean squared error of the scaled data,
mini-batches, early stopping on a validation set with the best weights kept. Here the
validation set is whole trajectories of the training file held out from training
(``validation_every``, ``validation_params``; none when both are off, and then the stage runs
its epochs and keeps the last weights). Added: learning-rate schedules, a snapshot stride,
fixed seeds and deterministic ops (the same weights when trained twice on one machine),
checkpoints every few epochs so that a killed training resumes where it stopped and ends with
the same weights (the shuffling of each epoch is a function of the seed and the epoch number),
a divergence guard (an epoch whose loss explodes is rolled back and rerun at half the rate),
and an opt-in wall-time budget that pauses a training into an incomplete model instead of
ending it (what a config trains never depends on the machine's speed).

``initial_state_weight = w > 0`` adds ``w`` times the mean squared error of the trajectories'
initial states (for the deviation target the single image of ``x0 - x0 = 0``) to the loss.
The reference state ``x_ref = x0 - g(h(x0 - x0))`` of section 5.3 makes the ROM start exactly
at ``x0``, but it also adds ``-g(h(0))`` to every later ROM state; an initial state is one
snapshot in 501 of a trajectory, so without the weight the decoder fits it loosely (on 1D
Burgers ``|g(h(0))|`` reaches 0.1-0.2 at the inflow cells, the corner of the 16 x 16 image),
and that rough offset dominates the LSPG residual (1). With ``w = 10`` (as in
``examples/burgers1d.toml``) it drops to ~1e-3.

With ``variational = true`` the loss is the negative ELBO of TensorFlow's CVAE tutorial,
``MSE(x, g(z)) + beta * KL(N(mean, exp(log_var)) || N(0, I))`` with ``z = mean + exp(log_var /
2) * eps`` (reparameterization trick); online, the decoder is used at the mean.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fom.atomic import atomic_path, write_text_atomic
from fom.config import RunConfig, load_config
from fom.errors import InputError
from fom.snapshots import (
    SnapshotSet,
    problem_from_config,
    read_snapshots,
    snapshot_paths,
    snapshots_from_config,
)

from .data import (
    Restriction,
    Scaling,
    epoch_order,
    hard_example_weights,
    prepare,
    sample_split,
    targets,
    trajectory_neighbours,
    validation_trajectories,
)
from .manifold import (
    EXPORTED,
    FORMAT_VERSION,
    HISTORY,
    KERAS_FILE,
    MANIFEST,
    TrainedManifold,
    load_trained_manifold,
)
from .residual import TrajectoryResidual, residual_scale, trajectory_residual
from .settings import (
    AUTOENCODER_SCHEMA,
    RUN_CONTROL_KEYS,
    TRAINING_SCHEMA,
    check_architecture,
    training_stages,
)

CHECKPOINT_DIR = "checkpoint"

#: Divergence rollbacks allowed per stage before training gives up.
MAX_ROLLBACKS = 5

#: The bookkeeping a repeated divergence restores with the weights of the lowest-loss epoch
#: (the epoch counter is set to that epoch; the training loss' minimum and the rollbacks stay).
_LOWEST_KEYS = ("best_val", "best_epoch", "wait", "lr", "plateau_best", "plateau_wait")


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def same_settings(stored: Any, settings: dict[str, Any]) -> bool:
    """Whether a model or checkpoint recorded with ``stored`` settings was trained with
    ``settings``. An ``[autoencoder]`` or ``[training]`` key that ``stored`` lacks counts as
    equal at its default (a model trained before the key existed is not stale)."""
    new = _jsonable(settings)
    if stored == new:
        return True
    if not isinstance(stored, dict):
        return False
    trimmed = dict(new)
    for name, schema in (("autoencoder", AUTOENCODER_SCHEMA), ("training", TRAINING_SCHEMA)):
        old_sec, new_sec = stored.get(name), new.get(name)
        if not isinstance(old_sec, dict) or not isinstance(new_sec, dict):
            continue
        trimmed[name] = {k: v for k, v in new_sec.items()
                         if k in old_sec or k not in schema
                         or v != _jsonable(schema[k].default)}
    return stored == trimmed


def settings_from_config(cfg: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validated ``[autoencoder]`` and ``[training]`` sections of a run config (the
    fine-tuning stages included; the architecture checked against the problem's image,
    :func:`restriction_from_config`)."""
    ae = check_architecture(cfg.section("autoencoder", AUTOENCODER_SCHEMA),
                            cfg.where("autoencoder"))
    tr = cfg.section("training", TRAINING_SCHEMA)
    training_stages(tr, cfg.where("training"))
    restriction_from_config(cfg, ae)
    return ae, tr


def restriction_from_config(cfg: RunConfig, arch: dict[str, Any]) -> Restriction:
    """The restriction of the config's problem for the validated ``[autoencoder]`` section
    ``arch`` (``dims``, ``image_size``, ``target``), after checking that the architecture's
    strides fit its image (:func:`autoencoder.model.check_image`)."""
    from .model import check_image

    problem = problem_from_config(cfg)
    where = cfg.where("autoencoder")
    try:
        restriction = Restriction.for_problem(problem, arch["dims"], arch["image_size"],
                                              arch["target"])
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    check_image(restriction.image_shape, arch, where)
    return restriction


def relative_trajectory_error(x: np.ndarray, x_approx: np.ndarray) -> float:
    """The paper's relative error ``sqrt(sum_n |x^n - x~^n|^2) / sqrt(sum_n |x^n|^2)``."""
    return float(np.linalg.norm(x - x_approx) / np.linalg.norm(x))


def reconstruction_errors(manifold: TrainedManifold, snap: SnapshotSet,
                          through_reference: bool = False) -> list[float]:
    """Relative reconstruction error (encode, decode) of each trajectory of ``snap``; see
    :meth:`TrainedManifold.reconstruct` for ``through_reference``."""
    check_fits(manifold.n_dofs, snap)
    return [relative_trajectory_error(s, manifold.reconstruct(s, through_reference))
            for s in snap.states]


def tensorflow_onednn() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels in this process, as TensorFlow itself reports
    it (``None`` where this TensorFlow does not say): fixed by ``TF_ENABLE_ONEDNN_OPTS`` when
    TensorFlow started, which importing ``autoencoder`` first sets to 1 (package docstring). The
    kernels change the last bits of the trained weights, so the manifest records it."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # no public API says it
    except ImportError:
        return None
    enabled = getattr(_pywrap_util_port, "IsMklEnabled", None)
    return None if enabled is None else bool(enabled())


def onednn_started_late() -> str | None:
    """The warning for a process whose TensorFlow runs without oneDNN although ``autoencoder``
    asked for it: TensorFlow started before the package set ``TF_ENABLE_ONEDNN_OPTS=1`` (it
    reads the variable once, at its start), so the training runs on Eigen's kernels, about
    1.5x slower on an AVX2 CPU. ``None`` when oneDNN runs, when the environment chose
    otherwise, where TensorFlow does not say, or on a CPU other than x86."""
    if (platform.machine().lower() not in ("x86_64", "amd64")
            or os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "1" or tensorflow_onednn() is not False):
        return None
    return ("TensorFlow started before autoencoder set TF_ENABLE_ONEDNN_OPTS=1, so it trains "
            "without its oneDNN kernels (about 1.5x slower on CPUs without AVX-512 VNNI); "
            "import autoencoder before tensorflow or keras, or set the variable in the "
            "environment")


def check_fits(n_dofs: int, snap: SnapshotSet) -> None:
    """Refuse a snapshot file whose state size differs from the model's input size."""
    if snap.n_dofs != n_dofs:
        raise InputError(f"{snap.path}: states have N = {snap.n_dofs} entries but the model "
                         f"takes N = {n_dofs}; the model does not fit this snapshot file")


# ----------------------------------------------------------------------------- training


class _Trainer:
    """One model: the Keras objects, the training state and its checkpoint."""

    def __init__(self, images: np.ndarray, image_shape: tuple[int, ...], p: int,
                 arch: dict[str, Any], tr: dict[str, Any], out_dir: Path,
                 settings: dict[str, Any], progress: bool,
                 anchors: np.ndarray | None = None,
                 residual: TrajectoryResidual | None = None,
                 split: tuple[np.ndarray, np.ndarray] | None = None,
                 n_t: int | None = None) -> None:
        import keras
        import tensorflow as tf

        from .model import build_autoencoder

        late = onednn_started_late()
        if late:
            warnings.warn(late, RuntimeWarning, stacklevel=2)
        self.tf, self.keras = tf, keras
        self.arch, self.tr, self.p = arch, tr, p
        self.out_dir, self.settings, self.progress = out_dir, settings, progress
        self.ckpt = out_dir / CHECKPOINT_DIR
        keras.utils.set_random_seed(tr["seed"])
        tf.config.experimental.enable_op_determinism()
        self.ae, self.enc, self.dec = build_autoencoder(image_shape, p, arch)
        self.vars = self.ae.trainable_variables
        self.opt = keras.optimizers.Adam(learning_rate=tr["learning_rate"])
        self.opt.build(self.vars)
        # with the residual term a sample is a step n >= 1 with its history (residual.py)
        self.images, self.residual = images, residual
        # residual_normalization: each step's residual times its c of (5) or (6) of
        # residual.py (applied to its operator values and coefficients as they are gathered)
        self.res_scale: np.ndarray | None = None
        if residual is not None and tr["residual_normalization"] != "none":
            if n_t is None:
                raise InputError("residual_normalization needs the trajectory length")
            self.res_scale = residual_scale(residual, images, n_t, tr["residual_normalization"])
        n_samples = images.shape[0] if residual is None else residual.n_samples
        if split is None:  # every sample trains, no validation
            split = (np.arange(n_samples), np.zeros(0, dtype=np.int64))
        self.i_train, self.i_val = split
        self.state: dict[str, Any] = {
            "settings": settings, "epoch": 0, "history": [], "best_val": math.inf,
            "best_epoch": 0, "wait": 0, "lr": tr["learning_rate"], "plateau_wait": 0,
            "plateau_best": math.inf, "elapsed_s": 0.0, "cpu_s": 0.0, "stopped_by": None,
            "budget_stops": [], "best_loss": math.inf, "rollbacks": []}
        self.best_weights = [v.numpy() for v in self.ae.weights]
        self._lowest: dict[str, Any] | None = None  # the lowest-loss epoch's state (fit)
        # the measures m_i of the hard-example weights of the training samples (in the
        # order of i_train) held between epochs: each sample's error in its step of the last
        # epoch (hard_example_errors = "training_pass"), or the last recomputed ones
        # (hard_example_every > 1); None before the first epoch
        self.pass_errors: np.ndarray | None = None
        self.anchors = anchors
        # the latent-smoothness term compares each sample's code with its neighbours'
        self.neighbours = None
        if tr["latent_smoothness_weight"] > 0:
            if residual is not None or arch["variational"] or n_t is None:
                raise InputError("latent_smoothness_weight needs a deterministic autoencoder, "
                                 "no residual term in the stage and the trajectory length")
            self.neighbours = trajectory_neighbours(images.shape[0], n_t,
                                                    tr["snapshot_stride"])
        if tr["residual_projection"] != "none" and arch["variational"]:
            raise InputError("residual_projection = 'tangent' needs a deterministic "
                             "autoencoder (variational = false)")
        self._build_steps()

    # -------------------------------------------------------------- steps
    def _build_steps(self) -> None:
        tf, enc, dec, ae = self.tf, self.enc, self.dec, self.ae
        beta = float(self.arch["kl_weight"])
        variational = self.arch["variational"]
        vars_, opt = self.vars, self.opt
        weight = float(self.tr["initial_state_weight"])
        anchors = (tf.constant(self.anchors)
                   if weight > 0 and self.anchors is not None and len(self.anchors) else None)

        def anchor_loss() -> Any:
            """Mean squared error of the initial states (section 5.3: the reference state
            ``x_ref = x0 - g(h(x0 - x0))`` carries this error into every ROM state)."""
            if anchors is None:
                return 0.0
            code = enc(anchors, training=True)
            rec = dec(code[0] if variational else code, training=True)
            return weight * tf.reduce_mean(tf.square(rec - anchors))

        def reconstruct(x: Any, seed: Any, sample: bool) -> tuple[Any, Any]:
            """The reconstruction of ``x`` and the KL term (0 unless variational)."""
            if not variational:
                return ae(x, training=True), 0.0
            mean, log_var = enc(x, training=True)
            z = mean
            if sample:
                eps = tf.random.stateless_normal(tf.shape(mean), seed=seed, dtype=mean.dtype)
                z = mean + tf.exp(0.5 * log_var) * eps
            kl = -0.5 * tf.reduce_mean(tf.reduce_sum(
                1.0 + log_var - tf.square(mean) - tf.exp(log_var), axis=1))
            return dec(z, training=True), kl

        def encode_with_anchors(*parts: Any) -> Any:
            """The codes of the batches ``parts`` followed by the anchors' (if weighted), in
            one encoder pass (deterministic autoencoder)."""
            return enc(tf.concat([*parts] + ([] if anchors is None else [anchors]), 0),
                       training=True)

        def decode_with_anchors(z: Any, z_anchors: Any) -> tuple[Any, Any]:
            """The reconstructions of the codes ``z`` and the anchor term, the anchors' codes
            ``z_anchors`` decoded in the same pass (as :func:`reconstruct_all`)."""
            if anchors is None:
                return dec(z, training=True), 0.0
            rec = dec(tf.concat([z, z_anchors], 0), training=True)
            b = tf.shape(z)[0]
            return rec[:b], weight * tf.reduce_mean(tf.square(rec[b:] - anchors))

        def reconstruct_all(x: Any, seed: Any, sample: bool) -> tuple[Any, Any, Any]:
            """The reconstruction of ``x``, the KL term and the anchor term. A deterministic
            autoencoder reconstructs the anchors in the same batch as ``x``: one pass through
            the network per step instead of two (the second, with one image, cost about a
            tenth of a batch-64 step: its cost is per operation, not per image)."""
            if anchors is None or variational:
                rec, kl = reconstruct(x, seed, sample)
                return rec, kl, anchor_loss()
            b = tf.shape(x)[0]
            rec = ae(tf.concat([x, anchors], 0), training=True)
            return rec[:b], 0.0, weight * tf.reduce_mean(tf.square(rec[b:] - anchors))

        def sample_mse(err: Any) -> Any:
            """Each sample's mean squared error."""
            return tf.reduce_mean(tf.reshape(tf.square(err), (tf.shape(err)[0], -1)), axis=1)

        def weighted_mse(err: Any, w: Any) -> Any:
            """Mean over samples of ``w`` times each sample's mean squared error."""
            return tf.reduce_mean(w * sample_mse(err))

        # every loss returns (loss, each sample's own reconstruction error): the second is
        # what hard_example_errors = "training_pass" weights the next epoch by
        def losses(seed: Any, sample: bool, w: Any, x: Any) -> Any:
            rec, kl, anchor = reconstruct_all(x, seed, sample)
            per = sample_mse(rec - x)
            return tf.reduce_mean(w * per) + beta * kl + anchor, per

        sw = float(self.tr["latent_smoothness_weight"])

        def smooth_losses(seed: Any, sample: bool, w: Any, x: Any, x_prev: Any, x_next: Any,
                          inside: Any) -> Any:
            """:func:`losses` plus ``latent_smoothness_weight`` times the mean over the
            samples (with both neighbours in their trajectory) of the relative latent
            acceleration ``|z+ - 2z + z-|^2 / (|z+ - z|^2 + |z - z-|^2)``, ``z = h(x^n)``,
            ``z+- = h(x^{n+-k})``: 0 on a path of even speed in a straight line, up to 2; a
            scale-free measure (the decoder's first layer cannot undo it by shrinking the
            codes) of the sprints along a trajectory that go with a kink of the manifold
            (README, "The seed matters more than the recipe")."""
            b = tf.shape(x)[0]
            code = encode_with_anchors(x, x_prev, x_next)
            z, z_prev, z_next = code[:b], code[b:2 * b], code[2 * b:3 * b]
            rec, anchor = decode_with_anchors(z, code[3 * b:])
            acc = tf.reduce_sum(tf.square(z_next - 2.0 * z + z_prev), axis=1)
            speed = (tf.reduce_sum(tf.square(z_next - z), axis=1)
                     + tf.reduce_sum(tf.square(z - z_prev), axis=1))
            ratio = acc / (speed + 1e-12)
            smooth = tf.reduce_sum(inside * ratio) / tf.maximum(tf.reduce_sum(inside), 1.0)
            per = sample_mse(rec - x)
            return tf.reduce_mean(w * per) + anchor + sw * smooth, per

        res = self.residual
        if res is not None:
            rows, cols = tf.constant(res.rows), tf.constant(res.cols)
            pix, n_dofs = tf.constant(res.pix), int(res.pix.size)
            n_pix, rw = int(np.prod(self.images.shape[1:])), float(self.tr["residual_weight"])
        residual_only = self.tr["hard_example_terms"] == "residual"

        def with_history(x: Any, xh: Any) -> Any:
            """``x`` and its history ``xh`` as one batch of images."""
            return tf.concat([x, tf.reshape(xh, tf.concat([[-1], tf.shape(x)[1:]], 0))], 0)

        def jacobian_times(v: Any, values: Any) -> Any:
            """``(dr^n/dx) v`` of each sample's state-row vector ``v`` (scaled as (3))."""
            return tf.transpose(tf.math.unsorted_segment_sum(
                tf.transpose(tf.gather(v, cols, axis=1) * values), rows, n_dofs))

        def linearized_residual(b: Any, err: Any, values: Any, alpha: Any) -> Any:
            """The residual (3) of ``residual.py`` of the (flattened image) errors ``err`` of
            ``b`` current images followed by their histories, on the state rows."""
            err = tf.gather(err, pix, axis=1)
            e_now, e_hist = err[:b], tf.reshape(err[b:], (b, -1, n_dofs))
            return jacobian_times(e_now, values) + tf.einsum("bk,bkn->bn", alpha, e_hist)

        tangent = self.tr["residual_projection"] == "tangent"

        def tangent_part(z: Any, rec: Any, r: Any, values: Any) -> Any:
            """The part of each step's residual ``r`` in the span of ``Psi = (dr^n/dx)
            dg/dz`` at its code ``z`` (equation (4) of ``residual.py``): ``Psi dz`` with
            ``dz`` the Gauss-Newton correction ``(Psi^T Psi)^-1 Psi^T r``. ``dg/dz`` by
            one-sided differences of the decoder (``rec = g(z)``), differentiable in the
            weights."""
            b, p = tf.shape(z)[0], z.shape[1]
            eps = 1e-3 * tf.sqrt(tf.reduce_mean(tf.square(tf.stop_gradient(z)))) + 1e-6
            shifted = tf.reshape(z[:, None, :] + eps * tf.eye(p, dtype=z.dtype)[None],
                                 (-1, p))
            moved = tf.reshape(dec(shifted, training=True), (b, p, n_pix))
            cols_ = tf.gather(moved - tf.reshape(rec, (b, 1, n_pix)), pix, axis=2) / eps
            psi = tf.stack([jacobian_times(cols_[:, k], values) for k in range(p)], axis=2)
            gram = tf.einsum("bnk,bnl->bkl", psi, psi)
            reg = 1e-6 * tf.linalg.trace(gram)[:, None, None] / p + 1e-30
            dz = tf.linalg.solve(gram + reg * tf.eye(p, dtype=z.dtype)[None],
                                 tf.einsum("bnk,bn->bk", psi, r)[:, :, None])
            return tf.einsum("bnk,bk->bn", psi, dz[:, :, 0])

        def residual_losses(seed: Any, sample: bool, w: Any, x: Any, xh: Any, values: Any,
                            alpha: Any) -> Any:
            """Reconstruction loss of ``x`` and its history ``xh`` plus ``residual_weight``
            times the mean square of the linearized residual (2) of ``residual.py`` (with
            ``residual_projection = "tangent"``: of its Gauss-Newton part (4))."""
            b = tf.shape(x)[0]
            both = with_history(x, xh)
            if tangent:  # the codes are needed: encoder, then decoder
                code = encode_with_anchors(both)
                n_both = tf.shape(both)[0]
                rec, anchor = decode_with_anchors(code[:n_both], code[n_both:])
                kl = 0.0
            else:
                rec, kl, anchor = reconstruct_all(both, seed, sample)
            err = tf.reshape(rec - both, (-1, n_pix))
            r = linearized_residual(b, err, values, alpha)
            if tangent:
                r = tangent_part(code[:b], tf.reshape(rec[:b], (b, n_pix)), r, values)
            w_all = (tf.ones(tf.shape(err)[:1]) if residual_only
                     else tf.concat([w, tf.repeat(w, tf.shape(xh)[1])], 0))
            total = weighted_mse(err, w_all) + beta * kl + anchor + rw * weighted_mse(r, w)
            return total, sample_mse(err[:b])

        @tf.function(reduce_retracing=True)
        def step_residuals(x: Any, xh: Any, values: Any, alpha: Any) -> Any:
            """Mean square of the linearized residual (2) of each step (no training)."""
            both = with_history(x, xh)
            err = tf.reshape(ae(both, training=False) - both, (-1, n_pix))
            r = linearized_residual(tf.shape(x)[0], err, values, alpha)
            return tf.reduce_mean(tf.square(r), axis=1)

        loss_fn = (residual_losses if res is not None
                   else smooth_losses if self.neighbours is not None else losses)

        # XLA (jit_compile): one compiled cluster per step, compiled once per batch shape
        @tf.function(reduce_retracing=True, jit_compile=bool(self.tr["jit_compile"]))
        def train_step(seed: Any, w: Any, *batch: Any) -> Any:
            with tf.GradientTape() as tape:
                loss, per = loss_fn(seed, True, w, *batch)
            grads = tape.gradient(loss, vars_)
            opt.apply_gradients(zip(grads, vars_, strict=True))
            return loss, per

        # the training data stay in TensorFlow: an epoch is one call (batches gathered in the
        # graph), which saves the per-batch Python round trip (benchmarks/training_speed.py)
        images = tf.constant(self.images)
        if res is not None:
            cur, hist = tf.constant(res.current), tf.constant(res.history)
            values, alpha = tf.constant(res.values), tf.constant(res.alpha)
            scale = None if self.res_scale is None else tf.constant(self.res_scale)
        bs, seed0 = int(self.tr["batch_size"]), int(self.tr["seed"])
        if self.neighbours is not None:
            prev, nxt, inside = (tf.constant(a) for a in self.neighbours)

        def gather(idx: Any) -> tuple[Any, ...]:
            """The loss's arguments for the samples ``idx`` (as :meth:`_batch`)."""
            if self.neighbours is not None:
                return (tf.gather(images, idx), tf.gather(images, tf.gather(prev, idx)),
                        tf.gather(images, tf.gather(nxt, idx)), tf.gather(inside, idx))
            if res is None:
                return (tf.gather(images, idx),)
            v, a = tf.gather(values, idx), tf.gather(alpha, idx)
            if scale is not None:
                c = tf.gather(scale, idx)[:, None]
                v, a = v * c, a * c
            return (tf.gather(images, tf.gather(cur, idx)),
                    tf.gather(images, tf.gather(hist, idx)), v, a)

        @tf.function(autograph=False)  # an explicit loop: no source transformation needed
        def train_epoch(order: Any, w: Any, epoch: Any) -> Any:
            """One epoch: Adam steps on the batches of ``order`` (sample weights ``w``);
            returns the sum over samples of their batch's loss and each sample's error in
            its step (in the order of ``order``, at the weights before the step)."""
            n = tf.shape(order)[0]
            n_batches = (n + bs - 1) // bs

            def body(b: Any, total: Any, errs: Any) -> tuple[Any, Any, Any]:
                ib = order[b * bs:(b + 1) * bs]
                seed = tf.stack([tf.constant(seed0), epoch * 1_000_003 + b])
                loss, per = train_step(seed, w[b * bs:(b + 1) * bs], *gather(ib))
                size = tf.shape(ib)[0]
                at = tf.expand_dims(tf.range(b * bs, b * bs + size), 1)
                errs = tf.tensor_scatter_nd_update(errs, at, tf.cast(per, tf.float32))
                return (b + 1, total + tf.cast(loss, tf.float64) * tf.cast(size, tf.float64),
                        errs)

            return tf.while_loop(lambda b, *_: b < n_batches, body,
                                 (tf.constant(0), tf.constant(0.0, dtype=tf.float64),
                                  tf.zeros([n], tf.float32)))[1:]

        @tf.function(reduce_retracing=True)
        def eval_step(*batch: Any) -> Any:
            return loss_fn(tf.constant([0, 0], dtype=tf.int32), False,
                           tf.ones(tf.shape(batch[0])[:1]), *batch)[0]

        @tf.function(reduce_retracing=True)
        def errors(x: Any) -> Any:
            rec = ae(x, training=False)
            return tf.reduce_mean(tf.reshape(tf.square(rec - x), (tf.shape(x)[0], -1)), axis=1)

        self.train_step, self.eval_step, self.errors = train_step, eval_step, errors
        self.train_epoch = train_epoch
        self.loss_fn = loss_fn
        self.step_residuals = step_residuals if res is not None else None

    def _sample_weights(self, epoch: int) -> np.ndarray:
        """Hard-example weights of the training samples for ``epoch``.

        :func:`autoencoder.data.hard_example_weights` of the current errors, with
        ``q = hard_example_exponent``; with the residual term a step's error is that of its
        worst image (``x^n`` or its history), or with ``hard_example_measure = "residual"``
        the mean square of its linearized residual (2) of ``residual.py``. The errors are
        recomputed before every ``hard_example_every``-th epoch of the stage (and whenever
        none are held); the epochs between reuse them.
        """
        q, w_max = self.tr["hard_example_exponent"], self.tr["hard_example_max_weight"]
        if q == 0:
            return np.ones(self.i_train.size, dtype=np.float32)
        every = self.tr["hard_example_every"]
        held = self.pass_errors is not None and (
            self.tr["hard_example_errors"] == "training_pass" or epoch % every != 0)
        if held:
            m = self.pass_errors
        else:
            m = self._recomputed_errors()
            if every > 1:
                self.pass_errors = m
        return hard_example_weights(m, q, w_max)

    def _recomputed_errors(self) -> np.ndarray:
        """The measures ``m_i`` of :meth:`_sample_weights` of the training samples, by a pass
        over them with the current weights."""
        if self.tr["hard_example_measure"] == "residual" and self.step_residuals is not None:
            idx = self.i_train
            return np.concatenate([self.step_residuals(*self._batch(idx[i:i + 4096])).numpy()
                                   for i in range(0, idx.size, 4096)])
        res = self.residual
        if res is None:  # the errors of the training samples only (with a snapshot stride,
            idx = self.i_train  # a fraction of the images)
            return np.concatenate([self.errors(self.images[idx[i:i + 4096]]).numpy()
                                   for i in range(0, idx.size, 4096)])
        m = np.concatenate([self.errors(self.images[i:i + 4096]).numpy()
                            for i in range(0, self.images.shape[0], 4096)])
        m = np.maximum(m[res.current], np.max(m[res.history], axis=1))
        return m[self.i_train]

    def _batch(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """The loss's arguments for the samples ``idx``."""
        res = self.residual
        if self.neighbours is not None:
            prev, nxt, inside = self.neighbours
            return (self.images[idx], self.images[prev[idx]], self.images[nxt[idx]],
                    inside[idx])
        if res is None:
            return (self.images[idx],)
        values, alpha = res.values[idx], res.alpha[idx]
        if self.res_scale is not None:
            c = self.res_scale[idx, None]
            values, alpha = values * c, alpha * c
        return (self.images[res.current[idx]], self.images[res.history[idx]], values, alpha)

    def _evaluate(self, idx: np.ndarray) -> float:
        total = 0.0
        for i in range(0, idx.size, 4096):
            ib = idx[i:i + 4096]
            total += float(self.eval_step(*self._batch(ib))) * ib.size
        return total / idx.size

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Start from given weights (those of the previous training stage)."""
        if len(weights) != len(self.ae.weights):
            raise InputError("the previous training stage's model does not fit this one")
        for v, w in zip(self.ae.weights, weights, strict=True):
            v.assign(w)
        self.best_weights = [np.array(w) for w in weights]

    # -------------------------------------------------------------- checkpoints
    def _write_weights(self, path: Path, weights: list[np.ndarray],
                       opt_vars: list[np.ndarray] | None,
                       pass_errors: np.ndarray | None = None) -> None:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for i, w in enumerate(weights):
                f.create_dataset(f"model/{i:04d}", data=w)
            for i, w in enumerate(opt_vars or []):
                f.create_dataset(f"optimizer/{i:04d}", data=w)
            if pass_errors is not None:
                f.create_dataset("pass_errors", data=pass_errors)

    @staticmethod
    def _read_weights(path: Path) -> dict[str, Any]:
        """What :meth:`_write_weights` wrote: ``weights``, ``opt`` (empty if none) and
        ``pass_errors`` (None if none)."""
        with h5py.File(path, "r") as f:
            group = f.get("optimizer", {})
            return {"weights": [f["model"][k][()] for k in sorted(f["model"])],
                    "opt": [group[k][()] for k in sorted(group)],
                    "pass_errors": f["pass_errors"][()] if "pass_errors" in f else None}

    def save_checkpoint(self) -> None:
        self.ckpt.mkdir(parents=True, exist_ok=True)
        self._write_weights(self.ckpt / "current.h5", [v.numpy() for v in self.ae.weights],
                            [v.numpy() for v in self.opt.variables], self.pass_errors)
        self._write_weights(self.ckpt / "best.h5", self.best_weights, None)
        low = self._lowest
        if low is not None:  # the state a repeated divergence returns to (fit)
            self._write_weights(self.ckpt / "lowest.h5", low["weights"], low["opt"],
                                low["pass_errors"])
            self._write_weights(self.ckpt / "lowest_best.h5", low["best_weights"], None)
        write_text_atomic(self.ckpt / "state.json", json.dumps(
            {**self.state, "lowest_state": None if low is None else low["state"]}))

    def load_checkpoint(self) -> bool:
        """Resume from the checkpoint if it exists and belongs to the same settings."""
        sf = self.ckpt / "state.json"
        if not sf.is_file():
            return False
        try:
            state = json.loads(sf.read_text())
            if not same_settings(state.get("settings"), self.settings):
                print(f"{self.ckpt}: checkpoint of different settings, starting afresh")
                return False
            current = self._read_weights(self.ckpt / "current.h5")
            model_w, opt_w = current["weights"], current["opt"]
            best_w = self._read_weights(self.ckpt / "best.h5")["weights"]
            lowest = None
            if (low_state := state.pop("lowest_state", None)) is not None:
                lowest = self._read_weights(self.ckpt / "lowest.h5")
                lowest["best_weights"] = self._read_weights(
                    self.ckpt / "lowest_best.h5")["weights"]
                lowest["state"] = low_state
        except (OSError, ValueError, KeyError) as exc:
            print(f"{self.ckpt}: unreadable checkpoint ({exc}), starting afresh")
            return False
        if len(model_w) != len(self.ae.weights) or len(opt_w) != len(self.opt.variables):
            print(f"{self.ckpt}: checkpoint does not fit the model, starting afresh")
            return False
        for v, w in zip(self.ae.weights, model_w, strict=True):
            v.assign(w)
        for v, w in zip(self.opt.variables, opt_w, strict=True):
            v.assign(w)
        self.best_weights = best_w
        self._lowest = lowest
        self.pass_errors = current["pass_errors"]
        self.state = {"budget_stops": [], "cpu_s": 0.0, "best_loss": math.inf, "rollbacks": [],
                      **state}
        return True

    # -------------------------------------------------------------- schedule
    def _learning_rate(self, epoch: int) -> float:
        """The schedule's learning rate of ``epoch``, times 1/2 per divergence rollback."""
        tr, st = self.tr, self.state
        lr0, lo = tr["learning_rate"], min(tr["lr_min"], tr["learning_rate"])
        scale = 0.5 ** len(st["rollbacks"])
        if tr["lr_schedule"] == "cosine":
            frac = min(epoch / max(tr["epochs"] - 1, 1), 1.0)
            return scale * (lo + 0.5 * (lr0 - lo) * (1.0 + math.cos(math.pi * frac)))
        if tr["lr_schedule"] == "plateau":
            return scale * max(st["lr"], lo)
        return scale * lr0

    def _diverged(self, loss: float) -> bool:
        """Whether an epoch's training loss says the optimizer diverged: not finite, or
        above ``divergence_factor`` times the stage's lowest epoch loss so far (benign Adam
        spikes on 1D Burgers stay below 8x; a divergence that killed the network's units
        jumped 15 000x)."""
        factor, best = self.tr["divergence_factor"], self.state["best_loss"]
        return not math.isfinite(loss) or (factor > 0 and loss > factor * best)

    # -------------------------------------------------------------- loop
    def fit(self, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
            deadline: float | None = None) -> bool:
        """Train until the stage's epochs are done or early stopping ends it.

        With validation samples, the epoch of the lowest validation loss is the best one
        (``keep_best``) and ``patience`` epochs without a better one stop the stage; without
        them the stage runs all its epochs and ends with the last weights. ``deadline`` (a
        :func:`time.perf_counter` value, from ``max_wall_s``) pauses the stage after the
        epoch that reaches it: the checkpoint then holds the state of that epoch, and a
        later call continues exactly as if never paused.

        Returns
        -------
        bool
            True if the stage is finished, False if paused by the deadline.
        """
        tr, st = self.tr, self.state
        n = self.i_train.size
        has_val = self.i_val.size > 0
        while st["stopped_by"] is None and st["epoch"] < tr["epochs"]:
            epoch = st["epoch"]
            t0, c0 = time.perf_counter(), time.process_time()
            lr = self._learning_rate(epoch)
            self.opt.learning_rate.assign(lr)
            pos = epoch_order(n, tr["seed"], epoch)
            order, weights = self.i_train[pos], self._sample_weights(epoch)[pos]
            start = ([v.numpy() for v in self.ae.weights], [v.numpy() for v in self.opt.variables])
            total, errs = self.train_epoch(order, weights, self.tf.constant(epoch, "int32"))
            loss = float(total) / n
            if self._diverged(loss):
                # back to the start of the epoch, which runs again at half the learning rate;
                # if that rerun diverges too, the epochs before it had already gone wrong
                # (a loss that grew below the factor): back to the end of the epoch with the
                # lowest loss, and on from there at half the rate again
                again = bool(st["rollbacks"]) and st["rollbacks"][-1] == epoch + 1
                st["rollbacks"].append(epoch + 1)
                if len(st["rollbacks"]) > MAX_ROLLBACKS:
                    raise RuntimeError(f"training diverged {len(st['rollbacks'])} times "
                                       f"(epochs {st['rollbacks']}); lower learning_rate")
                to = self._lowest if again and self._lowest is not None else None
                weights = start if to is None else (to["weights"], to["opt"])
                for v, w in zip([*self.ae.weights, *self.opt.variables],
                                [*weights[0], *weights[1]], strict=True):
                    v.assign(w)
                if to is not None:
                    self.pass_errors = to["pass_errors"]
                    st.update(copy.deepcopy(to["state"]))
                    del st["history"][to["state"]["epoch"]:]
                    self.best_weights = to["best_weights"]
                st["elapsed_s"] += time.perf_counter() - t0
                st["cpu_s"] += time.process_time() - c0
                if self.progress:
                    where = (f"back to epoch {st['epoch']}, the lowest loss" if to is not None
                             else "rolled back")
                    print(f"p={self.p} epoch {epoch + 1}: training loss {loss:.3e} diverged "
                          f"(lowest {st['best_loss']:.3e}); {where}, learning rate halved",
                          flush=True)
                continue
            # a sample's error in its step of this epoch: the next epoch's weights (kept
            # only if the epoch is: a rolled-back epoch keeps the errors it started with)
            if tr["hard_example_errors"] == "training_pass" and tr["hard_example_exponent"] > 0:
                self.pass_errors = np.empty(n, dtype=np.float32)
                self.pass_errors[pos] = errs.numpy()
            if loss < st["best_loss"]:  # the state a repeated divergence returns to
                self._lowest = {
                    "weights": [v.numpy() for v in self.ae.weights],
                    "opt": [v.numpy() for v in self.opt.variables],
                    "pass_errors": self.pass_errors,
                    "best_weights": self.best_weights,
                    "state": copy.deepcopy({k: st[k] for k in _LOWEST_KEYS if k in st}
                                           | {"epoch": epoch + 1})}
            st["best_loss"] = min(st["best_loss"], loss)
            val = self._evaluate(self.i_val) if has_val else None
            dt = time.perf_counter() - t0
            st["epoch"] = epoch + 1
            st["elapsed_s"] += dt
            st["cpu_s"] += time.process_time() - c0
            st["history"].append({"epoch": epoch + 1, "loss": loss, "val_loss": val, "lr": lr,
                                  "time_s": dt})
            if val is not None and val < st["best_val"]:
                st["best_val"], st["best_epoch"], st["wait"] = val, epoch + 1, 0
                self.best_weights = [v.numpy() for v in self.ae.weights]
            elif val is not None:
                st["wait"] += 1
            if tr["lr_schedule"] == "plateau":
                watched = loss if val is None else val
                if watched < st["plateau_best"] * (1 - 1e-4):
                    st["plateau_best"], st["plateau_wait"] = watched, 0
                else:
                    st["plateau_wait"] += 1
                    if st["plateau_wait"] >= tr["plateau_patience"]:
                        st["lr"] = max(st["lr"] * tr["plateau_factor"], tr["lr_min"])
                        st["plateau_wait"] = 0
            if has_val and st["wait"] >= tr["patience"]:
                st["stopped_by"] = "early_stopping"
            elif st["epoch"] >= tr["epochs"]:
                st["stopped_by"] = "epochs"
            paused = (st["stopped_by"] is None and deadline is not None
                      and time.perf_counter() >= deadline)
            if paused:
                st["budget_stops"].append(st["epoch"])
            if self.progress:
                best = (f"  val {val:.3e}  best {st['best_val']:.3e}@{st['best_epoch']}"
                        if val is not None else "")
                print(f"p={self.p} epoch {epoch + 1}/{tr['epochs']}  loss {loss:.3e}{best}  "
                      f"lr {lr:.2e}  {dt:.1f} s", flush=True)
            if st["epoch"] % tr["checkpoint_every"] == 0 or st["stopped_by"] or paused:
                self.save_checkpoint()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, st["history"][-1])
            if paused:
                break
        if tr["keep_best"] and has_val:
            for v, w in zip(self.ae.weights, self.best_weights, strict=True):
                v.assign(w)
        return st["stopped_by"] is not None


# ----------------------------------------------------------------------------- output


def initial_images(images: np.ndarray, n_mu: int,
                   trajectories: np.ndarray | None = None) -> np.ndarray:
    """The distinct images of the trajectories' initial states (the anchors of the loss).

    ``images`` holds ``n_mu`` trajectories one after the other; only those listed in
    ``trajectories`` (default: all) count. For the deviation target all initial images are
    the same (``x0 - x0 = 0``), so one image remains.
    """
    first = images.reshape(n_mu, -1, *images.shape[1:])[:, 0]
    return np.unique(first if trajectories is None else first[trajectories], axis=0)


def _save_keras_atomic(model: Any, path: Path) -> None:
    """``model.save(path)`` through a temporary folder and a rename (Keras insists on the
    ``.keras`` suffix, so :func:`fom.atomic.atomic_path`'s temporary name cannot be used)."""
    tmpdir = Path(tempfile.mkdtemp(prefix=".tmp-keras-", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def write_exported(path: Path, encoder: Any, decoder: Any, restriction: Restriction,
                   scaling: Scaling, variational: bool) -> None:
    """Export the decoder and encoder (the mean head for a variational one) to HDF5."""
    from .export import export_network

    dec_meta, dec_data = export_network(decoder)
    enc_meta, enc_data = export_network(encoder, skip=("z_log_var",) if variational else ())
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("decoder/meta", data=dec_meta)
        f.create_dataset("decoder/data", data=dec_data)
        f.create_dataset("encoder/meta", data=enc_meta)
        f.create_dataset("encoder/data", data=enc_data)
        for name, arr in restriction.to_arrays().items():
            f.create_dataset(f"restriction/{name}", data=arr)
        f.attrs["image_shape"] = list(restriction.image_shape)
        f.attrs["scaling_lo"] = scaling.lo
        f.attrs["scaling_hi"] = scaling.hi


def _checkpoint_settings(ckpt: Path) -> Any:
    """The settings recorded in a checkpoint folder (None if there is none or it is unreadable)."""
    try:
        return json.loads((ckpt / "state.json").read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return None


def _keras_weights(path: Path) -> list[np.ndarray]:
    """The weights of a saved Keras autoencoder (the start of the next training stage)."""
    from .model import load_keras_model

    return [w.numpy() for w in load_keras_model(path).weights]


def model_is_complete(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a complete model in ``out_dir`` trained with ``settings``, else None
    (an incomplete model, left by a wall-time budget stop, is never complete)."""
    try:
        load_trained_manifold(out_dir)
        man = json.loads((out_dir / MANIFEST).read_text())
    except (InputError, OSError, ValueError):
        return None
    if not (out_dir / KERAS_FILE).is_file() or not same_settings(man.get("settings"), settings):
        return None
    return man


def stage_split(images: np.ndarray, residual: TrajectoryResidual | None, n_t: int,
                validation: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation samples of one stage (:func:`autoencoder.data.sample_split`).

    A sample is an image, or with the residual term a step ``n >= 1`` (its image and its
    history images); its trajectory and step follow from the image index ``i * n_t + n``.
    """
    img = np.arange(images.shape[0]) if residual is None else residual.current
    return sample_split(img // n_t, img % n_t, validation, stride)


def train_model(snap: SnapshotSet, restriction: Restriction, p: int, arch: dict[str, Any],
                tr: dict[str, Any], out_dir: str | os.PathLike, *,
                test: SnapshotSet | None = None, progress: bool = True,
                extra_settings: dict[str, Any] | None = None,
                on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
                where: str = "[training]") -> Path:
    """Train one autoencoder on a snapshot set and write its model directory.

    The trajectories of the validation parameters (``validation_every`` or
    ``validation_params``; :func:`autoencoder.data.validation_trajectories`) are held out
    whole: the optimizer, the scaling and the anchor term never see them; their loss decides
    early stopping and the best epoch of every stage. The others are trained on (every
    ``snapshot_stride``-th step).

    A stage that reaches the wall-time budget ``max_wall_s`` (counted from the start of this
    call) pauses after its current epoch: the directory then holds an *incomplete* model
    (``"complete": false`` in the manifest, refused by
    :func:`autoencoder.manifold.load_trained_manifold`) and the checkpoint, and the next call
    continues from it; the weights at the end do not depend on where it was paused.

    Parameters
    ----------
    snap : SnapshotSet
        Training trajectories.
    restriction : Restriction
        State -> image map; its size must equal the snapshot states' ``N``.
    p : int
        Latent dimension.
    arch, tr : dict
        Validated ``[autoencoder]`` and ``[training]`` sections.
    out_dir : path
        Model directory (created). A complete model with the same settings is kept as is.
    test : SnapshotSet, optional
        Test trajectories: their mean relative reconstruction error is printed and stored
        (for the record only; nothing in the training depends on it).
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epoch, history_entry)`` (used by tests to interrupt).
    where : str
        Config file and section, for error messages.

    Returns
    -------
    Path
        The model directory.
    """
    out_dir = Path(out_dir)
    check_fits(restriction.n_dofs, snap)
    if test is not None:
        check_fits(restriction.n_dofs, test)
    t_start = time.perf_counter()
    # the stages that apply to this p (a stage may name its latent dimensions)
    all_stages = training_stages(tr, where)
    applies = [not dims or p in dims for _, dims in all_stages]
    stages = [st for (st, _), ok in zip(all_stages, applies, strict=True) if ok]
    finetune = [e for e, ok in zip(tr["finetune"], applies[1:], strict=True) if ok]
    validation = validation_trajectories(snap.mu, tr["validation_every"],
                                         tr["validation_params"], where)
    trained_on = np.setdiff1d(np.arange(snap.n_mu), validation)
    fixed = {"p": p, "snapshot_sha256": snap.checksum(), "image_shape": restriction.image_shape,
             "autoencoder": {k: v for k, v in arch.items() if k != "latent_dims"},
             **(extra_settings or {})}

    def identity(table: dict[str, Any]) -> dict[str, Any]:
        """A stage's keys without those that do not change the trained model."""
        return {k: v for k, v in table.items() if k not in RUN_CONTROL_KEYS}

    def settings_upto(j: int) -> dict[str, Any]:
        """The settings of the model after stages 0..j (the model's identity: the wall-time
        budget and the checkpoint interval are not part of it)."""
        return _jsonable({**fixed, "training": {**identity(tr), "finetune": [
            identity(e) for e in finetune[:j]]}})

    settings = settings_upto(len(stages) - 1)
    if (man := model_is_complete(out_dir, settings)) is not None:
        err = man.get("test_error", {}).get("mean")
        print(f"{out_dir}: up to date, skipped" +
              (f" (test reconstruction error {err:.3e})" if err is not None else ""))
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    scaling = Scaling.fit(targets(snap.states[trained_on], arch["target"]), restriction,
                          arch["scaling"])
    images, _ = prepare(snap.states, restriction, arch["target"], scaling)
    anchors = initial_images(images, snap.n_mu, trained_on)
    n_t = int(snap.t.size)
    # where to start: a checkpoint of a stage, else a complete model of the first stages
    start, weights = 0, None
    history: list[dict[str, Any]] = []     # of all stages so far
    results: list[dict[str, Any]] = []
    ckpt_settings = _checkpoint_settings(out_dir / CHECKPOINT_DIR)
    done = [j for j in range(len(stages)) if same_settings(ckpt_settings, settings_upto(j))]
    if done:
        start = done[-1]
    else:
        for j in range(len(stages) - 2, -1, -1):
            if (old := model_is_complete(out_dir, settings_upto(j))) is not None:
                start, weights = j + 1, _keras_weights(out_dir / KERAS_FILE)
                prior = old.get("training_result", {})
                results = list(prior.get("stages", [{"stage": 0, **prior}]))
                try:
                    history = [{"stage": 0, **h}
                               for h in json.loads((out_dir / HISTORY).read_text())]
                except (OSError, ValueError):
                    history = []
                if progress:
                    print(f"{out_dir}: stages 0..{j} done, continuing with stage {j + 1}")
                break
    residual: TrajectoryResidual | None = None   # built once, for the first stage using it
    complete = True
    for j in range(start, len(stages)):
        tr_j = stages[j]
        if tr_j["residual_weight"] > 0 and residual is None:
            residual = trajectory_residual(snap, restriction, scaling)
        res_j = residual if tr_j["residual_weight"] > 0 else None
        trainer = _Trainer(images, restriction.image_shape, p, arch, tr_j, out_dir,
                           settings_upto(j), progress, anchors, res_j,
                           stage_split(images, res_j, n_t, validation,
                                       tr_j["snapshot_stride"]), n_t)
        if j == start and trainer.load_checkpoint():
            history = trainer.state.get("earlier_history", history)
            results = trainer.state.get("earlier_results", results)
            if progress:
                print(f"{out_dir}: resuming stage {j} after epoch {trainer.state['epoch']}")
        else:
            # the record of the earlier stages travels with this stage's checkpoint
            trainer.state["earlier_history"], trainer.state["earlier_results"] = (
                history, results)
            if weights is not None:
                trainer.set_weights(weights)
                trainer.save_checkpoint()
        budget = tr_j["max_wall_s"]
        complete = trainer.fit(on_epoch_end, t_start + budget if budget > 0 else None)
        weights = [v.numpy() for v in trainer.ae.weights]
        st = trainer.state
        history = history + [{**h, "stage": j} for h in st["history"]]
        results = results + [{"stage": j, "epochs_run": st["epoch"],
                              "epochs": tr_j["epochs"],
                              "best_epoch": st["best_epoch"] if st["best_epoch"] else None,
                              "best_val_loss": st["best_val"] if st["best_epoch"] else None,
                              "stopped_by": st["stopped_by"] or "wall_time",
                              "budget_stops": st["budget_stops"],
                              "divergence_rollbacks": st["rollbacks"],
                              "n_train_samples": int(trainer.i_train.size),
                              "n_val_samples": int(trainer.i_val.size),
                              "train_time_s": st["elapsed_s"], "train_cpu_s": st["cpu_s"]}]
        if not complete:
            break

    import keras
    import tensorflow as tf

    _save_keras_atomic(trainer.ae, out_dir / KERAS_FILE)
    write_exported(out_dir / EXPORTED, trainer.enc, trainer.dec, restriction, scaling,
                   arch["variational"])
    write_text_atomic(out_dir / HISTORY, json.dumps(history))
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "complete": complete,
        "p": p, "n_dofs": restriction.n_dofs, "image_shape": list(restriction.image_shape),
        "target": arch["target"], "variational": arch["variational"],
        "scaling": scaling.to_dict(),
        "files": {"keras": KERAS_FILE, "exported": EXPORTED, "history": HISTORY},
        "settings": settings,
        "snapshots": {"path": str(snap.path), "sha256": settings["snapshot_sha256"],
                      "n_mu": snap.n_mu, "n_t": n_t, "problem": snap.problem_name,
                      "trained_on": trained_on.tolist(), "validation": validation.tolist(),
                      "validation_mu": snap.mu[validation].tolist()},
        "training_result": {**results[-1], "stages": results},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "onednn": tensorflow_onednn()},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    # provisional manifest so the numba path can load the directory; checked, then final
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    manifold = load_trained_manifold(out_dir, allow_incomplete=True)
    _check_export(trainer, manifold, images[:8])
    if test is not None:
        errs = reconstruction_errors(manifold, test)
        errs_ref = reconstruction_errors(manifold, test, through_reference=True)
        manifest["test_error"] = {
            "mean": float(np.mean(errs)), "per_mu": errs,
            "mean_through_reference": float(np.mean(errs_ref)),
            "per_mu_through_reference": errs_ref, "mu": test.mu.tolist(),
            "path": str(test.path),
            "measure": "sqrt(sum_n |x^n - x~^n|^2) / sqrt(sum_n |x^n|^2), x~^n = x0 + "
                       "g(h(x^n - x0)) (deviation) or g(h(x^n)) (raw); through_reference: "
                       "x~^n = x_ref + g(h(.))"}
        print(f"p={p}: mean relative reconstruction error (encode, decode) on the test "
              f"trajectories {np.mean(errs):.3e} ({', '.join(f'{e:.2e}' for e in errs)}); "
              f"through the reference state x_ref + g(h(.)) {np.mean(errs_ref):.3e}")
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    last = results[-1]
    if not complete:
        print(f"{out_dir}: INCOMPLETE: the wall-time budget max_wall_s = {budget:g} s stopped "
              f"stage {last['stage']} after epoch {last['epochs_run']} of {last['epochs']}; "
              "train again (same command) to continue from the checkpoint")
        return out_dir
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    if progress:
        best = (f", best validation loss {last['best_val_loss']:.3e} at epoch "
                f"{last['best_epoch']}" if last["best_epoch"] else "")
        total = sum(r["train_time_s"] for r in results)
        print(f"wrote {out_dir} (stage {last['stage']}: {last['epochs_run']} epochs{best}, "
              f"stopped by {last['stopped_by']}; all stages {total:.0f} s)")
    return out_dir


def _check_export(trainer: _Trainer, manifold: TrainedManifold, sample: np.ndarray) -> None:
    """The numba decoder must reproduce Keras's (float32) decoder on a few latent points."""
    # direct calls, not Model.predict: its tf.data pipeline makes TensorFlow log an E0000
    # "use_unbounded_threadpool" line on stderr
    code = trainer.enc(sample, training=False)
    z = np.asarray((code[0] if trainer.arch["variational"] else code).numpy(), dtype=np.float64)
    ref = trainer.dec(z.astype(np.float32), training=False).numpy()
    mine = np.array([manifold.decode(zi) for zi in z])
    ref_x = manifold.restriction.prolong(manifold.scaling.unscale_image(ref.astype(np.float64)))
    err = np.max(np.abs(mine - ref_x)) / max(np.max(np.abs(ref_x)), 1e-300)
    if not err < 1e-4:
        raise RuntimeError(f"exported decoder disagrees with Keras (relative {err:.2e})")


#: Signature of a seed selection (``train_from_config(select=...)``): given the config, the
#: training snapshots, ``p`` and the model folders trained with the seeds, the index of the
#: one to keep and a JSON-able record of the choice (stored in its manifest).
Selector = Callable[[RunConfig, SnapshotSet, int, list[Path]], tuple[int, dict[str, Any]]]


def train_from_config(config: str | os.PathLike | RunConfig,
                      latent_dims: list[int] | None = None, progress: bool = True, *,
                      select: Selector | None = None,
                      only_seed: int | None = None) -> list[Path]:
    """Train one model per latent dimension of a run config (``mrom train CONFIG``).

    Reads the training snapshots (generated first if missing), trains into
    ``<output_dir>/models/p<p>/`` and skips a model whose directory holds a complete model
    trained with the same snapshot file and settings. Reports the mean relative reconstruction
    error on the test trajectories when the test snapshot file exists.

    With ``[training] n_seeds = K > 1`` each ``p`` is trained K times, with the seeds
    ``seed .. seed + K - 1``, into ``<output_dir>/models/p<p>.seeds/seed<s>/``; ``select``
    (:func:`rom.seed_selection.select_by_rom`, which ``mrom train`` passes) picks one, and a
    copy of it, with the record of the choice in its manifest (``"seed_selection"``), becomes
    ``models/p<p>``. ``only_seed = s`` trains only the models of seed ``s`` (no selection;
    used to train the seeds in parallel processes, :func:`rom.seed_selection.train_models`).
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    arch, tr = settings_from_config(cfg)
    dims = list(latent_dims) if latent_dims else list(arch["latent_dims"])
    for p in dims:
        if not isinstance(p, int) or p < 1:
            raise InputError(f"latent dimension must be a positive integer, got {p!r}")
    seeds = seed_list(tr)
    if only_seed is not None and (tr["n_seeds"] == 1 or only_seed not in seeds):
        raise InputError(f"{cfg.where('training')} n_seeds: seed {only_seed} is not one of "
                         f"the seeds {seeds}")
    if tr["n_seeds"] > 1 and select is None and only_seed is None:
        raise InputError(f"{cfg.where('training')} n_seeds: {tr['n_seeds']} models per p need "
                         "a selection between them; train with 'mrom train' "
                         "(rom.seed_selection.train_models)")
    restriction = restriction_from_config(cfg, arch)
    paths = snapshot_paths(cfg)
    cfg.check_output_dir()  # before any work
    if not paths["train"].exists():
        snapshots_from_config(cfg, progress=progress)
    snap = read_snapshots(paths["train"])
    check_fits(restriction.n_dofs, snap)
    test = read_snapshots(paths["test"]) if paths["test"].exists() else None
    out = []
    for p in dims:
        folder = cfg.output_dir / "models" / f"p{p}"
        if tr["n_seeds"] == 1:
            out.append(train_model(snap, restriction, p, arch, tr, folder, test=test,
                                   progress=progress, where=cfg.where("training")))
            continue
        if only_seed is not None:
            out.append(train_model(snap, restriction, p, arch, _one_seed(tr, only_seed),
                                   seed_model_dir(folder, only_seed),
                                   progress=progress, where=cfg.where("training")))
            continue
        assert select is not None
        if _train_and_select(cfg, snap, restriction, p, arch, tr, folder, select, progress):
            out.append(folder)
    return out


def _train_and_select(cfg: RunConfig, snap: SnapshotSet, restriction: Restriction, p: int,
                      arch: dict[str, Any], tr: dict[str, Any], folder: Path,
                      select: Selector, progress: bool) -> bool:
    """Train the ``n_seeds`` models of ``p`` (each skipped if complete), let ``select`` pick
    one and install its copy as ``folder`` (kept as is if it was chosen with the same
    settings). False if a seed's model is left incomplete by the wall-time budget."""
    seeds = seed_list(tr)
    key = _jsonable({"training": tr, "autoencoder": arch, "p": p,
                     "snapshot_sha256": snap.checksum()})
    try:
        man = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        man = {}
    old = man.get("seed_selection", {})
    if old.get("key") == key and model_is_complete(folder, man.get("settings", {})):
        if progress:
            print(f"{folder}: up to date (seed {old['chosen_seed']} of {seeds}), skipped")
        return True
    cands = [train_model(snap, restriction, p, arch, _one_seed(tr, s),
                         seed_model_dir(folder, s),
                         progress=progress, where=cfg.where("training"))
             for s in seeds]
    if not all(json.loads((c / MANIFEST).read_text()).get("complete") for c in cands):
        print(f"{folder}: not chosen yet: a seed's model is incomplete (max_wall_s); "
              "train again (same command) to continue")
        return False
    best, record = select(cfg, snap, p, cands)
    _install_copy(cands[best], folder, {"key": key, "seeds": seeds,
                                        "chosen_seed": seeds[best], **record})
    if progress:
        print(f"{folder}: seed {seeds[best]} of {seeds} chosen ({record.get('summary', '')})")
    return True


def seed_list(tr: dict[str, Any]) -> list[int]:
    """The seeds of a validated ``[training]`` section: ``seed .. seed + n_seeds - 1``."""
    return [tr["seed"] + k for k in range(tr["n_seeds"])]


def seed_model_dir(folder: Path, seed: int) -> Path:
    """The folder of one seed's model beside the model folder ``folder`` (``models/p<p>``):
    ``models/p<p>.seeds/seed<seed>``."""
    return folder.with_name(f"{folder.name}.seeds") / f"seed{seed}"


def _one_seed(tr: dict[str, Any], seed: int) -> dict[str, Any]:
    """The ``[training]`` settings of one seed's model: ``seed``, and the selection's keys at
    their defaults (they do not change how a model trains)."""
    return {**tr, "seed": seed, "n_seeds": 1,
            "seed_check_every": TRAINING_SCHEMA["seed_check_every"].default}


def _install_copy(src: Path, dst: Path, selection: dict[str, Any]) -> None:
    """Replace the model folder ``dst`` by a copy of ``src`` whose manifest records
    ``selection``; the copy is made beside ``dst`` and renamed into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dst.name}-", dir=dst.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(CHECKPOINT_DIR))
        man = json.loads((tmp / MANIFEST).read_text())
        man["seed_selection"] = selection
        write_text_atomic(tmp / MANIFEST, json.dumps(man, indent=1))
        old = dst.with_name(f".old-{dst.name}")
        shutil.rmtree(old, ignore_errors=True)
        if dst.exists():
            os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
