"""The residual term, hard-example weights and fine-tuning stages of the training (issue 4).

Tiny Burgers snapshot sets (64 cells, 10 steps) and tiny nets trained for a few epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fom
from autoencoder.data import Restriction, hard_example_weights, prepare
from autoencoder.residual import trajectory_residual
from autoencoder.settings import (
    AUTOENCODER_SCHEMA,
    TRAINING_SCHEMA,
    check_architecture,
    training_stages,
)
from fom.config import parse_section
from fom.errors import InputError
from fom.snapshots import generate_snapshots, read_snapshots
from fom.steppers import get_scheme, history_term, scheme_at_step, time_residual

MUS = [[4.3, 0.02], [5.4, 0.016], [4.7, 0.029]]
ARCH = {"filters": [4, 8], "strides": [2, 2], "kernel_size": 3, "latent_dims": [2]}
TRAIN = {"batch_size": 8, "learning_rate": 3e-3, "epochs": 3, "patience": 50,
         "checkpoint_every": 1}


@pytest.fixture(scope="module", params=["backward_euler", "bdf2"])
def snap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp(request.param)
    prob = fom.Burgers1D(n_cells=64, t_final=0.7)
    return read_snapshots(generate_snapshots(prob, MUS, d / "train.h5", scheme=request.param,
                                             progress=False))


def _shuffled_restriction(n: int) -> Restriction:
    """An 8 x 8 image with a scrambled cell order, so that the test sees the permutation."""
    return Restriction((8, 8, 1), np.random.default_rng(3).permutation(n).astype(np.int64))


def test_linearized_residual_is_the_derivative_of_the_time_discrete_residual(snap) -> None:
    """Equation (2) of autoencoder/residual.py applied to errors ``e`` equals the directional
    derivative of the FOM residual (1) at the snapshots, by central differences."""
    problem, scheme = snap.problem(), get_scheme(snap.solver["scheme"])
    dt, n_t = snap.solver["dt"], snap.t.size
    r = _shuffled_restriction(snap.n_dofs)
    res = trajectory_residual(snap, r)
    assert res.n_samples == snap.n_mu * (n_t - 1)
    np.testing.assert_array_equal(res.pix, r.pix)
    rng = np.random.default_rng(0)
    e = rng.standard_normal(snap.states.shape)            # one error per snapshot, state order
    e_img = e.reshape(-1, snap.n_dofs)                    # (the residual's rows: state order)
    for s in [0, 1, 5, res.n_samples - 1]:                # first steps (BE start) and later
        i, n = divmod(int(res.current[s]), n_t)
        sch = scheme_at_step(scheme, n)
        hist = [snap.states[i, n - j] for j in range(1, sch.n_history + 1)]
        dhist = [e[i, n - j] for j in range(1, sch.n_history + 1)]

        def resid(eps: float, i=i, n=n, sch=sch, hist=hist, dhist=dhist) -> np.ndarray:
            h = history_term(sch, [x + eps * d for x, d in zip(hist, dhist, strict=True)])
            return time_residual(problem, sch, snap.states[i, n] + eps * e[i, n], h,
                                 snap.t[n], dt, snap.mu[i])

        eps = 1e-6
        fd = (resid(eps) - resid(-eps)) / (2 * eps)
        lin = np.zeros(snap.n_dofs)
        np.add.at(lin, res.rows, res.values[s] * e_img[res.current[s]][res.cols])
        lin += np.einsum("k,kn->n", res.alpha[s], e_img[res.history[s]])
        np.testing.assert_allclose(lin, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


def test_snapshot_file_without_a_scheme_is_refused(snap) -> None:
    from dataclasses import replace

    bad = replace(snap, solver={"dt": 0.07})
    with pytest.raises(InputError, match="records no 'scheme'"):
        trajectory_residual(bad, _shuffled_restriction(snap.n_dofs))


def test_hard_example_weights_follow_the_errors_and_are_clipped() -> None:
    m = np.array([1.0, 1.0, 2.0, 4.0, 0.01, 8.0])          # mean 2.67
    np.testing.assert_array_equal(hard_example_weights(m, 0.0, 50.0), np.ones(6))
    w = hard_example_weights(m, 2.0, 4.0)
    assert w.dtype == np.float32 and w.mean() == pytest.approx(1.0, rel=1e-6)
    assert w[3] / w[2] == pytest.approx(4.0, rel=1e-6)      # (4/2)^2, both inside the clip
    assert w[5] / w[4] == pytest.approx(16.0, rel=1e-5)     # both clipped: to [1/4, 4]


def _settings(tr: dict | None = None) -> tuple[dict, dict]:
    a = check_architecture(parse_section(ARCH, AUTOENCODER_SCHEMA, "t"), "t")
    return a, parse_section({**TRAIN, **(tr or {})}, TRAINING_SCHEMA, "t")


def _image_errors(trainer, images: np.ndarray) -> np.ndarray:
    """numpy reference: each image's mean square reconstruction error (the hard-example
    weights' ``m_i``)."""
    err = np.asarray(trainer.ae(images, training=False), dtype=np.float64) - images
    return np.mean(err.reshape(err.shape[0], -1) ** 2, axis=1)


