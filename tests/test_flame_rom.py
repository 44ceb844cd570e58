"""The flame's ROM path on a tiny grid (8 x 4 cells, 10 steps, tiny networks): the 4-channel
restriction and per-channel scaling of fields four orders of magnitude apart, the numba kernels
of a 4-channel decoder against Keras, ``x_ref + g(h(0)) = x0`` through the kernels and through
Keras independently, ``mrom run`` end to end on a flame config, and the acceptance checks and
tables of ``benchmarks/flame_study.py``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import fom
from autoencoder.data import Restriction, Scaling, prepare
from fom.snapshots import generate_snapshots, read_snapshots

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

NX, NY = 8, 4
DT, T_FINAL = 1e-3, 1e-2         # 10 backward-Euler steps
MUS = [[2.3375e12, 5.6255e3], [6.5e12, 9.0e3]]
TEST_MU = [5.5e12, 6.0e3]


def _flame() -> fom.Flame2D:
    return fom.Flame2D(nx=NX, ny=NY, dt=DT, t_final=T_FINAL)


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("flame")
    return read_snapshots(generate_snapshots(_flame(), MUS, d / "train.h5", progress=False))


def test_four_channel_restriction_and_scaling_round_trip(snap) -> None:
    """The deviations of T (hundreds of kelvins) and of the mass fractions (1e-2 and below):
    each channel of the images spans [0, 1] on its own, and unscaling and prolonging gives
    every field back to float32 round-off of its own size (not of T's)."""
    r = Restriction.for_problem(snap.problem(), 2, None, "deviation")
    assert r.image_shape == (NY, NX, 4)
    dev = snap.states - snap.states[:, :1]
    n = NX * NY
    sizes = [np.abs(dev[..., c * n:(c + 1) * n]).max() for c in range(4)]
    assert sizes[0] > 100 and max(sizes[1:]) < 0.3 and sizes[0] / min(sizes[1:]) > 1e4
    images, sc = prepare(snap.states, r, "deviation")
    assert images.shape == (2 * snap.t.size, NY, NX, 4) and sc.lo.shape == (4,)
    for c in range(4):
        assert images[..., c].min() == pytest.approx(0.0, abs=1e-7)
        assert images[..., c].max() == pytest.approx(1.0, rel=1e-6)
        np.testing.assert_allclose(sc.hi[c] - sc.lo[c], np.ptp(dev[..., c * n:(c + 1) * n]),
                                   rtol=1e-12)
    # field c of a state is channel c of the image, cell (i, j) at pixel [j, i]
    np.testing.assert_array_equal(r.restrict(dev[1, -1])[..., 2],
                                  dev[1, -1, 2 * n:3 * n].reshape(NY, NX))
    back = r.prolong(sc.unscale_image(images.astype(np.float64))).reshape(dev.shape)
    for c in range(4):
        err = np.abs(back - dev)[..., c * n:(c + 1) * n].max()
        assert err <= 1e-6 * sizes[c]


def test_four_channel_decoder_kernels_equal_keras() -> None:
    """A 4-channel flame decoder (float64 Keras, per-channel scaling over four orders of
    magnitude): the numba ``g`` and ``J`` in state units equal TensorFlow's to 1e-9, and the
    encoder kernels equal Keras's encoder."""
    import tensorflow as tf
    from test_autoencoder_2d import _float64_manifold

    sc = Scaling([-10.0, -0.03, -0.2, 0.0], [1500.0, 0.0, 0.0, 0.25])
    p = 3
    man, enc, dec = _float64_manifold(p, (NY, NX), 4, problem=_flame(), scaling=sc)
    r = man.restriction
    assert r.image_shape == (NY, NX, 4) and man.n_dofs == 4 * NX * NY
    z = np.random.default_rng(4).normal(size=p)
    zt = tf.constant(z[None])
    with tf.GradientTape() as tape:
        tape.watch(zt)
        y = dec(zt)[0]
    jac = tape.jacobian(y, zt).numpy()[..., 0, :]
    g_ref = r.prolong(sc.unscale_image(y.numpy()))
    J_ref = (jac * sc.range[:, None]).reshape(-1, p)[r.pix]
    g, J = man.decode_with_jacobian(z)
    n = NX * NY
    for c in range(4):   # each field to 1e-9 of its own size
        rows = slice(c * n, (c + 1) * n)
        assert np.max(np.abs(g[rows] - g_ref[rows])) <= 1e-9 * np.max(np.abs(g_ref[rows]))
        assert np.max(np.abs(J[rows] - J_ref[rows])) <= 1e-9 * np.max(np.abs(J_ref[rows]))
    x = np.random.default_rng(5).normal(size=(3, 4 * n)) * np.repeat(sc.range, n) * 0.3
    np.testing.assert_allclose(man.encode_many(x), enc(sc.scale_image(r.restrict(x))).numpy(),
                               rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------- mrom run end to end

TINY_FLAME = """\
output_dir = "{out}"

[problem]
name = "flame2d"
nx = {nx}
ny = {ny}
dt = {dt}
t_final = {t_final}

[snapshots]
train = {train}
test = [{test}]

[autoencoder]
latent_dims = [2]
filters = [4, 8]
kernel_size = 3
strides = [2, 2]

[training]
batch_size = 8
learning_rate = 2e-3
epochs = 2
validation_every = 0
initial_state_weight = 10.0

[rom]
methods = ["deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin"]
"""


def _tiny_config(tmp: Path) -> Path:
    text = TINY_FLAME.format(out=tmp / "out", nx=NX, ny=NY, dt=DT, t_final=T_FINAL,
                             train=json.dumps(MUS), test=json.dumps(TEST_MU))
    path = tmp / "flame.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rom.cli import main

    tmp = tmp_path_factory.mktemp("flame_run")
    cfg = _tiny_config(tmp)
    assert main(["run", str(cfg)]) == 0
    return cfg


def test_mrom_run_end_to_end_on_a_tiny_flame(tiny_run: Path) -> None:
    """``mrom run`` on a flame config trains a 4-channel model and runs the four ROMs: each
    starts exactly at x0 and has a finite error per field; the report is written."""
    from rom.results import read_results

    out = tiny_run.parent / "out"
    man = json.loads((out / "models" / "p2" / "manifest.json").read_text())
    assert man["image_shape"] == [NY, NX, 4] and len(man["scaling"]["lo"]) == 4
    rs = read_results(out / "rom_results.h5")
    assert rs.fields == ("T", "Y_H2", "Y_O2", "Y_H2O")
    assert sorted(r.method for r in rs.runs.values()) == sorted(
        ["deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin"])
    for rec in rs.runs.values():
        assert rec.field_error.shape == (1, 4)
        if rec.projection == "lspg":   # a Galerkin ROM of this untrained model may stop
            assert np.all(np.isfinite(rec.field_error))
            assert rec.steps[0] == rs.t.size and not rec.failures[0]
        np.testing.assert_allclose(rec.states[0, 0], rs.reference[0, 0], rtol=0,
                                   atol=1e-9 * np.abs(rs.reference[0, 0]).max())
    assert any((out / "report").glob("*.png"))


def test_reference_state_through_kernels_and_keras(tiny_run: Path) -> None:
    """``x_ref + g(h(0)) = x0`` (section 5.3): ``x_ref`` and ``z0 = h(0)`` from the numba
    kernels; ``h(0)`` and ``g`` recomputed with the saved Keras encoder and decoder (float32)
    give ``x0`` back to float32 round-off of each field."""
    import keras

    from rom.manifolds import DecoderManifold

    model = tiny_run.parent / "out" / "models" / "p2"
    dm = DecoderManifold.load(model)
    x0 = read_snapshots(tiny_run.parent / "out" / "test.h5").states[0, 0]
    x_ref, z0 = dm.initial_condition(x0)
    np.testing.assert_allclose(x_ref + dm.decode(z0), x0, rtol=0, atol=1e-12 * np.abs(x0).max())
    ae = keras.saving.load_model(model / "autoencoder.keras", safe_mode=True)
    r, sc = dm.trained.restriction, dm.trained.scaling
    zero = sc.scale_image(r.restrict(np.zeros_like(x0)))[None].astype(np.float32)
    z_keras = ae.get_layer("encoder")(zero).numpy()[0].astype(np.float64)
    np.testing.assert_allclose(z_keras, z0, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(z0).max()))
    img = ae.get_layer("decoder")(z_keras[None].astype(np.float32)).numpy()[0]
    x0_keras = x_ref + r.prolong(sc.unscale_image(img.astype(np.float64)))
    n = NX * NY
    for c in range(4):
        rows = slice(c * n, (c + 1) * n)
        assert np.abs(x0_keras[rows] - x0[rows]).max() <= 1e-5 * sc.range[c]


def test_flame_study_on_the_tiny_run(tiny_run: Path, tmp_path: Path) -> None:
    """The study's pieces on the tiny run's model: rows with the per-field errors of every
    method and projection, the FOM's wall time, figures, and checks that fail without p = 3."""
    import flame_study

    from fom.config import load_config

    cfg = load_config(tiny_run)
    payload = flame_study.run_study(cfg, [2], 2, tmp_path / "study", progress=False)
    rows = payload["rows"]
    methods = sorted({r["method"] for r in rows})
    assert methods == sorted(["deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin",
                              "projection-deep", "projection-pod", "fom"])
    for r in rows:
        assert r["mu"] == TEST_MU
        if r["method"] != "fom" and not r["method"].startswith("projection"):
            assert r["wall_s"] > 0
        if r["converged"] is not False:   # a Galerkin ROM of this untrained model may stop
            assert all(math.isfinite(r[f"error_{f}"]) for f in payload["fields"])
    assert all(r["converged"] for r in rows if r["method"].endswith("lspg"))
    with h5py.File(tmp_path / "study" / "lspg_states.h5") as f:
        assert "reference" in f
    assert (tmp_path / "study" / "fields_final_mu0.png").stat().st_size > 0
    assert (tmp_path / "study" / "errors_vs_p.png").stat().st_size > 0
    assert [c["pass"] for c in payload["checks"]] == [False, False]   # no p = 3 run
    assert "not run" in payload["checks"][0]["check"]


def test_flame_study_acceptance_checks() -> None:
    """PASS needs Deep LSPG <= 1 % at p = 3 and 10x below POD-LSPG; a failed run fails."""
    import flame_study

    def rows(deep: float, pod: float, ok: bool = True) -> list[dict]:
        return [{"method": "deep-lspg", "p": 3, "mu": [1, 2], "error": deep, "converged": ok},
                {"method": "pod-lspg", "p": 3, "mu": [1, 2], "error": pod, "converged": True}]

    assert [ok for _, ok in flame_study.acceptance_checks(rows(0.009, 0.1), [[1, 2]])] \
        == [True, True]
    assert [ok for _, ok in flame_study.acceptance_checks(rows(0.011, 0.2), [[1, 2]])] \
        == [False, True]
    assert [ok for _, ok in flame_study.acceptance_checks(rows(0.005, 0.04), [[1, 2]])] \
        == [True, False]
    assert [ok for _, ok in flame_study.acceptance_checks(rows(0.005, 0.1, False),
                                                         [[1, 2]])] == [False, False]
