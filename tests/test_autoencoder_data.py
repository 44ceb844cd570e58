"""Restriction/prolongation, scaling, splits and config validation of the autoencoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoencoder.data import Restriction, Scaling, epoch_order, prepare, split_indices, targets
from autoencoder.settings import AUTOENCODER_SCHEMA, TRAINING_SCHEMA
from fom.config import load_config
from fom.errors import InputError

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
    tr, va = split_indices(100, 0.1, 0)
    assert len(va) == 10 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    np.testing.assert_array_equal(split_indices(100, 0.1, 0)[1], va)
    assert not np.array_equal(split_indices(100, 0.1, 1)[1], va)
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
    ("training", "validation_fraction = 1.5", r"\[training\] validation_fraction"),
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
