"""Restriction/prolongation, scaling, splits and config validation of the autoencoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoencoder.data import (
    Restriction,
    Scaling,
    epoch_order,
    prepare,
    sample_split,
    targets,
    validation_trajectories,
)
from autoencoder.settings import AUTOENCODER_SCHEMA, TRAINING_SCHEMA
from fom.config import load_config
from fom.errors import InputError
from fom.snapshots import paper_train_grid

ROOT = Path(__file__).resolve().parents[1]


def test_restriction_is_the_paper_reshape_and_inverts() -> None:
    r = Restriction.from_image_shape((16, 16, 1), 2)
    x = np.arange(256.0)
    img = r.restrict(x)
    assert img.shape == (16, 16, 1)
    np.testing.assert_array_equal(img[1, :, 0], np.arange(16, 32))  # row-major
    np.testing.assert_array_equal(r.prolong(img), x)
    r1 = Restriction.from_image_shape((16, 16, 1), 1)
    assert r1.image_shape == (256, 1)
    np.testing.assert_array_equal(r1.restrict(x)[:, 0], x)


def test_two_variable_state_goes_to_channels() -> None:
    r = Restriction.from_image_shape((3, 4, 2), 2)
    u, v = np.arange(12.0), 100 + np.arange(12.0)
    img = r.restrict(np.concatenate([u, v]))
    np.testing.assert_array_equal(img[..., 0].ravel(), u)
    np.testing.assert_array_equal(img[..., 1].ravel(), v)
    np.testing.assert_array_equal(r.prolong(img), np.concatenate([u, v]))
    X = np.random.default_rng(0).random((5, 3, 24))
    np.testing.assert_array_equal(r.prolong(r.restrict(X)), X)
    with pytest.raises(InputError, match="entries"):
        r.restrict(np.zeros(23))
    with pytest.raises(InputError, match="dims = 2"):
        Restriction.from_image_shape((256, 1), 2)


def test_scaling_targets_and_split() -> None:
    states = np.random.default_rng(1).random((3, 4, 6)) + 2
    d = targets(states, "deviation")
    np.testing.assert_array_equal(d[:, 0], 0)
    np.testing.assert_array_equal(targets(states, "raw"), states)
    r = Restriction.from_image_shape((6, 1), 1)
    imgs, sc = prepare(states, r, "deviation")
    assert imgs.dtype == np.float32 and imgs.shape == (12, 6, 1)
    assert imgs.min() == 0 and imgs.max() == pytest.approx(1)
    assert sc.lo.tolist() == [d.min()] and sc.hi.tolist() == [d.max()]
    img = r.restrict(d)
    np.testing.assert_allclose(sc.unscale_image(sc.scale_image(img)), img)
    assert Scaling.fit(np.ones(6), r).range[0] > 0
    np.testing.assert_array_equal(epoch_order(50, 0, 3), epoch_order(50, 0, 3))
    assert not np.array_equal(epoch_order(50, 0, 3), epoch_order(50, 0, 4))


@pytest.mark.parametrize(("section", "text", "match"), [
    ("autoencoder", "latent_dim = 3", r"\[autoencoder\]: unknown key 'latent_dim'"),
    ("autoencoder", "latent_dims = [0]", r"\[autoencoder\] latent_dims: entry 0"),
    ("autoencoder", "dims = 3", r"\[autoencoder\] dims: must be 1 or 2"),
    ("autoencoder", "target = 'x'", r"\[autoencoder\] target: must be one of"),
    ("autoencoder", "strides = [1, 2]", r"\[autoencoder\] strides: must have one entry per"),
    ("training", "batch_size = 0", r"\[training\] batch_size: must be >= 1"),
    ("training", "learning_rate = 'fast'", r"\[training\] learning_rate: must be a number"),
    ("training", "validation_fraction = 0.1", r"\[training\]: unknown key 'validation_fra"),
    ("training", "validation_every = -1", r"\[training\] validation_every: must be >= 0"),
    ("training", "validation_params = [4.3]", r"\[training\] validation_params: entry 0 "),
    ("training", "snapshot_stride = 0", r"\[training\] snapshot_stride: must be >= 1"),
])
def test_config_errors_name_file_section_and_key(tmp_path: Path, section: str, text: str,
                                                 match: str) -> None:
    from autoencoder.train import settings_from_config

    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[problem]\nname = 'burgers1d'\n[{section}]\n{text}\n")
    with pytest.raises(InputError, match="bad.toml " + match):
        settings_from_config(load_config(cfg))


@pytest.mark.parametrize("name", ["burgers1d.toml", "burgers1d_paper.toml",
                                  "burgers1d_conv1d.toml"])
def test_example_configs_validate(name: str) -> None:
    from autoencoder.train import settings_from_config

    ae, tr = settings_from_config(load_config(ROOT / "examples" / name))
    assert set(ae) == set(AUTOENCODER_SCHEMA) and set(tr) == set(TRAINING_SCHEMA)
    assert ae["filters"] == [8, 16, 32, 64]
    if name == "burgers1d_conv1d.toml":  # docs/problems.md: the 1D variant
        assert (ae["dims"], ae["kernel_size"], ae["strides"]) == (1, [25] * 4, [2, 4, 4, 4])
    else:  # the paper's architecture
        assert (ae["dims"], ae["kernel_size"], ae["strides"]) == (2, [5] * 4, [1, 2, 2, 2])
    if name == "burgers1d_paper.toml":
        assert (tr["batch_size"], tr["learning_rate"], tr["epochs"], tr["patience"]) == \
            (20, 1e-4, 1000, 100)


def test_validation_holds_out_whole_spread_out_trajectories() -> None:
    """Every fifth parameter of the paper's grid from the second on: 16 of 80, every mu1
    row and mu2 column of the grid represented, no corner of the parameter box."""
    grid = paper_train_grid()
    val = validation_trajectories(grid, 5, [], "c [training]")
    np.testing.assert_array_equal(val, np.arange(1, 80, 5))
    i, j = np.divmod(val, 8)                                  # mu1 row, mu2 column
    assert set(i) == set(range(10)) and set(j) == set(range(8))
    corners = {(a, b) for a in (grid[:, 0].min(), grid[:, 0].max())
               for b in (grid[:, 1].min(), grid[:, 1].max())}
    assert not corners & {tuple(m) for m in grid[val]}
    assert validation_trajectories(grid, 0, [], "c").size == 0
    # an explicit list (any order, in the file to round-off) overrides validation_every
    got = validation_trajectories(grid, 5, [grid[40].tolist(), (grid[3] * (1 + 1e-12)).tolist()],
                                  "c")
    np.testing.assert_array_equal(got, [3, 40])
    with pytest.raises(InputError, match=r"c \[training\] validation_params: \[4.3, 0.021\] "
                                         "is not a parameter of the training snapshot file"):
        validation_trajectories(grid, 5, [[4.3, 0.021]], "c [training]")
    with pytest.raises(InputError, match="holds out all 1 training trajectories"):
        validation_trajectories(grid[:1], 5, [grid[0].tolist()], "c")


def test_sample_split_keeps_validation_trajectories_whole() -> None:
    traj, step = np.divmod(np.arange(4 * 6), 6)               # 4 trajectories of 6 steps
    i_train, i_val = sample_split(traj, step, np.array([2]), 2)
    np.testing.assert_array_equal(i_val, [12, 14, 16])       # trajectory 2, the same steps
    np.testing.assert_array_equal(traj[i_train], np.repeat([0, 1, 3], 3))
    np.testing.assert_array_equal(step[i_train], np.tile([0, 2, 4], 3))
    i_train, i_val = sample_split(traj, step, np.zeros(0, dtype=int), 1)
    assert i_val.size == 0 and i_train.size == 24


def test_generalization_sweep_is_the_cell_centres_with_the_studys_training_data() -> None:
    """examples/burgers1d_generalization.toml: the 63 centres of the training grid's cells
    (neither training nor test parameters), and the POD trajectories of the study's models."""
    import fom
    from fom.snapshots import paper_test_params
    from rom.online import rom_settings
    from rom.sweep import SWEEP_SCHEMA, sweep_parameters

    gen = load_config(ROOT / "examples" / "burgers1d_generalization.toml")
    study = load_config(ROOT / "examples" / "burgers1d.toml")
    mus = sweep_parameters(gen.section("sweep", SWEEP_SCHEMA)["params"],
                           fom.get_problem("burgers1d"), "x")
    grid = paper_train_grid()
    centres = np.array([(a, b) for a in (grid[::8, 0][:-1] + grid[8::8, 0]) / 2
                        for b in (grid[:7, 1] + grid[1:8, 1]) / 2])
    np.testing.assert_allclose(mus, centres, rtol=1e-14)
    for other in (grid, paper_test_params()):
        assert np.min(np.abs(mus[:, None, :] - other[None]).max(axis=2)) > 1e-4
    assert gen.output_dir == study.output_dir
    keys = ("validation_every", "validation_params")
    assert [gen.section("training", TRAINING_SCHEMA)[k] for k in keys] == \
        [study.section("training", TRAINING_SCHEMA)[k] for k in keys]
    sec = rom_settings(gen)
    assert (sec["methods"], sec["latent_dims"]) == (["deep-lspg", "pod-lspg"], [3, 5])


