"""The autoencoder on several fields of a 2D grid: the padded restriction, the per-channel
scaling, the numba kernels of 2D multi-channel decoders against TensorFlow, the dependency cone
against the full rows, the strides check, the residual term on padded two-field images, and
``mrom train`` end to end on 2D Burgers (a 10 x 10 grid in a 16 x 16 image, tiny networks).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

import fom
from autoencoder.data import Restriction, Scaling, prepare, targets
from autoencoder.manifold import TrainedManifold, load_trained_manifold
from autoencoder.model import check_image
from autoencoder.residual import trajectory_residual
from autoencoder.settings import AUTOENCODER_SCHEMA, check_architecture
from fom.config import load_config, parse_section
from fom.errors import InputError
from fom.snapshots import generate_snapshots, read_snapshots
from fom.steppers import get_scheme, history_term, scheme_at_step, time_residual

#: 2D Burgers on 12 x 12 nodes: two fields on a 10 x 10 grid (N = 200)
N_NODES, M = 12, 10
ARCH = dict(filters=[3, 4], kernel_size=[3, 5], strides=[2, 2], padding="same",
            activation="elu", latent_activation="linear", output_activation="linear",
            variational=False)


def _burgers(t_final: float = 8 * 2.0 / 1500) -> fom.Burgers2D:
    return fom.Burgers2D(n=N_NODES, t_final=t_final)


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("b2d")
    return read_snapshots(generate_snapshots(_burgers(), [[0.9], [1.1]], d / "train.h5",
                                             progress=False))


# ---------------------------------------------------------------- restriction and scaling


def test_padded_restriction_centres_each_field_in_its_channel() -> None:
    prob = _burgers()
    r = Restriction.for_problem(prob, 2, [16, 16])
    assert r.image_shape == (16, 16, 2) and r.padded and r.n_dofs == 200
    x = np.random.default_rng(0).normal(size=200)
    img = r.restrict(x)
    u, v = x[:100].reshape(M, M), x[100:].reshape(M, M)   # row j, column i: x fastest
    np.testing.assert_array_equal(img[3:13, 3:13, 0], u)  # (16 - 10) // 2 = 3 before
    np.testing.assert_array_equal(img[3:13, 3:13, 1], v)
    inside = np.zeros((16, 16), dtype=bool)
    inside[3:13, 3:13] = True
    np.testing.assert_array_equal(img[~inside], 0.0)      # deviation target: pad 0
    np.testing.assert_array_equal(r.prolong(img), x)
    X = np.random.default_rng(1).normal(size=(3, 4, 200))
    np.testing.assert_array_equal(r.prolong(r.restrict(X)), X)
    np.testing.assert_array_equal(r.channel, np.repeat([0, 1], 100))
    # odd padding: the smaller half before the grid
    r13 = Restriction.for_problem(prob, 2, [13, 12])
    np.testing.assert_array_equal(r13.restrict(x)[1:11, 1:11, 1], v)


def test_pad_values_follow_the_target_and_the_problems_boundary_values() -> None:
    prob = _burgers()
    raw = Restriction.for_problem(prob, 2, [16, 16], "raw")
    np.testing.assert_array_equal(raw.pad, prob.boundary_values)
    flame = fom.Flame2D(nx=8, ny=4)
    assert flame.boundary_values is None                   # no uniform Dirichlet value
    rf = Restriction.for_problem(flame, 2, [8, 16], "raw")
    np.testing.assert_array_equal(rf.pad, np.zeros(4))
    prob.boundary_values = (2.0, -1.0)                     # this instance only
    custom = Restriction.for_problem(prob, 2, [12, 12], "raw")
    img = custom.restrict(np.zeros(200))
    assert img[0, 0, 0] == 2.0 and img[0, 0, 1] == -1.0 and img[5, 5, 0] == 0.0
    dev = Restriction.for_problem(prob, 2, [12, 12], "deviation")
    np.testing.assert_array_equal(dev.pad, [0.0, 0.0])


def test_one_dimensional_images_pad_too_and_the_1d_reshape_is_kept() -> None:
    b1 = fom.Burgers1D(n_cells=64)
    r = Restriction.for_problem(b1, 1, [80])
    assert r.image_shape == (80, 1)
    np.testing.assert_array_equal(r.pix, np.arange(64) + 8)
    assert Restriction.for_problem(fom.Burgers1D(), 2).image_shape == (16, 16, 1)
    np.testing.assert_array_equal(Restriction.for_problem(fom.Burgers1D(), 2).pix,
                                  np.arange(256))


@pytest.mark.parametrize(("size", "match"), [
    ([8, 16], r"image_size \[8, 16\] must have 2 entries, each at least the problem's image "
              r"\(10 x 10\)"),
    ([16], r"image_size \[16\] must have 2 entries"),
])
def test_bad_image_size_is_refused(size: list[int], match: str) -> None:
    with pytest.raises(InputError, match=match):
        Restriction.for_problem(_burgers(), 2, size)


def test_scaling_is_per_channel_and_covers_the_pad_value() -> None:
    """Two fields five orders of magnitude apart (a temperature and a mass fraction): each
    channel of the scaled images spans [0, 1]."""
    r = Restriction.from_image_shape((4, 6, 2), 2, image_size=[6, 8])
    rng = np.random.default_rng(0)
    states = np.concatenate([300 + 2000 * rng.random((2, 5, 24)),
                             0.03 * rng.random((2, 5, 24))], axis=2)
    imgs, sc = prepare(states, r, "raw")
    assert imgs.shape == (10, 6, 8, 2)
    # the pad value 0 lies below the data of both channels: it sets their lo
    np.testing.assert_allclose(sc.lo, [0.0, 0.0])
    np.testing.assert_allclose(sc.hi, [states[..., :24].max(), states[..., 24:].max()])
    for c in range(2):
        assert imgs[..., c].min() == pytest.approx(0.0, abs=1e-7)
        assert imgs[..., c].max() == pytest.approx(1.0, rel=1e-6)
    lo, rng_rows = sc.rows(r)
    np.testing.assert_array_equal(lo, np.repeat(sc.lo, 24))
    np.testing.assert_array_equal(rng_rows, np.repeat(sc.range, 24))
    back = r.prolong(sc.unscale_image(imgs.astype(np.float64)))
    np.testing.assert_allclose(back, states.reshape(10, 48), rtol=1e-6)
    unpadded = Restriction.from_image_shape((4, 6, 2), 2)
    sc2 = Scaling.fit(targets(states, "raw"), unpadded)
    assert sc2.lo[0] == pytest.approx(states[..., :24].min())   # no pad: the data's min


# ---------------------------------------------------------------- model and strides


def test_strides_must_divide_the_image() -> None:
    a = check_architecture(parse_section({"strides": [2, 2], "filters": [2, 2]},
                                         AUTOENCODER_SCHEMA, "c"), "c")
    with pytest.raises(InputError, match=r"c \[autoencoder\] strides: \[2, 2\] \(product 4\) "
                                         r"do not divide the image's height 10 .*image_size"):
        check_image((10, 10, 2), a, "c [autoencoder]")
    check_image((16, 12, 2), a, "c [autoencoder]")
    with pytest.raises(InputError, match=r"width 14"):
        check_image((16, 14, 2), a, "c [autoencoder]")
    valid = dict(a, padding="valid", kernel_size=[3, 3])
    with pytest.raises(InputError, match=r"padding 'valid'.*height 7, not 10"):
        check_image((10, 10, 2), valid)
    check_image((11, 11, 2), valid)
    from autoencoder.model import build_autoencoder, build_decoder

    with pytest.raises(InputError, match=r"outputs shape \[7, 7, 2\]"):  # Keras agrees
        build_decoder((10, 10, 2), 2, valid)
    build_autoencoder((11, 11, 2), 2, valid)
    with pytest.raises(InputError, match=r"\[autoencoder\] strides"):
        build_autoencoder((10, 16, 2), 2, a)


def _config(tmp_path: Path, autoencoder: str, training: str = "epochs = 1") -> Path:
    cfg = tmp_path / "b2d.toml"
    cfg.write_text(f"""output_dir = "{tmp_path / 'out'}"
