"""The whole pipeline from one config (``mrom run``) and the demo config (``mrom demo``)."""

import numpy as np
import pytest
from tiny_configs import tiny_config

from fom.config import load_config
from fom.snapshots import read_snapshots
from rom.cli import main
from rom.pipeline import demo_config_text
from rom.results import read_results


def test_run_whole_pipeline_then_skip_everything(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    out = tmp_path / "out"
    cfg.write_text(tiny_config(out.as_posix()))
    assert main(["run", "-q", str(cfg)]) == 0
    table = capsys.readouterr().out
    assert "Deep LSPG" in table and "POD-LSPG" in table
    rs = read_results(out / "rom_results.h5")
    assert sorted(rs.runs) == ["deep-lspg-p2", "pod-lspg-p2"]
    test = read_snapshots(out / "test.h5")
    for rec in rs.runs.values():
        assert rec.steps.tolist() == [test.t.size]
        # measured: Deep LSPG 0.45 (a 2-epoch tiny model), POD-LSPG 0.054
        bound = {"deep-lspg": 0.7, "pod-lspg": 0.1}[rec.method]
        assert np.all(np.isfinite(rec.relative_error)) and np.all(rec.relative_error < bound)
        assert np.allclose(rec.states[0, 0], test.states[0, 0], atol=1e-12)
    for name in ("report.md", "states.png", "errors_vs_p.png"):
        assert (out / "report" / name).stat().st_size > 0
    stamps = {p: p.stat().st_mtime_ns for p in
              [out / "train.h5", out / "test.h5", out / "rom_results.h5",
               out / "models" / "p2" / "manifest.json"]}
    assert main(["run", "-q", str(cfg)]) == 0  # everything is up to date: nothing is redone
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_demo_config_is_valid_and_reduced(tmp_path):
    path = tmp_path / "demo.toml"
    path.write_text(demo_config_text(tmp_path / "demo"))
    cfg = load_config(path)
    assert cfg.output_dir == tmp_path / "demo"
    train = np.array(cfg.sections["snapshots"]["train"])
    assert train.shape == (20, 2)
    assert train[:, 0].min() == pytest.approx(4.25) and train[:, 0].max() == pytest.approx(5.5)
    assert train[:, 1].min() == pytest.approx(0.015) and train[:, 1].max() == pytest.approx(0.03)
    from autoencoder.train import settings_from_config
    from rom.online import rom_settings

    arch, training = settings_from_config(cfg)
    # machine independent: a fixed number of epochs, no wall-time budget
    assert arch["filters"] == [8, 16, 32, 64] and training["max_wall_s"] == 0
    assert rom_settings(cfg)["methods"] == ["deep-lspg", "pod-lspg"]