def test_burgers2d_example_config_validates_and_fits_its_image() -> None:
    """examples/burgers2d.toml: the two fields' 58 x 58 interior as the image of the locally
    connected decoder (a 30 x 30 hidden grid covers it at stride 2; zero stays zero in the
    max-abs scaling), one p shared by [autoencoder], [rom] and the sweep of
    examples/burgers2d_sweep.toml, and a refit on all four training trajectories (no
    validation set, a fixed number of epochs)."""
    from autoencoder.model import local_grids
    from autoencoder.train import restriction_from_config, settings_from_config
    from rom.online import rom_settings

    cfg = load_config(ROOT / "examples" / "burgers2d.toml")
    ae, tr = settings_from_config(cfg)
    restriction = restriction_from_config(cfg, ae)          # raises if the encoder does not fit
    assert restriction.image_shape == (58, 58, 2) and restriction.n_dofs == 2 * 58 * 58
    assert (ae["decoder"], ae["scaling"]) == ("local", "maxabs")
    assert local_grids(restriction.image_shape, ae) == ((15, 15, 16), (30, 30, 8))
    assert (tr["validation_every"], tr["validation_params"], tr["keep_best"]) == (0, [], False)
    assert tr["max_wall_s"] == 0 and tr["patience"] > tr["epochs"]
    sweep = rom_settings(load_config(ROOT / "examples" / "burgers2d_sweep.toml"))
    assert rom_settings(cfg)["latent_dims"] == ae["latent_dims"] == sweep["latent_dims"]