[problem]
name = "burgers2d"
n = {N_NODES}
t_final = {8 * 2.0 / 1500}
[snapshots]
train = [[0.9], [1.1]]
test = [[1.0]]
[autoencoder]
latent_dims = [2]
filters = [3, 4]
kernel_size = [3, 5]
strides = [2, 2]
latent_activation = "linear"
{autoencoder}
[training]
batch_size = 4
learning_rate = 3e-3
{training}
[rom]
methods = ["deep-lspg"]
""")
    return cfg


def test_config_strides_and_image_size_errors_name_file_and_key(tmp_path: Path) -> None:
    from autoencoder.train import settings_from_config

    cfg = _config(tmp_path, "")
    with pytest.raises(InputError, match=r"b2d.toml \[autoencoder\] strides: \[2, 2\] "
                                         r"\(product 4\) do not divide the image's height 10"):
        settings_from_config(load_config(cfg))
    cfg = _config(tmp_path, "image_size = [16]")
    with pytest.raises(InputError, match=r"b2d.toml \[autoencoder\] image_size: must have 2 "
                                         r"entries \(dims = 2\)"):
        settings_from_config(load_config(cfg))
    cfg = _config(tmp_path, "image_size = [8, 8]")
    with pytest.raises(InputError, match=r"b2d.toml \[autoencoder\]: image_size \[8, 8\]"):
        settings_from_config(load_config(cfg))
    ae, _ = settings_from_config(load_config(_config(tmp_path, "image_size = [12, 16]")))
    assert ae["image_size"] == [12, 16]


# ---------------------------------------------------------------- kernels against TensorFlow


def _float64_manifold(p: int, image: tuple[int, int], seed: int, target: str = "deviation",
                      problem: object = None, scaling: Scaling | None = None
                      ) -> tuple[TrainedManifold, object, object]:
    """A float64 Keras autoencoder for 2D Burgers' 10 x 10 x 2 grid (or ``problem``'s) in an
    ``image`` image, exported to a :class:`TrainedManifold` with per-channel scaling."""
    import keras

    from autoencoder.export import export_network
    from autoencoder.model import build_decoder, build_encoder

    r = Restriction.for_problem(problem or _burgers(), 2, list(image), target)
    keras.utils.set_random_seed(seed)
    shape = r.image_shape
    dec = build_decoder(shape, p, ARCH, dtype="float64")
    enc = build_encoder(shape, p, ARCH, dtype="float64")
    for layer in dec.layers:  # non-zero biases, so that a wrong bias index shows
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.random.default_rng(seed).normal(size=layer.bias.shape) * 0.3)
    sc = scaling or Scaling([-0.4, 0.1], [1.3, 0.35])
    md, dd = export_network(dec)
    me, de = export_network(enc)
    man = TrainedManifold(Path("m"), p, r.n_dofs, target, r, sc, md, dd, me, de, {})
    return man, enc, dec


@pytest.mark.parametrize(("p", "image", "seed"), [(2, (16, 16), 0), (3, (12, 16), 1),
                                                  (5, (16, 12), 2)])
def test_2d_decoder_g_and_jacobian_equal_tensorflows(p: int, image: tuple[int, int],
                                                     seed: int) -> None:
    """``g`` and ``J`` in state units (per-channel unscaling, padding dropped) equal TensorFlow's
    forward pass and autodiff Jacobian to 1e-9 in float64 (measured: ~1e-15); the dependency
    cone's rows equal the full rows to 1e-12; the encoder's input holds the scaled pad value."""
    import tensorflow as tf

    man, enc, dec = _float64_manifold(p, image, seed)
    r, sc = man.restriction, man.scaling
    rng = np.random.default_rng(seed)
    for _ in range(2):
        z = rng.normal(size=p)
        zt = tf.constant(z[None])
        with tf.GradientTape() as tape:
            tape.watch(zt)
            y = dec(zt)[0]
        jac = tape.jacobian(y, zt).numpy()[..., 0, :]       # (H, W, C, p)
        g_ref = r.prolong(sc.unscale_image(y.numpy()))
        J_ref = (jac * sc.range[:, None]).reshape(-1, p)[r.pix]
        g, J = man.decode_with_jacobian(z)
        assert np.max(np.abs(g - g_ref)) <= 1e-9 * np.max(np.abs(g_ref))
        assert np.max(np.abs(J - J_ref)) <= 1e-9 * np.max(np.abs(J_ref))
        np.testing.assert_allclose(man.decode(z), g, rtol=0, atol=1e-14 * np.abs(g).max())
        for rows in (np.array([0, 99, 100, 199]), rng.choice(200, 37, replace=False),
                     np.arange(200)):
            gr, Jr = man.decode_rows(z, rows)
            assert np.max(np.abs(gr - g[rows])) <= 1e-12 * np.max(np.abs(g))
            assert np.max(np.abs(Jr - J[rows])) <= 1e-12 * np.max(np.abs(J))
        g2, J2 = replace(man, threads=2).decode_with_jacobian(z)  # directions on 2 threads
        assert np.max(np.abs(g2 - g)) <= 1e-14 * np.max(np.abs(g))
        assert np.max(np.abs(J2 - J)) <= 1e-14 * np.max(np.abs(J))
    x = rng.normal(size=(3, 200)) * 0.2
    img = sc.scale_image(r.restrict(x))                    # padded entries: scaled pad 0
    assert np.all(img[:, 0, 0, :] == (0.0 - sc.lo) / sc.range)
    np.testing.assert_allclose(man.encode_many(x), enc(img).numpy(), rtol=1e-12, atol=1e-13)
    cost = man.cone_cost(np.array([0, 150]))
    assert 0 < cost["macs"] < cost["full_macs"]


# ---------------------------------------------------------------- residual term


def test_residual_term_on_padded_two_field_images_is_the_scaled_derivative(snap) -> None:
    """Equation (3) of autoencoder/residual.py on the state rows of a padded two-field image
    with one scaling per field: ``(1/rng_i)`` times the directional derivative of the FOM
    residual (1) along the unscaled errors ``rng_j e_j`` (central differences)."""
    problem, scheme = snap.problem(), get_scheme(snap.solver["scheme"])
    dt, n_t = snap.solver["dt"], snap.t.size
    r = Restriction.for_problem(problem, 2, [16, 16])
    sc = Scaling([-0.5, -0.2], [0.1, 0.05])                 # very different ranges
    res = trajectory_residual(snap, r, sc)
    np.testing.assert_array_equal(res.pix, r.pix)
    assert res.rows.max() < 200 and res.cols.max() < 200    # state rows, not image entries
    rng_rows = sc.rows(r)[1]
    e = np.random.default_rng(0).standard_normal(snap.states.shape)   # scaled errors
    for s in [0, 3, res.n_samples - 1]:
        i, n = divmod(int(res.current[s]), n_t)
        sch = scheme_at_step(scheme, n)
        hist = [snap.states[i, n - j] for j in range(1, sch.n_history + 1)]
        dhist = [rng_rows * e[i, n - j] for j in range(1, sch.n_history + 1)]

        def resid(eps: float, i=i, n=n, sch=sch, hist=hist, dhist=dhist) -> np.ndarray:
            h = history_term(sch, [x + eps * d for x, d in zip(hist, dhist, strict=True)])
            return time_residual(problem, sch, snap.states[i, n] + eps * rng_rows * e[i, n],
                                 h, snap.t[n], dt, snap.mu[i])

        fd = (resid(1e-6) - resid(-1e-6)) / 2e-6 / rng_rows
        ee = e.reshape(-1, 200)
        lin = np.zeros(200)
        np.add.at(lin, res.rows, res.values[s] * ee[res.current[s]][res.cols])
        lin += np.einsum("k,kn->n", res.alpha[s], ee[res.history[s]])
        np.testing.assert_allclose(lin, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


def test_trainer_residual_loss_on_padded_images(snap) -> None:
    """The trainer's loss with the residual term on padded two-field images equals the numpy
    reference: MSE over the whole images (padding included) + w * mean |(3)|^2 over the state
    rows."""
    from test_training_stages import _model_errors_and_residuals

    from autoencoder.settings import TRAINING_SCHEMA
    from autoencoder.train import _Trainer

    a = check_architecture(parse_section({**ARCH, "image_size": [16, 16]}, AUTOENCODER_SCHEMA,
                                         "t"), "t")
    tr = parse_section({"residual_weight": 5.0, "batch_size": 4}, TRAINING_SCHEMA, "t")
    r = Restriction.for_problem(snap.problem(), 2, [16, 16])
    images, sc = prepare(snap.states, r, "deviation")
    res = trajectory_residual(snap, r, sc)
    trainer = _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False,
                       None, res)
    idx = np.arange(res.n_samples)
    got = float(trainer.eval_step(*trainer._batch(idx)))
    err, lin = _model_errors_and_residuals(trainer, images, res, idx)
    rec = np.concatenate([err[res.current[idx]], err[res.history[idx]].reshape(-1, err.shape[1])])
    assert lin.shape[1] == 200 and err.shape[1] == 512
    assert got == pytest.approx(np.mean(rec**2) + 5.0 * np.mean(lin**2), rel=1e-4)


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("arch, image", [
    ("image_size = [16, 16]", [16, 16, 2]),
    ('decoder = "local"\nscaling = "maxabs"\nlocal_features = 2\nlocal_channels = 3',
     [10, 10, 2]),
])
def test_mrom_train_end_to_end_on_2d_burgers(tmp_path: Path, arch: str, image: list) -> None:
    """``mrom train`` on a 2D Burgers config (a padded image with the mirrored decoder, or the
    unpadded one with the locally connected decoder and the max-abs scaling) and a residual
    fine-tuning stage writes a format-2 model whose numba decoder equals the Keras file's, and
    Deep LSPG runs on it from the initial state."""
    from rom.cli import main

    cfg = _config(tmp_path, arch,
                  "epochs = 2\n[[training.finetune]]\nresidual_weight = 1.0\nepochs = 1")
    assert main(["train", str(cfg)]) == 0
    model = tmp_path / "out" / "models" / "p2"
    man = json.loads((model / "manifest.json").read_text())
    assert man["format_version"] == 2 and man["image_shape"] == image
    assert len(man["scaling"]["lo"]) == 2
    if "maxabs" in arch:
        assert man["scaling"]["lo"] == [0.0, 0.0]
    assert [s["stage"] for s in man["training_result"]["stages"]] == [0, 1]
    m = load_trained_manifold(model)
    with h5py.File(model / "exported.h5") as f:
        np.testing.assert_array_equal(f["restriction/pix"][()], m.restriction.pix)
    from autoencoder.model import load_keras_model

    ae = load_keras_model(model / "autoencoder.keras")
    snap = read_snapshots(tmp_path / "out" / "test.h5")
    y = snap.states[0, -1] - snap.states[0, 0]
    img = m.scaling.scale_image(m.restriction.restrict(y))[None].astype(np.float32)
    ref = m.restriction.prolong(m.scaling.unscale_image(
        ae(img, training=False).numpy()[0].astype(np.float64)))
    np.testing.assert_allclose(m.decode(m.encode(y)), ref, rtol=0,
                               atol=1e-5 * float(np.abs(ref).max()))
    from rom import solve_rom
    from rom.manifolds import DecoderManifold

    res = solve_rom(_burgers(), DecoderManifold.load(model), [1.0], "lspg")
    assert res.states.shape == (9, 200) and np.all(np.isfinite(res.states))
    np.testing.assert_allclose(res.states[0], snap.states[0, 0], atol=1e-12)


def test_format_1_model_folders_are_still_read(tmp_path: Path) -> None:
    """A version-1 folder (``/restriction/perm``, one scalar scaling) loads as the equivalent
    one-channel restriction and scaling, and decodes the same."""
    import keras

    from autoencoder.export import export_network
    from autoencoder.model import build_decoder, build_encoder

    shape, p = (8, 8, 1), 2
    arch = dict(ARCH, filters=[2, 3])
    keras.utils.set_random_seed(0)
    md, dd = export_network(build_decoder(shape, p, arch, dtype="float64"))
    me, de = export_network(build_encoder(shape, p, arch, dtype="float64"))
    perm = np.random.default_rng(0).permutation(64)        # image.ravel() = x[perm]
    with h5py.File(tmp_path / "exported.h5", "w") as f:
        for k, v in (("decoder/meta", md), ("decoder/data", dd), ("encoder/meta", me),
                     ("encoder/data", de), ("restriction/perm", perm)):
            f.create_dataset(k, data=v)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format_version": 1, "p": p, "n_dofs": 64, "image_shape": list(shape),
        "target": "deviation", "scaling": {"lo": -1.0, "hi": 3.0}}))
    old = load_trained_manifold(tmp_path)
    pix = np.empty(64, dtype=np.int64)
    pix[perm] = np.arange(64)
    new = TrainedManifold(tmp_path, p, 64, "deviation", Restriction(shape, pix),
                          Scaling(-1.0, 3.0), md, dd, me, de, {})
    z = np.array([0.3, -0.7])
    np.testing.assert_array_equal(old.restriction.pix, pix)
    np.testing.assert_array_equal(old.decode_with_jacobian(z)[1], new.decode_with_jacobian(z)[1])
    np.testing.assert_array_equal(old.decode(z), new.decode(z))
    x = np.random.default_rng(1).normal(size=64)
    np.testing.assert_array_equal(old.encode(x), new.encode(x))
    assert old.scaling.lo.tolist() == [-1.0] and old.scaling.hi.tolist() == [3.0]


def test_xla_compiled_training_matches_the_plain_steps_and_repeats_bitwise(snap) -> None:
    """``jit_compile = true`` (XLA) trains the locally connected 2D autoencoder through the
    same losses as the plain graph: one epoch of Adam steps (batches of 4 and a last partial
    batch, so two compiled shapes) from the same initial weights reaches the same summed loss
    and the same weights up to float32 rounding, and two XLA runs give bitwise equal weights."""
    import tensorflow as tf

    from autoencoder.settings import TRAINING_SCHEMA
    from autoencoder.train import _Trainer

    a = check_architecture(parse_section(
        {**ARCH, "decoder": "local", "scaling": "maxabs", "local_features": 2,
         "local_channels": 3}, AUTOENCODER_SCHEMA, "t"), "t")
    r = Restriction.for_problem(snap.problem(), 2)
    images, _ = prepare(snap.states, r, "deviation", Scaling.fit(
        targets(snap.states, "deviation"), r, "maxabs"))

    def one_epoch(jit: bool) -> tuple[list[np.ndarray], float, list[np.ndarray]]:
        """Initial weights, summed loss and final weights of one epoch."""
        tr = parse_section({"batch_size": 4, "learning_rate": 1e-3, "jit_compile": jit},
                           TRAINING_SCHEMA, "t")
        t = _Trainer(images, r.image_shape, 2, a, tr, Path("/nonexistent"), {}, False)
        start = [v.numpy() for v in t.vars]
        order = tf.constant(np.arange(images.shape[0])[::-1].copy(), dtype=tf.int32)
        total = float(t.train_epoch(order, tf.ones(images.shape[0]), tf.constant(0))[0])
        return start, total, [v.numpy() for v in t.vars]

    assert images.shape[0] % 4 != 0
    start, plain_loss, plain = one_epoch(False)
    _, xla_loss, xla = one_epoch(True)
    _, again_loss, again = one_epoch(True)
    assert xla_loss == pytest.approx(plain_loss, rel=1e-4)
    trained = max(float(np.abs(p - v0).max()) for p, v0 in zip(plain, start, strict=True))
    apart = max(float(np.abs(p - x).max()) for p, x in zip(plain, xla, strict=True))
    assert trained > 3e-3 and apart < 1e-5
    assert again_loss == xla_loss
    for x, y in zip(xla, again, strict=True):
        np.testing.assert_array_equal(x, y)
