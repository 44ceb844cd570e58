"""Training, the model directory, the reference state, resume and skip (issue 3).

Tiny nets on a tiny snapshot set (64 cells, 10 steps, 4 parameters), a few epochs each.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fom
from autoencoder.data import Restriction, prepare
from autoencoder.manifold import load_trained_manifold
from autoencoder.settings import AUTOENCODER_SCHEMA, TRAINING_SCHEMA, check_architecture
from fom.config import parse_section
from fom.errors import InputError
from fom.snapshots import generate_snapshots, read_snapshots

ROOT = Path(__file__).resolve().parents[1]
MUS = [[4.3, 0.02], [5.0, 0.025], [5.4, 0.016], [4.7, 0.029]]
TEST_MUS = [[4.6, 0.021]]
ARCH = {"filters": [4, 8], "strides": [2, 2], "kernel_size": 3, "latent_dims": [2]}
TRAIN = {"batch_size": 8, "learning_rate": 3e-3, "epochs": 4, "patience": 50,
         "checkpoint_every": 2}


@pytest.fixture(scope="module")
def snaps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("snaps")
    prob = fom.Burgers1D(n_cells=64, t_final=0.7)
    train = generate_snapshots(prob, MUS, d / "train.h5", progress=False)
    test = generate_snapshots(prob, TEST_MUS, d / "test.h5", progress=False)
    return train, test


def _settings(arch: dict | None = None, tr: dict | None = None) -> tuple[dict, dict]:
    a = check_architecture(parse_section({**ARCH, **(arch or {})}, AUTOENCODER_SCHEMA, "t"),
                           "t")
    return a, parse_section({**TRAIN, **(tr or {})}, TRAINING_SCHEMA, "t")


def _train(snaps: tuple[Path, Path], out: Path, arch: dict | None = None,
           tr: dict | None = None, **kw) -> Path:
    from autoencoder.train import train_model

    a, t = _settings(arch, tr)
    snap = read_snapshots(snaps[0])
    r = Restriction.from_image_shape(snap.problem().image_shape, a["dims"])
    return train_model(snap, r, 2, a, t, out, test=read_snapshots(snaps[1]), progress=False,
                       **kw)


@pytest.fixture(scope="module")
def trained(snaps: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(snaps, tmp_path_factory.mktemp("m") / "p2", tr={"epochs": 8})


def test_training_lowers_validation_loss_and_writes_directory(trained: Path) -> None:
    hist = json.loads((trained / "history.json").read_text())
    assert len(hist) == 8
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    man = json.loads((trained / "manifest.json").read_text())
    assert man["p"] == 2 and man["n_dofs"] == 64 and man["target"] == "deviation"
    assert man["training_result"]["epochs_run"] == 8
    assert 0 < man["test_error"]["mean"] < 0.3  # measured 0.136 (8 epochs of a tiny net)
    # the reported errors are the paper's trajectory measure of the encode-decode map
    m = load_trained_manifold(trained)
    x = read_snapshots(man["test_error"]["path"]).states[0]
    x0 = x[0]
    rec = np.array([x0 + m.decode(m.encode(xn - x0)) for xn in x])
    err = np.linalg.norm(x - rec) / np.linalg.norm(x)
    assert man["test_error"]["per_mu"][0] == pytest.approx(err, rel=1e-10)
    x_ref, _ = m.reference_state(x0)
    rec = np.array([x_ref + m.decode(m.encode(xn - x0)) for xn in x])
    err = np.linalg.norm(x - rec) / np.linalg.norm(x)
    assert man["test_error"]["per_mu_through_reference"][0] == pytest.approx(err, rel=1e-10)
    for f in ("autoencoder.keras", "exported.h5", "history.json"):
        assert (trained / f).is_file()
    assert not (trained / "checkpoint").exists()


def _float64_copy(trained: Path):
    """The Keras model of a model directory and its encoder and decoder rebuilt in float64
    (architecture from the manifest), independent of the exported numba kernels."""
    import keras

    from autoencoder.model import build_decoder, build_encoder

    model = keras.saving.load_model(trained / "autoencoder.keras", safe_mode=True)
    man = json.loads((trained / "manifest.json").read_text())
    a = check_architecture(parse_section(man["settings"]["autoencoder"], AUTOENCODER_SCHEMA,
                                         "m"), "m")
    shape = tuple(man["image_shape"])
    dec = build_decoder(shape, man["p"], a, dtype="float64")
    enc = build_encoder(shape, man["p"], a, dtype="float64")
    dec.set_weights([w.astype(np.float64) for w in model.get_layer("decoder").get_weights()])
    enc.set_weights([w.astype(np.float64) for w in model.get_layer("encoder").get_weights()])
    return model, enc, dec


def _keras_reference_state(trained: Path, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x0 - g(z0), z0)``, ``z0 = h(0)`` (deviation) or ``h(x0)`` (raw), through Keras in
    float64 with the problem's own restriction: section 5.3 evaluated without the exported
    kernels or ``reference_state``."""
    _, enc, dec = _float64_copy(trained)
    man = json.loads((trained / "manifest.json").read_text())
    lo, hi = man["scaling"]["lo"], man["scaling"]["hi"]
    dims = 2 if len(man["image_shape"]) == 3 else 1
    # one channel: image.ravel()[pix] = x
    pix = Restriction.from_image_shape(fom.Burgers1D(n_cells=x0.size).image_shape, dims).pix
    (lo,), (hi,) = np.atleast_1d(lo), np.atleast_1d(hi)
    u = np.zeros_like(x0) if man["target"] == "deviation" else x0
    img = np.zeros(int(np.prod(man["image_shape"])))
    img[pix] = (u - lo) / (hi - lo)
    code = enc(img.reshape(1, *man["image_shape"]))
    z0 = np.asarray(code[0] if man["variational"] else code, dtype=np.float64)[0]
    g = lo + (hi - lo) * np.asarray(dec(z0[None])).reshape(-1)[pix]
    return x0 - g, z0