def _model_errors_and_residuals(trainer, images: np.ndarray, res, idx: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
    """numpy reference: the model's reconstruction errors of all images (flat, padding
    included) and the linearized residual (3) of the steps ``idx`` (on the state rows)."""
    err = np.asarray(trainer.ae(images, training=False)) - images
    err = err.reshape(err.shape[0], -1).astype(np.float64)
    st = err[:, res.pix]
    lin = np.zeros((idx.size, st.shape[1]))
    for b, s in enumerate(idx):
        np.add.at(lin[b], res.rows, res.values[s] * st[res.current[s]][res.cols])
        lin[b] += np.einsum("k,kn->n", res.alpha[s], st[res.history[s]])
    return err, lin


def _residual_loss_parts(snap, extra: dict) -> tuple:
    """A trainer with the residual term (weight 7, anchors weighted 3, ``extra`` keys), its
    loss on every third step, and numpy's parts of it: the reconstruction and anchor terms,
    the linearized residuals (3) of those steps, the trainer, the steps and the residual."""
    from autoencoder.train import _Trainer, initial_images

    a, tr = _settings({"residual_weight": 7.0, "initial_state_weight": 3.0, **extra})
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")
    res = trajectory_residual(snap, r)
    anchors = initial_images(images, snap.n_mu)
    trainer = _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False,
                       anchors, res, n_t=snap.t.size)
    idx = np.arange(0, res.n_samples, 3)
    got = float(trainer.eval_step(*trainer._batch(idx)))
    err, lin = _model_errors_and_residuals(trainer, images, res, idx)
    rec = np.concatenate([err[res.current[idx]], err[res.history[idx]].reshape(-1, err.shape[1])])
    anchor = np.asarray(trainer.ae(anchors, training=False)) - anchors
    return got, np.mean(rec**2) + 3.0 * np.mean(anchor**2), lin, trainer, idx, res, images


def test_residual_loss_is_the_mean_square_of_the_linearized_residual(snap) -> None:
    """The trainer's loss with ``residual_weight`` equals, computed with numpy from the
    model's reconstructions, MSE(x^n and history) + w * mean |(2)|^2 + the anchor term."""
    got, base, lin, *_ = _residual_loss_parts(snap, {})
    assert got == pytest.approx(base + 7.0 * np.mean(lin**2), rel=1e-4)


