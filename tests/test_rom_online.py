"""``mrom rom`` / ``mrom report``: config-driven ROMs, the results file, the report."""

import os
import sys

import numpy as np
import pytest

import fom
from fom.config import load_config
from fom.errors import ConvergenceError, InputError
from fom.snapshots import read_snapshots, snapshots_from_config
from rom import AffineManifold, solve_rom
from rom.cli import main
from rom.metrics import projection_error, relative_error
from rom.online import rom_settings, roms_from_config
from rom.report import error_table, report
from rom.results import read_results
from rom.testing import quadratic_decoder_loader

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

[autoencoder]
latent_dims = [2, 4]

[rom]
{rom}
"""


def write_config(tmp_path, rom="", name="run.toml"):
    path = tmp_path / name
    path.write_text(CONFIG.format(out=(tmp_path / "out").as_posix(), rom=rom))
    return path


@pytest.fixture
def config(tmp_path):
    path = write_config(tmp_path)
    snapshots_from_config(path, progress=False)
    return path


def test_roms_from_config_runs_every_method(config, tmp_path):
    cfg = load_config(config)
    for p in (2, 4):
        (cfg.output_dir / "models" / f"p{p}").mkdir(parents=True)
    train = read_snapshots(cfg.output_dir / "train.h5")
    test = read_snapshots(cfg.output_dir / "test.h5")
    load = quadratic_decoder_loader(train.states)
    path = roms_from_config(config, progress=False, load_decoder=load)
    assert path == cfg.output_dir / "rom_results.h5"
    rs = read_results(path)
    assert sorted(rs.runs) == sorted(f"{m}-p{p}" for m in ("deep-lspg", "deep-galerkin",
                                                           "pod-lspg", "pod-galerkin")
                                     for p in (2, 4))  # latent_dims from [autoencoder]
    np.testing.assert_array_equal(rs.mu, test.mu)
    np.testing.assert_array_equal(rs.reference, test.states)
    # the recorded errors are those of a direct solve, on the POD basis of the trajectories
    # the autoencoders train on: the validation trajectory (the second of three) is left out
    problem = test.problem()
    pod2 = AffineManifold.from_snapshots(train.states[[0, 2]], 2)
    direct = solve_rom(problem, pod2, test.mu[1], "lspg")
    run = rs.runs["pod-lspg-p2"]
    np.testing.assert_allclose(run.states[1], direct.states, rtol=0, atol=1e-12)
    all3 = solve_rom(problem, AffineManifold.from_snapshots(train.states, 2), test.mu[1], "lspg")
    assert np.abs(all3.states - direct.states).max() > 1e-3
    assert run.relative_error[1] == pytest.approx(relative_error(test.states[1],
                                                                 direct.states), rel=1e-12)
    assert run.projection_error[1] == pytest.approx(projection_error(pod2, test.states[1]))
    assert run.info["pod_center"] == "initial" and 0 < run.info["pod_energy"] <= 1
    deep = rs.runs["deep-galerkin-p4"]
    assert deep.info["model_dir"].endswith("p4") and np.all(deep.steps == rs.t.size)
    assert np.all(np.isfinite(deep.relative_error)) and np.all(deep.wall_s > 0)
    assert rs.runs["pod-lspg-p4"].relative_error[0] < run.relative_error[0]

    # same inputs: nothing recomputed; changed [rom] settings: recomputed
    mtime = os.stat(path).st_mtime_ns
    assert roms_from_config(config, progress=False, load_decoder=load) == path
    assert os.stat(path).st_mtime_ns == mtime
    cfg2 = write_config(tmp_path, 'methods = ["pod-lspg"]\nlatent_dims = [3]')
    roms_from_config(cfg2, progress=False)
    assert sorted(read_results(path).runs) == ["pod-lspg-p3"]

    out = report(path, quiet=True)
    assert out == cfg.output_dir / "report"
    for name in ("report.md", "states.png", "errors_vs_p.png"):
        assert (out / name).stat().st_size > 0


def test_cli_rom_and_report(config, tmp_path, capsys):
    cfg = write_config(tmp_path, 'methods = ["pod-lspg", "pod-galerkin"]\nlatent_dims = [1, 3]')
    assert main(["rom", "-q", str(cfg)]) == 0
    results = tmp_path / "out" / "rom_results.h5"
    assert f"wrote {results}" in capsys.readouterr().out
    assert main(["report", str(results), "-o", str(tmp_path / "rep")]) == 0
    table = capsys.readouterr().out
    assert "| POD-LSPG | 3 | (mu1 = 4.3, mu2 = 0.021) |" in table
    assert table.count("| ok |") == 8
    assert (tmp_path / "rep" / "errors_vs_p.png").exists()
    assert "matplotlib.pyplot" not in sys.modules or \
        sys.modules["matplotlib"].get_backend().lower() == "agg"


def test_online_never_imports_tensorflow():
    import subprocess

    code = ("import sys, rom, rom.online, rom.report, rom.results, rom.metrics, rom.sweep, "
            "rom.sample_mesh, rom.catalog, rom.cli; rom.catalog.config_reference(); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_failures_are_recorded_or_raised(config, tmp_path, monkeypatch):
    import rom.online as online

    real = online.solve_rom

    def flaky(problem, manifold, mu, method, **kw):
        if mu[0] > 5:  # the second test parameter fails at step 3
            res = real(problem, manifold, mu, method, **{**kw, "t_final": 0.14})
            raise ConvergenceError("ROM did not converge at step 3 (t = 0.21)", step=3,
                                   time=0.21, residual=1.0, partial=res)
        return real(problem, manifold, mu, method, **kw)

    monkeypatch.setattr(online, "solve_rom", flaky)
    cfg = write_config(tmp_path, 'methods = ["pod-lspg"]\nlatent_dims = [2]')
    path = roms_from_config(cfg, progress=False)
    run = read_results(path).runs["pod-lspg-p2"]
    np.testing.assert_array_equal(run.steps, [11, 3])
    assert np.isnan(run.relative_error[1]) and np.isfinite(run.relative_error[0])
    assert "step 3" in run.failures[1]
    assert "failed at t = 0.21" in error_table(read_results(path))
    report(path, quiet=True)  # plots skip the missing points
    cfg = write_config(tmp_path, 'methods = ["pod-lspg"]\nlatent_dims = [2]\n'
                                 'on_failure = "raise"', "raise.toml")
    with pytest.raises(ConvergenceError, match="step 3"):
        roms_from_config(cfg, progress=False)


@pytest.mark.parametrize(("rom", "message"), [
    ('methods = ["lspg"]', r"\[rom\] methods: entry 'lspg' must be one of"),
    ("latent_dims = [0]", r"\[rom\] latent_dims: entry 0 must be >= 1"),
    ("max_iter = 0", r"\[rom\] max_iter: must be >= 1"),
    ('linear_solver = "svd"', r"\[rom\] linear_solver: must be one of qr, normal"),
    ("tolerance = 1", r"\[rom\]: unknown key 'tolerance'"),
    ("gtol = -1.0", r"\[rom\] gtol: must be >= 0"),
])
def test_rom_section_validation(tmp_path, rom, message):
    with pytest.raises(InputError, match=message):
        rom_settings(load_config(write_config(tmp_path, rom)))


def test_missing_inputs_are_input_errors(tmp_path, config):
    cfg = write_config(tmp_path, 'methods = ["deep-lspg"]')
    with pytest.raises(InputError, match=r"models/p2.*do not exist.*mrom train"):
        roms_from_config(cfg, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = write_config(empty, "")
    with pytest.raises(InputError, match=r"test.h5 does not exist.*mrom snapshots"):
        roms_from_config(cfg, progress=False)
    cfg = write_config(tmp_path, 'methods = ["pod-lspg"]\nlatent_dims = [40]', "big.toml")
    with pytest.raises(InputError, match="exceeds the rank"):
        roms_from_config(cfg, progress=False)


def test_defaults_follow_the_autoencoder_section(tmp_path):
    sec = rom_settings(load_config(write_config(tmp_path)))
    assert sec["latent_dims"] == [2, 4] and sec["pod_center"] == "initial"
    assert sec["methods"] == ["deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin"]
    path = tmp_path / "raw.toml"
    path.write_text(write_config(tmp_path).read_text().replace(
        "latent_dims = [2, 4]", 'target = "raw"'))
    sec = rom_settings(load_config(path))
    assert sec["latent_dims"] == [3] and sec["pod_center"] == "none"


def test_example_config_rom_section_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sec = rom_settings(load_config(root / "examples" / "burgers1d.toml"))
    assert sec["latent_dims"] and set(sec["methods"]) <= {
        "deep-lspg", "deep-galerkin", "pod-lspg", "pod-galerkin"}
    assert fom.Burgers1D().n_dofs == 256


def test_error_line_starts_on_its_own_line_after_a_progress_bar(config, monkeypatch, capsys):
    import rom.online as online

    def fail(problem, manifold, mu, method, **kw):
        raise ConvergenceError("ROM did not converge at step 3 (t = 0.21)", step=3, time=0.21,
                               residual=1.0, partial=None)

    monkeypatch.setattr(online, "solve_rom", fail)
    cfg = write_config(config.parent, 'methods = ["pod-lspg"]\nlatent_dims = [2]\n'
                                      'on_failure = "raise"', "raise.toml")
    capsys.readouterr()
    assert main(["rom", str(cfg)]) == 3  # with the progress bar
    err = capsys.readouterr().err
    assert "ROMs:" in err  # the bar was drawn
    assert "\nmrom: error: ROM did not converge at step 3 (t = 0.21)\n" in err


def test_table_and_figure_in_percent_with_a_sensible_axis_for_one_p(config, tmp_path):
    from rom.report import _fmt, errors_figure

    cfg = write_config(tmp_path, 'methods = ["pod-lspg", "pod-galerkin"]\nlatent_dims = [2]',
                       "one_p.toml")
    rs = read_results(roms_from_config(cfg, progress=False))
    err = rs.runs["pod-lspg-p2"].relative_error[0]
    assert f"| {100 * err:#.3g} % |" in error_table(rs)
    assert [_fmt(v) for v in (0.027, 0.141, 0.00709, 1.0, 1e-7, float("nan"))] == [
        "2.70 %", "14.1 %", "0.709 %", "100 %", "1.00e-05 %", "—"]
    fig = errors_figure(rs)
    ax = fig.axes[0]
    assert ax.get_xlim() == (1.0, 3.0) and list(ax.get_xticks()) == [2]
    assert ax.lines[0].get_ydata()[0] == pytest.approx(100 * err)


def _variant(folder, old, new, rom='methods = ["pod-lspg"]\nlatent_dims = [2]'):
    """A config in its own folder with ``old`` replaced by ``new``, and its snapshot files."""
    folder.mkdir()
    path = write_config(folder, rom)
    path.write_text(path.read_text().replace(old, new))
    snapshots_from_config(path, progress=False)
    return path


def stride_config(tmp_path):
    """The config with POD-LSPG at p = 2 and snapshot files that store every 3rd step."""
    path = write_config(tmp_path, 'methods = ["pod-lspg"]\nlatent_dims = [2]')
    text = path.read_text().replace("test = [[4.3, 0.021], [5.15, 0.0285]]\n",
                                    "test = [[4.3, 0.021], [5.15, 0.0285]]\nstore_every = 3\n")
    path.write_text(text)
    snapshots_from_config(path, progress=False)
    return path


def test_test_parameters_outside_the_domain_are_refused(tmp_path):
    """A test file whose parameters lie outside the problem's domain (made with
    check_bounds = false) is refused by mrom rom unless the config allows them."""
    wide = _variant(tmp_path / "wide", "test = [[4.3, 0.021], [5.15, 0.0285]]",
                    "test = [[4.3, 0.04]]\ncheck_bounds = false")
    strict = wide.parent / "strict.toml"
    strict.write_text(wide.read_text().replace("check_bounds = false\n", ""))
    with pytest.raises(InputError, match=r"test.h5: parameter mu2 = 0.04 is outside its range "
                                         r"\[0.015, 0.03\] \(set check_bounds = false in "
                                         r".*strict.toml \[snapshots\] to allow it\)"):
        roms_from_config(strict, progress=False)
    assert roms_from_config(wide, progress=False).exists()


def test_one_warning_line_outside_the_training_box(tmp_path, capsys):
    """Test parameters inside the domain but outside the box of the training parameters: one
    warning line; inside the box: none."""
    full = _variant(tmp_path / "full", "", "")
    half = _variant(tmp_path / "half", "train = [[4.25, 0.015], [5.5, 0.03], [4.8, 0.022]]",
                    "train = [[4.25, 0.015], [4.8, 0.022], [4.4, 0.02]]")
    capsys.readouterr()
    roms_from_config(half, progress=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"warning: the ROMs run at 1 of 2 parameters (first: mu1 = 5.15, mu2 = "
                     f"0.0285) lie outside the box of the training parameters [4.25, 4.8] x "
                     f"[0.015, 0.022] of {tmp_path / 'half' / 'out' / 'train.h5'}: they "
                     f"extrapolate there"]
    roms_from_config(full, progress=False)
    assert capsys.readouterr().err == ""


def test_rom_sweep_warns_once_outside_the_training_box(tmp_path):
    from rom.sweep import sweep_plan

    half = _variant(tmp_path / "half", "train = [[4.25, 0.015], [5.5, 0.03], [4.8, 0.022]]",
                    "train = [[4.25, 0.015], [4.8, 0.022], [4.4, 0.02]]")
    sweep = '[sweep]\nkind = "rom"\nparams = [[4.3, 0.021], [5.0, 0.02], [5.2, 0.025]]\n'
    half.write_text(half.read_text() + sweep)
    assert sweep_plan(half).warning == (
        f"warning: the ROMs run at 2 of 3 parameters (first: mu1 = 5, mu2 = 0.02) lie outside "
        f"the box of the training parameters [4.25, 4.8] x [0.015, 0.022] of "
        f"{tmp_path / 'half' / 'out' / 'train.h5'}: they extrapolate there")
    inside = half.read_text().replace("[5.0, 0.02], [5.2, 0.025]", "[4.5, 0.02]")
    half.write_text(inside)
    assert sweep_plan(half).warning == ""


def test_rom_errors_are_taken_at_the_stored_steps(tmp_path):
    cfg = stride_config(tmp_path)
    test = read_snapshots(tmp_path / "out" / "test.h5")
    train = read_snapshots(tmp_path / "out" / "train.h5")
    steps = [0, 3, 6, 9, 10]  # every 3rd and the last of 10 steps
    assert test.t.size == 5 and np.allclose(test.t, 0.07 * np.array(steps))
    rs = read_results(roms_from_config(cfg, progress=False))
    run = rs.runs["pod-lspg-p2"]
    pod = AffineManifold.from_snapshots(train.states[[0, 2]], 2)  # without the validation one
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

    stride_config(tmp_path)
    train = read_snapshots(tmp_path / "out" / "train.h5")
    with pytest.raises(InputError, match="needs every time step.*every 3-th"):
        trajectory_residual(train, Restriction.from_image_shape((16, 2), 1))
def test_pod_and_models_must_share_the_training_trajectories(config):
    """POD against a model trained on other trajectories of the training file is refused."""
    import json

    cfg = load_config(config)
    train = read_snapshots(cfg.output_dir / "train.h5")
    for p in (2, 4):
        d = cfg.output_dir / "models" / f"p{p}"
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({"snapshots": {"trained_on": [0, 1, 2]}}))
    with pytest.raises(InputError, match=r"run.toml \[training\]: the POD basis would be built "
                                         r"from 2 trajectories .* trained on 3 other ones"):
        roms_from_config(config, progress=False,
                         load_decoder=quadratic_decoder_loader(train.states))
