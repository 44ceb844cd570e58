"""ROMs against snapshot files that store every k-th step only (``store_every``)."""

import numpy as np
import pytest

from fom.errors import InputError
from fom.snapshots import read_snapshots, snapshots_from_config
from rom import AffineManifold, solve_rom
from rom.metrics import relative_error
from rom.online import roms_from_config
from rom.results import read_results

CONFIG = """\
output_dir = "{out}"

[problem]
name = "burgers1d"
n_cells = 32
dt = 0.07
t_final = 0.7

[snapshots]
train = [[4.25, 0.015], [5.5, 0.03], [4.8, 0.022]]
test = [[4.3, 0.021], [5.15, 0.0285]]
store_every = 3

[rom]
methods = ["pod-lspg"]
latent_dims = [2]
"""


def test_rom_errors_are_taken_at_the_stored_steps(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(out=(tmp_path / "out").as_posix()))
    snapshots_from_config(cfg, progress=False)
    test = read_snapshots(tmp_path / "out" / "test.h5")
    train = read_snapshots(tmp_path / "out" / "train.h5")
    steps = [0, 3, 6, 9, 10]
    assert test.t.size == 5 and np.allclose(test.t, 0.07 * np.array(steps))
    rs = read_results(roms_from_config(cfg, progress=False))
    run = rs.runs["pod-lspg-p2"]
    pod = AffineManifold.from_snapshots(train.states, 2)
    for i in range(2):
        direct = solve_rom(test.problem(), pod, test.mu[i], "lspg")  # every step
        assert direct.t.size == 11
        np.testing.assert_allclose(run.states[i], direct.states[steps], rtol=0, atol=1e-12)
        assert run.relative_error[i] == pytest.approx(
            relative_error(test.states[i], direct.states[steps]), rel=1e-10)
    np.testing.assert_array_equal(rs.t, test.t)


def test_residual_training_term_refuses_a_stride(tmp_path):
    from autoencoder.data import Restriction
    from autoencoder.residual import trajectory_residual

    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(out=(tmp_path / "out").as_posix()))
    snapshots_from_config(cfg, progress=False)
    train = read_snapshots(tmp_path / "out" / "train.h5")
    with pytest.raises(InputError, match="needs every time step.*every 3-th"):
        trajectory_residual(train, Restriction.from_image_shape((16, 2), 1))