@pytest.mark.parametrize("by", ["trajectory", "step"])
def test_normalized_residual_loss_weighs_each_step_by_its_increment(snap, by: str) -> None:
    """``residual_normalization``: each step's residual is divided by the root mean square
    increment ``x^n - x^(n-1)`` of its trajectory (or of the step itself) relative to the mean
    (equations (5) and (6) of ``residual.py``; the increments computed here from the images
    trajectory by trajectory); the three trajectories move at different speeds, so the
    factors differ."""
    got, base, lin, _, idx, res, images = _residual_loss_parts(
        snap, {"residual_normalization": by})
    n_t = snap.t.size
    flat = images.reshape(snap.n_mu, n_t, -1)[:, :, res.pix].astype(np.float64)
    d = np.mean(np.diff(flat, axis=1) ** 2, axis=2)             # (n_mu, n_t - 1)
    if by == "trajectory":
        d = np.repeat(d.mean(axis=1, keepdims=True), n_t - 1, axis=1)
    c = np.sqrt(d.mean() / np.maximum(d, d.mean() / 100))
    assert c.max() / c.min() > 1.1
    i, n = np.divmod(res.current[idx], n_t)
    assert got - base == pytest.approx(7.0 * np.mean((c[i, n - 1, None] * lin) ** 2),
                                       rel=1e-4)


def test_normalization_refuses_what_does_not_move_and_caps_a_step_at_rest(snap) -> None:
    """A trajectory at rest has no scale (``"trajectory"``: refused by number); under
    ``"step"`` its steps weigh ``MAX_STEP_WEIGHT`` times the mean step (c = 10), the others
    as before, and only data in which nothing moves is refused."""
    from autoencoder.residual import MAX_STEP_WEIGHT, residual_scale

    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")
    res = trajectory_residual(snap, r)
    n_t = snap.t.size
    moving = residual_scale(res, images, n_t, "step")
    images[n_t:2 * n_t] = images[n_t]                          # trajectory 1 at rest
    with pytest.raises(InputError, match="residual_normalization = 'trajectory': trajectory "
                                         "1 does not move"):
        residual_scale(res, images, n_t, "trajectory")
    c = residual_scale(res, images, n_t, "step")
    rest = res.current // n_t == 1
    assert MAX_STEP_WEIGHT == 100.0
    np.testing.assert_allclose(c[rest], 10.0, rtol=1e-6)
    # the moving steps: the same increments against a mean that lost trajectory 1's share
    ratio = c[~rest] / moving[~rest]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    assert ratio[0] < 1.0
    images[:] = images[0]
    with pytest.raises(InputError, match="'step': no training step moves"):
        residual_scale(res, images, n_t, "step")


def test_tangent_residual_loss_is_the_gauss_newton_part_of_the_residual(snap) -> None:
    """``residual_projection = "tangent"``: the residual term is the mean square of
    ``P r = Psi (Psi^T Psi)^-1 Psi^T r`` with ``Psi = (dr/dx) dg/dz`` at each step's code
    (equation (4) of ``residual.py``), here with the decoder's Jacobian by TensorFlow's
    autodiff and numpy least squares (the loss takes it by differences of the decoder);
    and it is a part: smaller than the whole residual's term."""
    from numerics import keras_jacobian

    got, base, lin, trainer, idx, res, images = _residual_loss_parts(
        snap, {"residual_projection": "tangent"})
    codes = np.asarray(trainer.enc(images[res.current[idx]], training=False), dtype=np.float64)
    part = np.zeros_like(lin)
    n = res.pix.size
    for b, s in enumerate(idx):
        jac = keras_jacobian(trainer.dec, codes[b].astype(np.float32))[1][res.pix]
        psi = np.zeros((n, jac.shape[1]))
        for k in range(jac.shape[1]):
            np.add.at(psi[:, k], res.rows, res.values[s] * jac[res.cols, k])
        part[b] = psi @ np.linalg.lstsq(psi, lin[b], rcond=None)[0]
    assert got - base == pytest.approx(7.0 * np.mean(part**2), rel=2e-2)
    assert np.mean(part**2) < 0.5 * np.mean(lin**2)