def _check_reference_state(trained: Path, mus: list) -> None:
    """The model's reference state and the ROM's first state against Keras and the FOM."""
    from rom import DecoderManifold, solve_rom

    m = load_trained_manifold(trained)
    prob = fom.Burgers1D(n_cells=64, t_final=0.7)
    for mu in mus:
        x0 = prob.initial_state(np.array(mu)) + np.random.default_rng(0).normal(size=64)
        x_ref, z0 = m.reference_state(x0)
        k_ref, k_z0 = _keras_reference_state(trained, x0)
        np.testing.assert_allclose(z0, k_z0, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(x_ref, k_ref, rtol=0, atol=1e-10 * np.abs(x0).max())
        assert np.abs(x_ref - x0).max() > 1e-4   # g(h(.)) is not zero: a real check
    # the ROM starts at the FOM's initial state x0(mu), from the latent point h(0) or h(x0)
    mu = np.array(mus[0])
    rom = solve_rom(prob, DecoderManifold(m), mu, "lspg", t_final=0.07)
    x0 = prob.initial_state(mu)
    np.testing.assert_allclose(rom.latent[0], _keras_reference_state(trained, x0)[1],
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rom.states[0], x0, rtol=0, atol=1e-12)


def test_trained_manifold_matches_keras_in_float64(trained: Path) -> None:
    import tensorflow as tf

    m = load_trained_manifold(trained)
    _, enc, dec = _float64_copy(trained)
    lo, hi = m.lo, m.hi
    rng = np.random.default_rng(0)
    for _ in range(3):
        z = rng.normal(size=m.p)
        zt = tf.constant(z[None])
        with tf.GradientTape() as tape:
            tape.watch(zt)
            y = tf.reshape(dec(zt), [-1])
        J_ref = tape.jacobian(y, zt).numpy().reshape(-1, m.p) * (hi - lo)
        g_ref = lo + (hi - lo) * y.numpy()
        g, J = m.decode_with_jacobian(z)
        assert np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref)) < 1e-10
        assert np.max(np.abs(J - J_ref)) / np.max(np.abs(J_ref)) < 1e-9
        rows = np.array([0, 3, 31, 63])
        gr, Jr = m.decode_rows(z, rows)
        np.testing.assert_allclose(gr, g[rows], rtol=1e-13)
        np.testing.assert_allclose(Jr, J[rows], rtol=1e-12, atol=1e-15)
    y = rng.normal(size=64)
    z_ref = enc(((y - lo) / (hi - lo)).reshape(1, *m.image_shape)).numpy()[0]
    np.testing.assert_allclose(m.encode(y), z_ref, rtol=1e-10, atol=1e-12)