def test_scaling_maxabs_keeps_zero() -> None:
    """``mode = "maxabs"``: each channel divided by its largest magnitude (lo = 0), so a zero
    target is a zero image entry and the images lie in [-1, 1]; the default maps to [0, 1]."""
    r = Restriction.from_image_shape((2, 2, 2), 2)
    d = np.array([[-3.0, 1.0, 0.0, 2.0, 0.5, -0.25, 0.0, 0.1],
                  [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    s = Scaling.fit(d, r, "maxabs")
    ch = r.channel
    assert np.allclose(s.lo, 0.0)
    assert np.allclose(s.hi, [np.abs(d[:, ch == c]).max() for c in range(2)])
    img = s.scale_image(r.restrict(d[0]))
    assert img.min() >= -1.0 and img.max() <= 1.0 and np.abs(img).max() == 1.0
    assert np.all(img.ravel()[r.pix][d[0] == 0.0] == 0.0)
    lo, rng = s.rows(r)  # the decoder's unscaling per state row gives the targets back
    assert np.allclose(lo + rng * img.ravel()[r.pix], d[0])
    mm = Scaling.fit(d, r)
    assert np.isclose(mm.scale_image(r.restrict(d[0])).min(), 0.0)
    with pytest.raises(InputError, match="scaling mode must be 'minmax' or 'maxabs', got 'max'"):
        Scaling.fit(d, r, "max")