def test_tangent_residual_needs_a_deterministic_autoencoder(snap) -> None:
    from autoencoder.train import _Trainer

    a = check_architecture(parse_section({**ARCH, "variational": True}, AUTOENCODER_SCHEMA,
                                         "t"), "t")
    tr = parse_section({**TRAIN, "residual_weight": 1.0, "residual_projection": "tangent"},
                       TRAINING_SCHEMA, "t")
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")
    with pytest.raises(InputError, match="residual_projection = 'tangent' needs a "
                                         "deterministic autoencoder"):
        _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False)


@pytest.mark.parametrize(("key", "value"), [("residual_projection", "tangent"),
                                          ("residual_normalization", "step")])
def test_residual_options_need_the_residual_term(key: str, value: str) -> None:
    tr = parse_section({key: value}, TRAINING_SCHEMA, "c.toml [training]")
    with pytest.raises(InputError, match=rf"c.toml \[training\] {key}: "
                                         rf"'{value}' needs residual_weight > 0"):
        training_stages(tr, "c.toml [training]")


def test_hard_example_weights_are_those_of_the_training_images_errors(snap) -> None:
    """With a snapshot stride and a held-out trajectory, the weights of the training images are
    those of their own mean square reconstruction errors (computed here with numpy on all
    images, then picked), in the order of ``i_train``."""
    from autoencoder.train import _Trainer, stage_split

    a, tr = _settings({"hard_example_exponent": 1.0, "hard_example_max_weight": 5.0,
                       "snapshot_stride": 2})
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")
    split = stage_split(images, None, snap.t.size, np.array([0]), 2)
    assert 0 < split[0].size < images.shape[0] // 2       # strided, one trajectory held out
    trainer = _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False,
                       None, None, split)
    m = _image_errors(trainer, images)
    got = trainer._sample_weights(0)
    np.testing.assert_allclose(got, hard_example_weights(m[trainer.i_train], 1.0, 5.0),
                               rtol=1e-4)
    assert got.max() > 1.5 * got.min()          # the images do differ


def test_training_pass_errors_are_each_samples_error_before_its_step(snap,
                                                                    tmp_path: Path) -> None:
    """``hard_example_errors = "training_pass"``: after an epoch, a sample's recorded error is
    its reconstruction error at the weights before its own optimizer step (numpy here). The
    first batch's are the errors of the initial network; with the learning rate 0 all of them
    are, and the next epoch's weights are those the recomputed errors would give."""
    import tensorflow as tf

    from autoencoder.train import _Trainer

    a, tr = _settings({"hard_example_exponent": 1.0, "hard_example_max_weight": 5.0,
                       "hard_example_errors": "training_pass", "batch_size": 4})
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")

    for lr in (3e-3, 0.0):
        trainer = _Trainer(images, r.image_shape, 2, a, tr, tmp_path, {}, False)
        m0 = _image_errors(trainer, images)
        assert trainer.pass_errors is None
        np.testing.assert_allclose(trainer._sample_weights(0),   # recomputed before epoch 1
                                   hard_example_weights(m0, 1.0, 5.0), rtol=1e-4)
        order = np.random.default_rng(1).permutation(images.shape[0])
        trainer.opt.learning_rate.assign(lr)
        _, errs = trainer.train_epoch(order, np.ones(order.size, np.float32),
                                      tf.constant(0, "int32"))
        errs = errs.numpy()
        np.testing.assert_allclose(errs[:4], m0[order[:4]], rtol=1e-4,   # first batch
                                   atol=1e-6 * m0.max())
        if lr > 0:   # later batches were trained on after the weights had moved
            assert np.max(np.abs(errs[4:] - m0[order[4:]])) > 1e-2 * m0.max()
        else:
            np.testing.assert_allclose(errs, m0[order], rtol=1e-4, atol=1e-6 * m0.max())
    trainer.tr = {**tr, "epochs": 1, "learning_rate": 0.0, "lr_min": 0.0}
    trainer.fit()                                 # one epoch at lr 0: the weights stay
    np.testing.assert_allclose(_image_errors(trainer, images), m0, rtol=1e-6)
    np.testing.assert_allclose(trainer._sample_weights(0),
                               hard_example_weights(_image_errors(trainer, images), 1.0, 5.0),
                               rtol=1e-3)