def test_saved_model_gives_identical_outputs(trained: Path, tmp_path: Path) -> None:
    model, _, _ = _float64_copy(trained)
    x = np.random.default_rng(1).random((5, 8, 8, 1)).astype(np.float32)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "again.keras")
    import keras

    again = keras.saving.load_model(tmp_path / "again.keras", safe_mode=True)
    np.testing.assert_array_equal(again.predict(x, verbose=0), before)
    # the exported kernels of the saved directory reproduce the Keras file too
    m = load_trained_manifold(trained)
    code = model.get_layer("encoder").predict(x, verbose=0).astype(np.float64)
    ref = model.get_layer("decoder").predict(code.astype(np.float32), verbose=0)
    mine = np.array([m.decode(z) for z in code])
    np.testing.assert_allclose(mine, m.restriction.prolong(m.scaling.unscale_image(ref)),
                               rtol=1e-5, atol=1e-5 * float(m.scaling.range.max()))


@pytest.mark.parametrize("target", ["deviation", "raw"])
def test_reference_state_is_x0_minus_the_decoded_initial_code(
        snaps: tuple[Path, Path], target: str, trained: Path, tmp_path: Path) -> None:
    path = trained if target == "deviation" else _train(
        snaps, tmp_path / "raw", arch={"target": "raw"}, tr={"epochs": 1})
    assert load_trained_manifold(path).target == target
    _check_reference_state(path, MUS[:2] + TEST_MUS)


def test_initial_state_weight_anchors_the_reference_state(snaps: tuple[Path, Path],
                                                         trained: Path, tmp_path: Path) -> None:
    """With the initial states in the loss, ``g(h(0))`` (the error ``x_ref`` adds to every ROM
    state, section 5.3) is far smaller than without, at the same seed and epochs."""
    from autoencoder.train import initial_images

    snap = read_snapshots(snaps[0])
    a, _ = _settings()
    r = Restriction.from_image_shape(snap.problem().image_shape, a["dims"])
    images, scaling = prepare(snap.states, r, "deviation")
    anchors = initial_images(images, snap.n_mu)
    assert anchors.shape == (1, *images.shape[1:])  # x0 - x0 = 0 for every trajectory
    np.testing.assert_allclose(anchors, scaling.scale_image(np.zeros(1)).item(), rtol=1e-6)
    raw, _ = prepare(snap.states, r, "raw")
    assert initial_images(raw, snap.n_mu).shape[0] == 1  # Burgers: x0 = 1 for every mu

    anchored = _train(snaps, tmp_path / "anchored", tr={"epochs": 8,
                                                       "initial_state_weight": 100.0})
    plain, fixed = load_trained_manifold(trained), load_trained_manifold(anchored)
    e_plain = np.linalg.norm(plain.decode(plain.encode(np.zeros(64))))
    e_fixed = np.linalg.norm(fixed.decode(fixed.encode(np.zeros(64))))
    assert e_fixed < 0.2 * e_plain, (e_fixed, e_plain)
    hist = json.loads((anchored / "history.json").read_text())
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]


def test_resume_after_interruption_continues_from_checkpoint(snaps: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    full = _train(snaps, tmp_path / "full", tr={"epochs": 5})

    class Killed(Exception):
        pass

    def kill_at_3(epoch: int, _h: dict) -> None:
        if epoch == 3:
            raise Killed  # killed during epoch 3's bookkeeping: epoch 3 is lost

    with pytest.raises(Killed):
        _train(snaps, tmp_path / "resumed", tr={"epochs": 5}, on_epoch_end=kill_at_3)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2  # the last checkpoint (every 2 epochs)
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    seen: list[int] = []
    _train(snaps, tmp_path / "resumed", tr={"epochs": 5},
           on_epoch_end=lambda e, h: seen.append(e))
    assert seen == [3, 4, 5]
    h_full = json.loads((full / "history.json").read_text())
    h_res = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in h_res] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([h["val_loss"] for h in h_res],
                               [h["val_loss"] for h in h_full], rtol=1e-5)
    a, b = load_trained_manifold(full), load_trained_manifold(tmp_path / "resumed")
    np.testing.assert_allclose(a.dec_data, b.dec_data, rtol=1e-5, atol=1e-7)


