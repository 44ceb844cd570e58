"""Deep LSPG / Deep Galerkin on a real (tiny) trained autoencoder: the numba decoder kernels
through the whole online path, without TensorFlow."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fom.config import load_config
from fom.snapshots import read_snapshots, snapshots_from_config
from rom import DecoderManifold, ROMOptions, solve_rom
from rom.metrics import projection_error, relative_error
from rom.online import roms_from_config
from rom.projection import lspg_residual_jacobian
from rom.results import read_results

CONFIG = """\
output_dir = "{out}"

[problem]
name = "burgers1d"
n_cells = 64
t_final = 0.7

[snapshots]
train = [[4.25, 0.015], [5.5, 0.03], [4.8, 0.022], [5.1, 0.018]]
test = [[4.6, 0.021]]

[autoencoder]
latent_dims = [2]
filters = [4, 8]
strides = [2, 2]
kernel_size = 3

[training]
batch_size = 8
learning_rate = 3e-3
epochs = 4
seed = 0

[rom]
methods = ["deep-lspg", "deep-galerkin", "pod-lspg"]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from autoencoder.train import train_from_config

    d = tmp_path_factory.mktemp("deep")
    cfg = d / "cfg.toml"
    cfg.write_text(CONFIG.format(out=(d / "out").as_posix()))
    snapshots_from_config(cfg, progress=False)
    train_from_config(cfg, progress=False)
    run = load_config(cfg)
    return cfg, run.output_dir / "models" / "p2", read_snapshots(run.output_dir / "test.h5")


def test_deep_roms_on_trained_decoder(trained):
    cfg, model, test = trained
    man = DecoderManifold.load(model)
    assert man.p == 2 and man.target == "deviation"
    problem = test.problem()
    for method in ("lspg", "galerkin"):
        rom = solve_rom(problem, man, test.mu[0], method)
        np.testing.assert_allclose(rom.states[0], test.states[0, 0], rtol=0, atol=1e-12)
        assert np.all(np.isfinite(rom.states)) and rom.n_steps == 10
        assert rom.decoder_calls == 1 + rom.iterations.sum() + rom.backtracks.sum()
        # a ROM cannot beat the manifold's best approximation by much, and LSPG and Galerkin
        # on this short run stay close to it (measured: 1.006x the best fit's 0.209)
        best = projection_error(DecoderManifold(man.trained, projection="lsq"), test.states[0])
        assert best * 0.5 < relative_error(test.states[0], rom.states) < 1.25 * best


def test_gauss_newton_jacobian_of_trained_decoder(trained):
    _, model, test = trained
    man = DecoderManifold.load(model)
    problem = test.problem()
    mu = test.mu[0]
    x_ref, z0 = man.initial_condition(test.states[0, 0])
    z = z0 + np.array([0.05, -0.03])
    args = (x_ref, [test.states[0, 2]], 0.21, 0.07)
    r, a = lspg_residual_jacobian(problem, man, mu, z, *args)
    h = 1e-6
    fd = np.column_stack([
        (lspg_residual_jacobian(problem, man, mu, z + h * e, *args)[0]
         - lspg_residual_jacobian(problem, man, mu, z - h * e, *args)[0]) / (2 * h)
        for e in np.eye(2)])
    np.testing.assert_allclose(a, fd, rtol=0, atol=1e-5 * np.abs(a).max())


def test_roms_from_config_with_trained_models_never_imports_tensorflow(trained):
    cfg, _, _ = trained
    code = ("import sys; from rom.online import roms_from_config; "
            f"p = roms_from_config({str(cfg)!r}, progress=False); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
            "sorted(m for m in sys.modules if 'tensorflow' in m or 'keras' in m)[:5]; "
            "print(p)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True)
    rs = read_results(out.stdout.strip())
    assert sorted(rs.runs) == ["deep-galerkin-p2", "deep-lspg-p2", "pod-lspg-p2"]
    for run in rs.runs.values():
        assert run.steps[0] == 11 and np.isfinite(run.relative_error[0])
    assert rs.runs["deep-lspg-p2"].info["model_dir"].endswith("p2")
    # the results are those of a direct solve
    direct = solve_rom(read_snapshots(load_config(cfg).output_dir / "test.h5").problem(),
                       DecoderManifold.load(trained[1]), rs.mu[0], "lspg",
                       options=ROMOptions())
    np.testing.assert_allclose(rs.runs["deep-lspg-p2"].states[0], direct.states, atol=1e-12)
    # unchanged config, snapshots and models: the file is up to date and kept
    path = out.stdout.strip()
    stamp = read_results(path).attrs["created"], os.stat(path).st_mtime_ns
    assert str(roms_from_config(cfg, progress=False)) == path
    assert (read_results(path).attrs["created"], os.stat(path).st_mtime_ns) \
        == stamp