@pytest.mark.parametrize("tr, other", [
    ({"epochs": 4, "hard_example_exponent": 2.0, "hard_example_errors": "training_pass"},
     {"hard_example_errors": "recomputed"}),
    ({"epochs": 5, "hard_example_exponent": 2.0, "hard_example_every": 3},
     {"hard_example_every": 1}),
], ids=["training_pass", "every_3"])
def test_held_hard_example_errors_resume_to_the_same_model(snap, tmp_path: Path, tr: dict,
                                                           other: dict) -> None:
    """A run killed after epoch 2 (checkpoint every epoch) and resumed ends with the same
    weights as one that was not: the errors held between epochs (the training pass's, or the
    last recomputed ones with ``hard_example_every = 3``) travel with the checkpoint; without
    them the resumed epoch 3 would be weighted differently. ``other`` (errors recomputed every
    epoch) trains the same first epoch, then other weights."""
    full = _train(snap, tmp_path / "full", tr)

    def kill_at_2(epoch: int, _h: dict) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _train(snap, tmp_path / "resumed", tr, on_epoch_end=kill_at_2)
    resumed = _train(snap, tmp_path / "resumed", tr)
    h_full = json.loads((full / "history.json").read_text())
    h_res = json.loads((resumed / "history.json").read_text())
    assert [h["loss"] for h in h_res] == [h["loss"] for h in h_full]
    h_other = json.loads((_train(snap, tmp_path / "other", {**tr, **other})
                          / "history.json").read_text())
    assert h_other[0]["loss"] == h_full[0]["loss"]         # same first epoch
    assert h_other[-1]["loss"] != h_full[-1]["loss"]       # then other weights


def test_hard_example_errors_recomputed_every_kth_epoch_only(snap, tmp_path: Path) -> None:
    """``hard_example_every = 3``: the weights of epochs 1 and 2 are those of the errors
    recomputed before epoch 0, although the network has moved since; before epoch 3 they are
    recomputed (numpy errors of the current network here)."""
    import tensorflow as tf

    from autoencoder.train import _Trainer

    a, tr = _settings({"hard_example_exponent": 1.0, "hard_example_max_weight": 5.0,
                       "hard_example_every": 3, "batch_size": 4})
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")

    def numpy_weights(trainer) -> np.ndarray:
        return hard_example_weights(_image_errors(trainer, images), 1.0, 5.0)

    trainer = _Trainer(images, r.image_shape, 2, a, tr, tmp_path, {}, False)
    w0 = numpy_weights(trainer)
    order = np.arange(images.shape[0])
    for epoch in range(4):
        got = trainer._sample_weights(epoch)
        want = w0 if epoch < 3 else numpy_weights(trainer)
        np.testing.assert_allclose(got, want, rtol=1e-3)
        if epoch > 0:   # the network has moved: recomputing would give other weights
            assert np.max(np.abs(numpy_weights(trainer) - w0)) > 1e-2
        trainer.train_epoch(order, got, tf.constant(epoch, "int32"))


@pytest.mark.parametrize("keys, message", [
    ({"hard_example_every": 2, "hard_example_errors": "training_pass"},
     "hard_example_every: 2 needs hard_example_errors = 'recomputed'"),
    ({"residual_weight": 1.0, "hard_example_errors": "training_pass"},
     "hard_example_errors: 'training_pass' is not available"),
])
def test_training_pass_errors_refuse_what_they_cannot_serve(keys: dict, message: str) -> None:
    tr = parse_section(keys, TRAINING_SCHEMA, "c")
    with pytest.raises(InputError, match=r"c \[training\] " + message):
        training_stages(tr, "c [training]")