def _config(tmp_path: Path, snaps: tuple[Path, Path], extra: str = "", n_cells: int = 64) -> Path:
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    for kind, src in zip(("train", "test"), snaps, strict=True):
        if not (out / f"{kind}.h5").exists():
            (out / f"{kind}.h5").write_bytes(src.read_bytes())
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""output_dir = "{out}"
[problem]
name = "burgers1d"
n_cells = {n_cells}
t_final = 0.7
[snapshots]
train = {MUS}
test = {TEST_MUS}
[autoencoder]
latent_dims = [1, 2]
filters = [4, 8]
strides = [2, 2]
kernel_size = 3
[training]
batch_size = 8
{"" if "epochs" in extra else "epochs = 2"}
{extra}
""")
    return cfg


def test_train_from_config_trains_each_p_then_skips(snaps: tuple[Path, Path],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from autoencoder.train import train_from_config

    cfg = _config(tmp_path, snaps)
    dirs = train_from_config(cfg, progress=False)
    assert [d.name for d in dirs] == ["p1", "p2"]
    assert "reconstruction error" in capsys.readouterr().out
    stamp = [(d / "manifest.json").stat().st_mtime_ns for d in dirs]
    train_from_config(cfg, latent_dims=[2], progress=True)
    assert "up to date, skipped" in capsys.readouterr().out
    assert (dirs[1] / "manifest.json").stat().st_mtime_ns == stamp[1]
    # a changed setting retrains
    cfg = _config(tmp_path, snaps, extra="seed = 3")
    train_from_config(cfg, latent_dims=[2], progress=False)
    assert (dirs[1] / "manifest.json").stat().st_mtime_ns != stamp[1]


def test_model_that_does_not_fit_the_snapshot_file_is_refused(snaps: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    from autoencoder.train import reconstruction_errors, train_from_config

    cfg = _config(tmp_path, snaps, n_cells=256)  # the files hold 64-cell states
    with pytest.raises(InputError, match=r"N = 64 .*N = 256.*does not fit"):
        train_from_config(cfg, progress=False)
    m = load_trained_manifold(_train(snaps, tmp_path / "m", tr={"epochs": 1}))
    prob = fom.Burgers1D(n_cells=32, t_final=0.07)
    other = generate_snapshots(prob, TEST_MUS, tmp_path / "small.h5", progress=False)
    with pytest.raises(InputError, match="does not fit"):
        reconstruction_errors(m, read_snapshots(other))
    with pytest.raises(InputError, match="N = 64"):
        m.encode(np.zeros(32))


def test_variational_option_trains_and_uses_the_mean(snaps: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    import keras

    path = _train(snaps, tmp_path / "vae", arch={"variational": True, "kl_weight": 1e-3},
                  tr={"epochs": 3})
    hist = json.loads((path / "history.json").read_text())
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    m = load_trained_manifold(path)
    model = keras.saving.load_model(path / "autoencoder.keras", safe_mode=True)
    enc = model.get_layer("encoder")
    assert [o.name for o in enc.outputs] and len(enc.outputs) == 2
    y = np.random.default_rng(0).normal(size=64) * 0.1
    mean, _ = enc.predict(((y - m.lo) / (m.hi - m.lo)).reshape(1, 8, 8, 1).astype(np.float32),
                          verbose=0)
    np.testing.assert_allclose(m.encode(y), mean[0], rtol=1e-4, atol=1e-5)
    _check_reference_state(path, MUS[:1])        # from the mean head


def test_online_path_does_not_import_tensorflow(trained: Path) -> None:
    code = (f"import sys, numpy as np, autoencoder\n"
            f"from autoencoder.manifold import load_trained_manifold\n"
            f"m = load_trained_manifold({str(trained)!r})\n"
            f"m.decode_with_jacobian(np.zeros(m.p)); m.decode_rows(np.zeros(m.p), [0, 1])\n"
            f"m.reference_state(np.ones(m.n_dofs))\n"
            f"bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras')]\n"
            f"print('LOADED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "LOADED []" in out


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="TensorFlow's oneDNN switch is an x86 setting")
def test_importing_the_package_gives_tensorflow_onednn_convolutions(trained: Path) -> None:
    """Importing ``autoencoder`` before TensorFlow makes a Keras convolution run as a oneDNN
    convolution primitive (ONEDNN_VERBOSE names it) on every x86 CPU, not only on those where
    TensorFlow turns oneDNN on by itself; a user's ``TF_ENABLE_ONEDNN_OPTS = 0`` stands;
    TensorFlow's own report of the setting agrees, and the manifest records it; a TensorFlow
    started before the package is reported by the warning training gives."""
    code = ("import os, autoencoder, keras, numpy as np\n"
            "from autoencoder.train import tensorflow_onednn\n"
            "print('ENV', os.environ['TF_ENABLE_ONEDNN_OPTS'])\n"
            "keras.layers.Conv2D(4, 3)(np.ones((2, 8, 8, 1), 'float32'))\n"
            "print('ONEDNN', tensorflow_onednn())\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["ONEDNN_VERBOSE"] = "1"
    runs = {}
    for setting in (None, "0"):
        extra = {} if setting is None else {"TF_ENABLE_ONEDNN_OPTS": setting}
        runs[setting] = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, cwd=ROOT, check=True, env={**env, **extra})
    assert "ENV 1" in runs[None].stdout and "ONEDNN True" in runs[None].stdout
    assert ",convolution," in runs[None].stdout + runs[None].stderr
    assert "ENV 0" in runs["0"].stdout and "ONEDNN False" in runs["0"].stdout
    assert ",convolution," not in runs["0"].stdout + runs["0"].stderr
    from autoencoder.train import onednn_started_late, tensorflow_onednn

    man = json.loads((trained / "manifest.json").read_text())
    assert man["versions"]["onednn"] is tensorflow_onednn() is not None
    assert onednn_started_late() is None
    # TensorFlow started first (without oneDNN, whatever this CPU's default): the package's
    # setting comes too late, and training says so
    late = subprocess.run([sys.executable, "-c", "import os\n"
                           "os.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'\n"
                           "import tensorflow\n"
                           "del os.environ['TF_ENABLE_ONEDNN_OPTS']\n"
                           "import autoencoder\n"
                           "from autoencoder.train import onednn_started_late as f\n"
                           "print('LATE', f())"], capture_output=True, text=True, cwd=ROOT,
                          check=True, env=env).stdout
    assert "LATE TensorFlow started before autoencoder" in late


def test_broken_model_directories_are_refused(trained: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "broken"
    shutil.copytree(trained, d)
    (d / "exported.h5").unlink()
    with pytest.raises(InputError, match="exported.h5: missing"):
        load_trained_manifold(d)
    shutil.copy(trained / "exported.h5", d / "exported.h5")
    man = json.loads((d / "manifest.json").read_text())
    man["p"] = 5
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(InputError, match=r"exported.h5: the decoder maps 2 -> 64 values, "
                                         r"expected 5 -> 64"):
        load_trained_manifold(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="manifest.json: unreadable"):
        load_trained_manifold(d)
    (d / "manifest.json").unlink()
    with pytest.raises(InputError, match="manifest.json: missing"):
        load_trained_manifold(d)


def test_conv1d_variant_trains(snaps: tuple[Path, Path], tmp_path: Path) -> None:
    path = _train(snaps, tmp_path / "1d", arch={"dims": 1, "kernel_size": 9},
                  tr={"epochs": 3})
    m = load_trained_manifold(path)
    assert m.image_shape == (64, 1)
    hist = json.loads((path / "history.json").read_text())
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    _check_reference_state(path, MUS[:1])


# ----------------------------------------------------------------------------- the fit loop


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return [w.numpy() for w in keras.saving.load_model(path / "autoencoder.keras").weights]


def test_budget_stop_leaves_an_incomplete_model_that_the_next_run_continues(
        snaps: tuple[Path, Path], tmp_path: Path) -> None:
    """A wall-time budget pauses training after an epoch: the model is written but marked
    incomplete (refused by the online loader, never "up to date"), the next run continues it
    from the checkpoint, and the result is bit for bit that of an uninterrupted run, which is
    also bit for bit that of a second uninterrupted run (same machine)."""
    from autoencoder.train import train_from_config

    tr = {"epochs": 3, "checkpoint_every": 5}
    once, twice = (_train(snaps, tmp_path / name, tr=tr) for name in ("once", "twice"))
    for a, b in zip(_weights(once), _weights(twice), strict=True):
        np.testing.assert_array_equal(a, b)
    m_once, m_twice = load_trained_manifold(once), load_trained_manifold(twice)
    np.testing.assert_array_equal(m_once.dec_data, m_twice.dec_data)

    cfg = _config(tmp_path, snaps, extra="epochs = 3\ncheckpoint_every = 5\nmax_wall_s = 1e-9\n"
                  "learning_rate = 3e-3")
    model = tmp_path / "run" / "models" / "p2"
    for epoch in (1, 2):
        assert train_from_config(cfg, latent_dims=[2], progress=False) == [model]
        man = json.loads((model / "manifest.json").read_text())
        assert man["complete"] is False
        res = man["training_result"]
        assert (res["epochs_run"], res["stopped_by"], res["budget_stops"]) == \
            (epoch, "wall_time", list(range(1, epoch + 1)))
        assert (model / "checkpoint" / "state.json").is_file()
        with pytest.raises(InputError, match=r"manifest.json: incomplete model \(the wall-time "
                                             rf"budget stopped stage 0 after epoch {epoch} of 3"):
            load_trained_manifold(model)
        assert load_trained_manifold(model, allow_incomplete=True).p == 2
    train_from_config(cfg, latent_dims=[2], progress=False)
    man = json.loads((model / "manifest.json").read_text())
    assert man["complete"] is True and not (model / "checkpoint").exists()
    res = man["training_result"]
    assert (res["epochs_run"], res["stopped_by"], res["budget_stops"]) == (3, "epochs", [1, 2])
    for a, b in zip(_weights(once), _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    # complete now; removing the budget does not make it stale (it is not part of the model)
    cfg = _config(tmp_path, snaps, extra="epochs = 3\nlearning_rate = 3e-3")
    stamp = (model / "manifest.json").stat().st_mtime_ns
    train_from_config(cfg, latent_dims=[2], progress=False)
    assert (model / "manifest.json").stat().st_mtime_ns == stamp


def _scripted_trainer(snaps: tuple[Path, Path], tmp_path: Path, tr: dict,
                      val_losses: list[float] | None):
    """A trainer whose validation losses are the given sequence (None: no validation)."""
    from autoencoder.train import _Trainer

    a, t = _settings(tr=tr)
    snap = read_snapshots(snaps[0])
    r = Restriction.from_image_shape(snap.problem().image_shape, a["dims"])
    images, _ = prepare(snap.states, r, "deviation")
    n = images.shape[0]
    split = (np.arange(n // 2), np.arange(n // 2, n) if val_losses else np.zeros(0, int))
    trainer = _Trainer(images, r.image_shape, 2, a, t, tmp_path, {}, False, split=split)
    if val_losses:
        it = iter(val_losses)
        trainer._evaluate = lambda idx: next(it)
    seen: list[tuple[float, list[np.ndarray]]] = []

    def record(epoch: int, h: dict) -> None:
        seen.append((float(trainer.opt.learning_rate.numpy()),
                     [v.numpy() for v in trainer.ae.weights]))

    return trainer, seen, record


@pytest.mark.parametrize("keep_best", [True, False])
def test_early_stopping_and_keep_best_follow_the_validation_loss(
        snaps: tuple[Path, Path], tmp_path: Path, keep_best: bool) -> None:
    trainer, seen, record = _scripted_trainer(
        snaps, tmp_path, {"epochs": 10, "patience": 3, "keep_best": keep_best},
        [5.0, 2.0, 3.0, 2.5, 2.0, 9.0])
    assert trainer.fit(record) is True
    st = trainer.state
    assert (st["epoch"], st["stopped_by"], st["best_epoch"], st["best_val"]) == \
        (5, "early_stopping", 2, 2.0)          # 3 epochs without a better (strictly lower) loss
    assert [h["val_loss"] for h in st["history"]] == [5.0, 2.0, 3.0, 2.5, 2.0]
    final = [v.numpy() for v in trainer.ae.weights]
    expect = seen[1][1] if keep_best else seen[4][1]
    for a, b in zip(final, expect, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(seen[1][1][0], seen[4][1][0])   # the two differ


def test_without_validation_training_runs_all_epochs_and_keeps_the_last(
        snaps: tuple[Path, Path], tmp_path: Path) -> None:
    trainer, seen, record = _scripted_trainer(
        snaps, tmp_path, {"epochs": 3, "patience": 1, "keep_best": True}, None)
    assert trainer.fit(record) is True
    assert trainer.state["stopped_by"] == "epochs" and trainer.state["best_epoch"] == 0
    assert [h["val_loss"] for h in trainer.state["history"]] == [None] * 3
    for a, b in zip([v.numpy() for v in trainer.ae.weights], seen[-1][1], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("schedule", "extra", "vals", "expect"), [
    ("constant", {}, None, [1e-2] * 5),
    ("cosine", {"lr_min": 1e-4}, None,
     [1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + np.cos(np.pi * k / 4)) for k in range(5)]),
    # plateau: halve after 2 epochs without a 1e-4 relative improvement, never below lr_min
    ("plateau", {"plateau_patience": 2, "plateau_factor": 0.5, "lr_min": 2e-3},
     [5.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0],
     [1e-2] * 4 + [5e-3] * 3 + [2.5e-3] * 2 + [2e-3] * 2),
])
def test_learning_rate_schedules(snaps: tuple[Path, Path], tmp_path: Path, schedule: str,
                                 extra: dict, vals: list | None, expect: list) -> None:
    trainer, seen, record = _scripted_trainer(
        snaps, tmp_path, {"epochs": len(expect), "patience": 50, "learning_rate": 1e-2,
                          "lr_schedule": schedule, **extra}, vals)
    trainer.fit(record)
    lrs = [h["lr"] for h in trainer.state["history"]]
    np.testing.assert_allclose(lrs, expect, rtol=1e-12)
    # the optimizer ran each epoch with that rate
    np.testing.assert_allclose([lr for lr, _ in seen], expect, rtol=1e-6)


def test_a_diverged_epoch_is_rolled_back_and_rerun_at_half_the_learning_rate(
        snaps: tuple[Path, Path], tmp_path: Path) -> None:
    """An epoch whose training loss jumps above divergence_factor x the lowest so far is
    undone (weights and Adam state) and run again at half the rate; the rest of the stage
    keeps the halved rate."""
    trainer, seen, record = _scripted_trainer(
        snaps, tmp_path, {"epochs": 4, "learning_rate": 1e-2, "divergence_factor": 100.0},
        None)
    real, calls, before = trainer.train_epoch, [], []

    def blow_up_third_call(order, w, epoch):
        before.append([v.numpy() for v in trainer.ae.weights])
        out = real(order, w, epoch)
        calls.append(int(epoch))
        return (out[0] * 1e6, out[1]) if len(calls) == 3 else out

    trainer.train_epoch = blow_up_third_call
    assert trainer.fit(record) is True
    assert calls == [0, 1, 2, 2, 3]                    # epoch 3 ran twice
    st = trainer.state
    assert st["rollbacks"] == [3] and st["epoch"] == 4
    assert [h["epoch"] for h in st["history"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([h["lr"] for h in st["history"]], [1e-2, 1e-2, 5e-3, 5e-3])
    for a, b in zip(before[3], seen[1][1], strict=True):  # the rerun started where epoch 2 ended
        np.testing.assert_array_equal(a, b)
    # a rerun that diverges again goes back to the lowest-loss epoch: the epochs after it
    # had drifted (a loss that grew below the factor) and run again, at a quarter of the rate
    trainer, seen, record = _scripted_trainer(
        snaps, tmp_path / "drift", {"epochs": 4, "learning_rate": 1e-2,
                                    "divergence_factor": 100.0}, None)
    real, calls = trainer.train_epoch, []

    def drift_then_blow_up(order, w, epoch):
        out = real(order, w, epoch)
        calls.append(int(epoch))
        return out[0] * {2: 50.0, 3: 1e6, 4: 1e6}.get(len(calls), 1.0), out[1]

    trainer.train_epoch = drift_then_blow_up
    assert trainer.fit(record) is True
    assert calls == [0, 1, 2, 2, 1, 2, 3]       # epoch 3 twice, then back after epoch 1
    st = trainer.state
    assert st["rollbacks"] == [3, 3] and st["epoch"] == 4
    assert [h["epoch"] for h in st["history"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([h["lr"] for h in st["history"]],
                               [1e-2, 2.5e-3, 2.5e-3, 2.5e-3])
    # a loss that keeps diverging stops the training with an error
    trainer, _, _ = _scripted_trainer(snaps, tmp_path / "again", {"epochs": 3}, None)
    real2 = trainer.train_epoch

    def inf_after_epoch_1(order, w, epoch):
        total, errs = real2(order, w, epoch)
        return total * (1.0 if int(epoch) == 0 else np.inf), errs

    trainer.train_epoch = inf_after_epoch_1
    with pytest.raises(RuntimeError, match=r"training diverged 6 times \(epochs \[2, 2, 2, 2, 2"):
        trainer.fit()
