"""The whole pipeline from one config (``mrom run``) and the demo config (``mrom demo``)."""

from pathlib import Path

import numpy as np
import pytest
from tiny_configs import tiny_config

from fom.config import load_config
from fom.snapshots import read_snapshots
from rom.cli import main
from rom.pipeline import demo_config_text
from rom.results import read_results


def test_run_whole_pipeline_then_skip_everything(tmp_path, capfd):
    cfg = tmp_path / "tiny.toml"
    out = tmp_path / "out"
    cfg.write_text(tiny_config(out.as_posix()))
    assert main(["run", "-q", str(cfg)]) == 0
    table, err = capfd.readouterr()
    assert "Deep LSPG" in table and "POD-LSPG" in table
    assert "E0000" not in err and "use_unbounded_threadpool" not in err
    # the run ends by naming every output and a next command
    summary = table[table.index("outputs:"):].splitlines()
    named = [line.split()[-1] for line in summary[1:] if not line.startswith("next: ")]
    assert named == [str(cfg), str(out / "train.h5"), str(out / "test.h5"),
                     str(out / "models" / "p2"), str(out / "rom_results.h5"),
                     str(out / "report"), *(str(out / "report" / name) for name in
                                            ("report.md", "states.png", "errors_vs_p.png"))]
    assert summary[-1].startswith("next: ") and f"mrom run {cfg}" in summary[-1]
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


def test_demo_writes_its_config_and_names_it(tmp_path, monkeypatch):
    """The demo checks its generated config before writing it, writes it, runs it (here a
    stand-in for the pipeline) and names it in its outputs with the next commands."""
    import rom.pipeline as pipeline

    ran = []

    def fake_run(config, *, progress=True):
        ran.append(load_config(config))
        out = ran[0].output_dir
        return pipeline.PipelineOutputs(Path(config), [out / "train.h5"], [out / "models/p3"],
                                        out / "rom_results.h5", out / "report")

    monkeypatch.setattr(pipeline, "run", fake_run)
    outputs = pipeline.demo(tmp_path / "demo", progress=False)
    cfg = tmp_path / "demo" / "demo.toml"
    assert cfg.read_text() == demo_config_text(tmp_path / "demo")
    assert ran[0].path == cfg and outputs.config == cfg
    text = outputs.summary()
    assert f"  config       {cfg}" in text
    assert f"next: edit {cfg}" in text and "mrom run examples/burgers1d.toml" in text


def test_tensorflow_start_up_lines_are_filtered_at_import(tmp_path, monkeypatch, capfd):
    """The CLI's import hook drops TensorFlow's start-up lines (written by C++ code to file
    descriptor 2 during the import) and passes every other line on; shown here on a stand-in
    module that writes such lines when imported."""
    import os
    import sys

    from rom.cli import TF_IMPORT_NOISE, QuietImport

    (tmp_path / "noisy_module.py").write_text(
        "import os\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\\n')\n"
        "os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. You may see\\n')\n"
        "os.write(2, b'E0000 something that matters\\n')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = QuietImport("noisy_module", TF_IMPORT_NOISE)
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    capfd.readouterr()
    import noisy_module  # noqa: F401

    assert capfd.readouterr().err == "E0000 something that matters\n"
    assert hook not in sys.meta_path
    os.write(2, b"after\n")  # file descriptor 2 is back
    assert capfd.readouterr().err == "after\n"