def test_residual_hard_example_weights_follow_the_steps_linearized_residual(snap) -> None:
    """With ``hard_example_measure = "residual"`` the weights are those of the mean square of
    each training step's linearized residual (2), computed here with numpy."""
    from autoencoder.train import _Trainer

    a, tr = _settings({"residual_weight": 1.0, "hard_example_measure": "residual",
                       "hard_example_exponent": 1.0, "hard_example_max_weight": 5.0})
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")
    res = trajectory_residual(snap, r)
    trainer = _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False,
                       None, res)
    _, lin = _model_errors_and_residuals(trainer, images, res, trainer.i_train)
    m = np.mean(lin**2, axis=1)
    got = trainer._sample_weights(0)
    np.testing.assert_allclose(got, hard_example_weights(m, 1.0, 5.0), rtol=1e-3)
    assert got.max() > 1.5 * got.min()          # the steps do differ


def test_hard_example_weights_can_scale_the_residual_term_only(snap) -> None:
    """``hard_example_terms = "residual"``: sample weights w scale the residual term of each
    step, the reconstruction term stays unweighted (numpy reference)."""
    from autoencoder.train import _Trainer

    a, tr = _settings({"residual_weight": 4.0, "hard_example_terms": "residual"})
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")
    res = trajectory_residual(snap, r)
    trainer = _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False,
                       None, res)
    idx = np.arange(0, res.n_samples, 2)
    w = np.linspace(0.2, 3.0, idx.size).astype(np.float32)
    import tensorflow as tf

    got = float(trainer.loss_fn(tf.constant([0, 0], dtype=tf.int32), False, w,
                                *trainer._batch(idx))[0])
    err, lin = _model_errors_and_residuals(trainer, images, res, idx)
    rec = np.concatenate([err[res.current[idx]], err[res.history[idx]].reshape(-1, err.shape[1])])
    expect = np.mean(rec**2) + 4.0 * np.mean(w * np.mean(lin**2, axis=1))
    assert got == pytest.approx(expect, rel=1e-4)

def test_residual_hard_example_measure_and_terms_need_the_residual_term() -> None:
    tr = parse_section({"finetune": [{"hard_example_measure": "residual",
                                      "hard_example_exponent": 1.0}]}, TRAINING_SCHEMA, "c")
    with pytest.raises(InputError, match=r"finetune\[0\] hard_example_measure: 'residual' "
                                         r"needs residual_weight > 0"):
        training_stages(tr, "c [training]")
    tr = parse_section({"hard_example_terms": "residual"}, TRAINING_SCHEMA, "c")
    with pytest.raises(InputError, match=r"c \[training\] hard_example_terms: 'residual' "
                                         r"needs residual_weight > 0"):
        training_stages(tr, "c [training]")
    ok = parse_section({"finetune": [{"hard_example_measure": "residual",
                                      "residual_weight": 2.0}]}, TRAINING_SCHEMA, "c")
    assert training_stages(ok, "c")[1][0]["hard_example_measure"] == "residual"


def test_finetune_stages_are_validated() -> None:
    tr = parse_section({"epochs": 5, "finetune": [{"epochs": 2, "residual_weight": 1.0,
                                                   "latent_dims": [3]}]}, TRAINING_SCHEMA, "c")
    (base, all_dims), (stage, dims) = training_stages(tr, "c [training]")
    assert base["epochs"] == 5 and base["residual_weight"] == 0 and all_dims == []
    assert stage["epochs"] == 2 and stage["residual_weight"] == 1.0 and dims == [3]
    assert stage["batch_size"] == base["batch_size"]       # inherited
    bad = parse_section({"finetune": [{"epoch": 2}]}, TRAINING_SCHEMA, "c")
    with pytest.raises(InputError, match=r"c \[training\] finetune\[0\]: unknown key 'epoch'"):
        training_stages(bad, "c [training]")
    bad = parse_section({"finetune": [{"residual_weight": -1.0}]}, TRAINING_SCHEMA, "c")
    with pytest.raises(InputError, match=r"finetune\[0\] residual_weight: must be >= 0"):
        training_stages(bad, "c [training]")


def _train(snap, out: Path, tr: dict | None = None, **kw) -> Path:
    from autoencoder.train import train_model

    a, t = _settings(tr)
    r = Restriction.from_image_shape(snap.problem().image_shape, a["dims"])
    return train_model(snap, r, 2, a, t, out, progress=False, **kw)


class Killed(Exception):
    pass


def test_finetune_stage_continues_from_the_trained_model_and_resumes(snap,
                                                                      tmp_path: Path) -> None:
    """Adding a stage trains only that stage, from the existing model's weights; a stage
    killed mid-way resumes from its checkpoint; stages for other p leave the model alone."""
    out = _train(snap, tmp_path / "p2")
    base_hist = json.loads((out / "history.json").read_text())
    epochs: list[int] = []
    stage = {"epochs": 4, "residual_weight": 5.0, "hard_example_exponent": 2.0,
             "learning_rate": 1e-3, "keep_best": False}

    def kill_at_2(epoch: int, _h: dict) -> None:
        epochs.append(epoch)
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _train(snap, out, {"finetune": [stage]}, on_epoch_end=kill_at_2)
    assert epochs == [1, 2]                                # stage 0 was not re-run
    _train(snap, out, {"finetune": [stage]}, on_epoch_end=lambda e, h: epochs.append(e))
    assert epochs == [1, 2, 3, 4]                          # resumed after the checkpoint
    man = json.loads((out / "manifest.json").read_text())
    assert [s["stage"] for s in man["training_result"]["stages"]] == [0, 1]
    assert man["training_result"]["stages"][0]["epochs_run"] == TRAIN["epochs"]
    assert man["settings"]["training"]["finetune"] == [stage]
    hist = json.loads((out / "history.json").read_text())
    assert [h["val_loss"] for h in hist[:3]] == [h["val_loss"] for h in base_hist]
    assert [h["stage"] for h in hist] == [0] * 3 + [1] * 4
    # a stage for other latent dimensions does not make this p = 2 model stale
    _train(snap, out, {"finetune": [stage, {**stage, "latent_dims": [3]}]},
           on_epoch_end=lambda e, h: epochs.append(e))
    assert epochs == [1, 2, 3, 4]


def test_models_trained_before_a_training_key_existed_stay_up_to_date(snap,
                                                                       tmp_path: Path) -> None:
    out = _train(snap, tmp_path / "p2")
    man = json.loads((out / "manifest.json").read_text())
    for key in ("residual_weight", "hard_example_exponent", "hard_example_max_weight",
                "hard_example_measure", "hard_example_terms", "keep_best", "finetune"):
        del man["settings"]["training"][key]
    assert man["settings"]["autoencoder"]["image_size"] == []  # an [autoencoder] key, too
    del man["settings"]["autoencoder"]["image_size"]
    (out / "manifest.json").write_text(json.dumps(man))
    epochs: list[int] = []
    _train(snap, out, on_epoch_end=lambda e, h: epochs.append(e))
    assert epochs == []                                    # skipped: nothing to retrain
    _train(snap, out, {"residual_weight": 1.0}, on_epoch_end=lambda e, h: epochs.append(e))
    assert epochs == [1, 2, 3]                             # a non-default value retrains


def test_trajectory_neighbours_stay_inside_their_trajectory() -> None:
    from autoencoder.data import trajectory_neighbours

    prev, nxt, inside = trajectory_neighbours(2 * 7, 7, 2)   # two trajectories of 7 steps
    np.testing.assert_array_equal(prev, [0, 1, 0, 1, 2, 3, 4, 7, 8, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(nxt, [2, 3, 4, 5, 6, 5, 6, 9, 10, 11, 12, 13, 12, 13])
    np.testing.assert_array_equal(inside, [0, 0, 1, 1, 1, 0, 0] * 2)
    with pytest.raises(ValueError, match="whole trajectories"):
        trajectory_neighbours(13, 7, 1)


def test_latent_smoothness_loss_is_the_relative_latent_acceleration(snap) -> None:
    """The trainer's loss with ``latent_smoothness_weight`` equals, computed with numpy from
    the encoder's codes of each sample and its neighbours ``snapshot_stride`` steps away,
    MSE + anchor term + w * the mean over the samples inside their trajectory of
    ``|z+ - 2z + z-|^2 / (|z+ - z|^2 + |z - z-|^2)``; a training step lowers that term."""
    import tensorflow as tf

    from autoencoder.train import _Trainer, initial_images, stage_split

    a, tr = _settings({"latent_smoothness_weight": 0.5, "initial_state_weight": 2.0,
                       "snapshot_stride": 2, "epochs": 1})
    r = Restriction.from_image_shape(snap.problem().image_shape, 2)
    images, _ = prepare(snap.states, r, "deviation")
    n_t = snap.t.size
    anchors = initial_images(images, snap.n_mu)
    split = stage_split(images, None, n_t, np.zeros(0, dtype=np.int64), 2)
    trainer = _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False,
                       anchors, None, split, n_t)
    idx = trainer.i_train
    got = float(trainer.eval_step(*trainer._batch(idx)))
    z = np.asarray(trainer.enc(images, training=False), dtype=np.float64).reshape(
        snap.n_mu, n_t, -1)
    err = np.asarray(trainer.ae(images, training=False), dtype=np.float64) - images
    anchor = np.asarray(trainer.ae(anchors, training=False)) - anchors
    ratios = []
    for i in idx:
        m, n = divmod(int(i), n_t)
        if 2 <= n < n_t - 2:
            zp, z0, zn = z[m, n - 2], z[m, n], z[m, n + 2]
            ratios.append(np.sum((zn - 2 * z0 + zp) ** 2)
                          / (np.sum((zn - z0) ** 2) + np.sum((z0 - zp) ** 2)))
    assert 5 < len(ratios) < idx.size                       # ends of trajectories left out
    smooth = np.mean(ratios)
    assert smooth > 1e-3                                    # an untrained net is not smooth
    expect = np.mean(err[idx] ** 2) + 2.0 * np.mean(anchor**2) + 0.5 * smooth
    assert got == pytest.approx(expect, rel=1e-4)

    def term() -> float:
        zt = np.asarray(trainer.enc(images, training=False), dtype=np.float64)
        zt = zt.reshape(snap.n_mu, n_t, -1)
        acc = np.sum((zt[:, 4:] - 2 * zt[:, 2:-2] + zt[:, :-4]) ** 2, axis=2)
        sp = np.sum((zt[:, 4:] - zt[:, 2:-2]) ** 2 + (zt[:, 2:-2] - zt[:, :-4]) ** 2, axis=2)
        return float(np.mean(acc / sp))

    before = term()
    a2, tr2 = _settings({"latent_smoothness_weight": 1e3, "snapshot_stride": 2,
                         "learning_rate": 1e-3})
    strong = _Trainer(images, r.image_shape, 2, a2, tr2, Path("/nonexistent"), {}, False,
                      None, None, split, n_t)
    assert term() == pytest.approx(before)                  # same seed, same initial net
    batch = strong._batch(idx)
    for _ in range(20):
        strong.train_step(tf.constant([0, 0], dtype=tf.int32), np.ones(idx.size, np.float32),
                          *batch)
    trainer = strong
    assert term() < 0.5 * before


def test_latent_smoothness_is_refused_with_the_residual_term() -> None:
    tr = parse_section({"latent_smoothness_weight": 1.0, "residual_weight": 1.0},
                       TRAINING_SCHEMA, "c.toml [training]")
    with pytest.raises(InputError, match=r"c.toml \[training\] latent_smoothness_weight: "
                                         "not with residual_weight"):
        training_stages(tr, "c.toml [training]")
