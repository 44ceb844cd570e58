"""Per-field error measures: ``rom.metrics.field_errors``, their datasets in results files
(``mrom rom`` and ``mrom sweep``), the report's table, the field images, and the 2D Burgers
study's helpers (``benchmarks/burgers2d_study.py``) on a tiny grid with an analytic decoder."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from autoencoder.settings import TRAINING_SCHEMA
from fom.config import load_config
from fom.errors import InputError
from fom.snapshots import problem_from_config, read_snapshots, snapshot_paths, snapshots_from_config
from rom.metrics import field_errors, relative_error, relative_error_in_time
from rom.online import rom_settings, roms_from_config
from rom.plots import field_figure
from rom.report import field_error_table, report
from rom.results import read_results, write_results
from rom.sweep import SWEEP_SCHEMA, sweep, sweep_parameters, sweep_plan
from rom.testing import quadratic_decoder_loader

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
output_dir = "{out}"

[problem]
name = "burgers2d"
n = 8
t_final = 0.016

[snapshots]
train = [[0.9], [0.95], [1.05], [1.1]]
test = [[1.0]]

[autoencoder]
latent_dims = [2, 3]

[rom]
{rom}
"""


def two_fields(rng, n_t=7, m=5):
    """Synthetic two-field states (n_t, 2 m) and a perturbation of them."""
    ref = rng.standard_normal((n_t, 2 * m))
    rom = ref + 0.01 * rng.standard_normal(ref.shape) * np.arange(1, 3).repeat(m)
    return ref, rom


# ----------------------------------------------------------------------------- the measure


def test_field_errors_are_the_relative_errors_of_each_block():
    rng = np.random.default_rng(0)
    ref, rom = two_fields(rng)
    traj, worst = field_errors(ref, rom, 2)
    for c, cols in enumerate((slice(0, 5), slice(5, 10))):
        assert traj[c] == pytest.approx(relative_error(ref[:, cols], rom[:, cols]), rel=1e-13)
        assert worst[c] == pytest.approx(
            relative_error_in_time(ref[:, cols], rom[:, cols]).max(), rel=1e-13)
    assert traj[1] > 1.5 * traj[0]  # the second field was perturbed twice as much
    # the whole-state error is the reference-weighted mean square of the fields' errors
    w = np.array([np.sum(ref[:, :5] ** 2), np.sum(ref[:, 5:] ** 2)])
    assert relative_error(ref, rom) == pytest.approx(np.sqrt(np.sum(w * traj**2) / w.sum()),
                                                     rel=1e-13)
    # one field: the paper's measure and the maximum of the per-step error
    one = field_errors(ref, rom, 1)
    assert one[0][0] == pytest.approx(relative_error(ref, rom), rel=1e-13)
    assert one[1][0] == pytest.approx(relative_error_in_time(ref, rom).max(), rel=1e-13)


def test_steps_with_a_zero_reference_field_are_left_out_of_the_maximum():
    rng = np.random.default_rng(1)
    ref, rom = two_fields(rng)
    ref[0, 5:] = 0.0      # field 1 is zero at step 0, where the ROM is off by 1
    rom[0, 5:] = 1.0
    _, worst = field_errors(ref, rom, 2)
    assert worst[1] == pytest.approx(relative_error_in_time(ref[1:, 5:], rom[1:, 5:]).max(),
                                     rel=1e-13)
    ref[:, 5:] = 0.0      # zero at every step: absolute errors, as relative_error does
    traj, worst = field_errors(ref, rom, 2)
    assert traj[1] == pytest.approx(np.linalg.norm(rom[:, 5:]), rel=1e-13)
    assert worst[1] == pytest.approx(np.linalg.norm(rom[:, 5:], axis=1).max(), rel=1e-13)


def test_field_errors_reject_bad_inputs_and_flag_non_finite_states():
    rng = np.random.default_rng(2)
    ref, rom = two_fields(rng)
    with pytest.raises(InputError, match=r"n_fields = 3 does not divide the state size N = 10"):
        field_errors(ref, rom, 3)
    with pytest.raises(InputError, match=r"expected states of shape \(n_t, N\)"):
        field_errors(ref[0], rom[0], 2)
    rom[3, 7] = np.nan
    traj, worst = field_errors(ref, rom, 2)
    assert np.isfinite(traj[0]) and np.isinf(traj[1]) and np.isinf(worst[1])


# ----------------------------------------------------------------------------- mrom rom, sweep


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2D Burgers config at n = 8 (N = 72, 12 steps) with its snapshot files and stand-in
    model folders for p = 2, 3."""
    d = tmp_path_factory.mktemp("b2d")
    path = d / "run.toml"
    path.write_text(CONFIG.format(out=(d / "out").as_posix(), rom="latent_dims = [2]"))
    snapshots_from_config(path, progress=False)
    for p in (2, 3):
        (d / "out" / "models" / f"p{p}").mkdir(parents=True)
    train = read_snapshots(d / "out" / "train.h5")
    return path, quadratic_decoder_loader(train.states)


def test_mrom_rom_stores_the_field_errors_of_every_run(tiny, tmp_path, capsys):
    path, load = tiny
    rs = read_results(roms_from_config(path, progress=False, load_decoder=load,
                                       results_path=tmp_path / "r.h5"))
    assert rs.fields == ("u", "v") and len(rs.runs) == 4
    for rec in rs.runs.values():
        traj, worst = field_errors(rs.reference[0], rec.states[0], 2)
        np.testing.assert_array_equal(rec.field_error[0], traj)
        np.testing.assert_array_equal(rec.max_step_field_error[0], worst)
        assert np.all(worst >= traj) and np.all(traj > 0)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert list(f["runs/pod-lspg-p2/field_error"].attrs["fields"]) == ["u", "v"]
        assert f["runs/pod-lspg-p2/max_step_field_error"].shape == (1, 2)
    # the report: a per-field table with these numbers, field images for the 2D grid
    table = field_error_table(rs)
    rec = rs.runs["deep-lspg-p2"]
    assert "| method | p | mu | u | v | max/step u | max/step v |" in table
    assert f"{100 * rec.field_error[0, 1]:#.3g}".removesuffix(".") + " %" in table
    out = report(tmp_path / "r.h5", quiet=True)
    assert "max/step v" in (out / "report.md").read_text()
    assert (out / "states.png").stat().st_size > 0


def test_sweep_without_states_has_the_field_errors_of_mrom_rom(tiny, tmp_path, monkeypatch):
    path, load = tiny
    text = path.read_text().replace(
        "[rom]\nlatent_dims = [2]",
        '[rom]\nmethods = ["deep-lspg", "pod-lspg"]\nlatent_dims = [2]\nstore_states = false'
        '\n\n[sweep]\nkind = "rom"\noutput = "s.h5"\nparams = [[0.95], [1.0]]\n')
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(text)
    out = sweep(cfg, progress=False, comm=None, load_decoder=load)
    rs = read_results(out)
    assert rs.reference is None and rs.fields == ("u", "v")
    online = read_results(roms_from_config(path, progress=False, load_decoder=load,
                                           results_path=tmp_path / "r.h5"))
    for name in ("deep-lspg-p2", "pod-lspg-p2"):
        rec = rs.runs[name]
        assert rec.states is None and rec.field_error.shape == (2, 2)
        np.testing.assert_array_equal(rec.field_error[1], online.runs[name].field_error[0])
        np.testing.assert_array_equal(rec.max_step_field_error[1],
                                      online.runs[name].max_step_field_error[0])
    log = json.loads(out.with_suffix(".log.json").read_text())
    assert set(log["trajectories"][0]["roms"]["pod-lspg-p2"]["field_error"]) == {"u", "v"}


# ----------------------------------------------------------------------------- the file


@pytest.fixture(scope="module")
def written(tiny, tmp_path_factory):
    path, load = tiny
    d = tmp_path_factory.mktemp("file")
    return roms_from_config(path, progress=False, load_decoder=load,
                            results_path=d / "r.h5")


def _edit(src, dst, fn):
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        fn(f["runs/pod-lspg-p2"])
    return dst


def test_files_without_field_errors_are_still_read(written, tmp_path):
    def drop(g):
        del g["field_error"], g["max_step_field_error"]

    rs = read_results(_edit(written, tmp_path / "old.h5", drop))
    assert rs.runs["pod-lspg-p2"].field_error is None
    assert rs.runs["pod-galerkin-p2"].field_error is not None
    # written back, the run without them stays without them
    again = read_results(write_results(tmp_path / "again.h5", rs))
    assert again.runs["pod-lspg-p2"].max_step_field_error is None


@pytest.mark.parametrize(("change", "message"), [
    (lambda g: g.__delitem__("max_step_field_error"),
     r"/runs/pod-lspg-p2 has field_error but not max_step_field_error"),
    (lambda g: g["field_error"].attrs.__delitem__("fields"),
     r"/runs/pod-lspg-p2/field_error lacks attribute 'fields'"),
    (lambda g: g["field_error"].attrs.__setitem__("fields", ["u", "w"]),
     r"field_error and max_step_field_error name different fields \['u', 'w'\]"),
    (lambda g: (g.__delitem__("field_error"), g.create_dataset("field_error", data=np.ones(
        (1, 3))), g["field_error"].attrs.__setitem__("fields", ["u", "v"])),
     r"/runs/pod-lspg-p2/field_error has shape \(1, 3\), expected \(1, 2\)"),
    (lambda g: g["field_error"].__setitem__((0, 1), np.nan),
     r"/runs/pod-lspg-p2/field_error of trajectory 0 is \[.*, nan\] but its relative_error "
     r"is .* \(both finite or both NaN\)"),
    (lambda g: g["max_step_field_error"].__setitem__((0, 0), -1.0),
     r"/runs/pod-lspg-p2/max_step_field_error contains negative or Inf values"),
])
def test_bad_field_errors_are_named(written, tmp_path, change, message):
    bad = _edit(written, tmp_path / "bad.h5", change)
    with pytest.raises(InputError, match=message) as info:
        read_results(bad)
    assert str(bad) in str(info.value)


def test_single_field_problems_have_no_field_table(written):
    rs = read_results(written)
    for rec in rs.runs.values():
        rec.fields = ("w",)
        rec.field_error = rec.field_error[:, :1]
    assert field_error_table(rs) == ""


# ----------------------------------------------------------------------------- field images


def test_field_images_show_each_field_on_the_grid():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ny, nx = 3, 4
    x, y = np.linspace(0.1, 0.9, nx), np.linspace(0.2, 0.8, ny)
    states = np.arange(2 * 2 * ny * nx, dtype=float).reshape(2, 2 * ny * nx)
    rom = states + 100.0
    rom[1] = np.nan  # a ROM that stopped early: a blank panel
    fig = field_figure([("FOM", states), ("ROM", rom)], [0.0, 1.0], fields=("a", "b"),
                       grid_shape=(ny, nx), grid={"x": x, "y": y}, show=["b"])
    axes = fig.axes
    mesh = axes[1].collections[0]  # FOM, field b, t = 1
    np.testing.assert_array_equal(mesh.get_array().reshape(ny, nx),
                                  states[1].reshape(2, ny, nx)[1])
    # one colour scale for the field's whole block: FOM and ROM values
    assert mesh.get_clim() == (states[:, 12:].min(), (rom[0, 12:]).max())
    assert not axes[3].collections and axes[3].texts[0].get_text() == "not computed"
    assert axes[0].get_xlim()[0] == pytest.approx(0.1 - 0.8 / 6)  # physical coordinates
    plt.close(fig)
    with pytest.raises(InputError, match=r"unknown field\(s\) \['c'\]"):
        field_figure([("FOM", states)], [0.0, 1.0], fields=("a", "b"), grid_shape=(ny, nx),
                     grid={"x": x, "y": y}, show=["c"])
    with pytest.raises(InputError, match=r"the states of 'FOM' have shape \(2, 24\), "
                                         r"expected \(2, 30\)"):
        field_figure([("FOM", states)], [0.0, 1.0], fields=("a", "b"), grid_shape=(3, 5),
                     grid={}, show=["a"])
    with pytest.raises(InputError, match=r"/grid/x has 4 values but the grid has 5"):
        field_figure([("FOM", states)], [0.0, 1.0], fields=("a", "b"), grid_shape=(3, 5),
                     grid={"x": x}, show=["a"])


# ----------------------------------------------------------------------------- the study


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location(
        "burgers2d_study", ROOT / "benchmarks" / "burgers2d_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_sweep_config_is_the_study_sweep(study):
    """``examples/burgers2d_sweep.toml`` is the sweep the study derives from
    ``examples/burgers2d.toml`` (same inputs, so ``mrom sweep`` writes the same file)."""
    ex = load_config(ROOT / "examples" / "burgers2d_sweep.toml")
    p = rom_settings(ex)["latent_dims"][0]
    derived = study.sweep_config(load_config(ROOT / "examples" / "burgers2d.toml"), p)
    assert derived.output_dir == ex.output_dir
    assert problem_from_config(derived).config() == problem_from_config(ex).config()
    assert snapshot_paths(derived) == snapshot_paths(ex)
    assert rom_settings(derived) == rom_settings(ex)
    # the POD basis of the sweep comes from the trajectories the model trained on
    for key in ("validation_every", "validation_params"):
        assert derived.section("training", TRAINING_SCHEMA)[key] == \
            ex.section("training", TRAINING_SCHEMA)[key]
    a, b = derived.section("sweep", SWEEP_SCHEMA), ex.section("sweep", SWEEP_SCHEMA)
    assert {k: v for k, v in a.items() if k != "params"} == \
        {k: v for k, v in b.items() if k != "params"}
    problem = problem_from_config(ex)
    mus = sweep_parameters(b["params"], problem, "x")
    np.testing.assert_array_equal(sweep_parameters(a["params"], problem, "x"), mus)
    np.testing.assert_allclose(mus[:, 0], 0.85 + 0.01 * np.arange(31), atol=1e-12)


def test_acceptance_checks(study):
    def row(method, p, eu, ev, kind="test", mu=1.0, converged=True):
        return {"set": kind, "method": method, "p": p, "mu": mu, "error_u": eu,
                "error_v": ev, "converged": converged}

    rows = [row("deep-lspg", 3, 0.004, 0.006), row("pod-lspg", 3, 0.1, 0.1),
            row("deep-lspg", 5, 0.004, 0.0045), row("pod-lspg", 5, 0.05, 0.04),
            row("deep-lspg", 5, 0.02, 0.01, "sweep", 0.85)]
    checks = study.acceptance_checks(rows, ("u", "v"), [1.0])
    assert [ok for _, ok in checks] == [False, True]  # 0.04 / 0.0045 = 8.9x < 10x
    rows[3]["error_v"] = 0.045
    checks = study.acceptance_checks(rows, ("u", "v"), [1.0])
    assert [ok for _, ok in checks] == [True, True] and "p=5: 0.4 %/0.45 %" in checks[0][0]
    rows.append(row("pod-lspg", 5, math.nan, math.nan, "sweep", 1.15, converged=False))
    text, ok = study.acceptance_checks(rows, ("u", "v"), [1.0])[1]
    assert not ok and "not pod-lspg-p5 at mu = 1.15" in text
    assert not study.acceptance_checks(rows[:4], ("u", "v"), [1.0])[1][1]  # no sweep


def test_study_pieces_on_a_tiny_grid(study, tiny, tmp_path, capsys, monkeypatch):
    """The whole study (training skipped: an analytic decoder; a sweep of 3 parameters)
    writes its rows, checks, tables and figures; its numbers are those of the results
    files."""
    path, load = tiny
    monkeypatch.setattr(study, "SWEEP_PARAMS", {"mu": [0.85, 1.0, 1.15]})
    cfg = load_config(path)
    assert study.study_dims(cfg) == [2, 3] and study.chosen_p(cfg) == 2  # [rom] latent_dims
    payload = study.run_study(cfg, [2, 3], 2, tmp_path / "fig", train=False, progress=False,
                              load_decoder=load)
    rows = payload["rows"]
    test = [r for r in rows if r["set"] == "test" and not r["method"].startswith("proj")]
    assert sorted((r["method"], r["p"]) for r in test) == sorted(
        (m, p) for m in study.METHODS for p in (2, 3))
    rs = read_results(tmp_path / "fig" / "galerkin.h5")
    r = next(r for r in test if r["method"] == "deep-galerkin" and r["p"] == 3)
    assert r["error_v"] == rs.runs["deep-galerkin-p3"].field_error[0, 1] and r["wall_s"] > 0
    sweep_rows = [r for r in rows if r["set"] == "sweep"]
    assert len(sweep_rows) == 2 * 3 and all(r["converged"] for r in sweep_rows)
    assert all(r["wall_s"] > 0 for r in sweep_rows)
    assert [c["check"].startswith("every sweep run converged") for c in payload["checks"]] \
        == [False, True]
    for name in ("fields_u.png", "fields_v.png", "error_vs_mu.png", "table.md"):
        assert (tmp_path / "fig" / name).stat().st_size > 0
    json.loads((tmp_path / "fig" / "results.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    out = capsys.readouterr().out
    assert "Checks of the study" in out and "CPU: " in out
    assert sweep_plan(study.sweep_config(cfg, 2)).output.name == "sweep_p2.h5"


def test_pod_full_reuses_the_last_basis_of_the_same_file(tiny, tmp_path):
    """The study's several ROM runs and its sweep share one SVD of the training set."""
    from rom.online import pod_full

    path, _ = tiny
    train_path = snapshot_paths(load_config(path))["train"]
    few = pod_full(read_snapshots(train_path), "initial", n_modes=2)
    assert few.p == 2
    assert pod_full(read_snapshots(train_path), "initial", n_modes=1) is few  # has enough
    a = pod_full(read_snapshots(train_path), "initial")    # wants every mode: recomputed
    assert a is not few and a.p > 2
    np.testing.assert_allclose(few.basis, a.basis[:, :2], atol=1e-10)
    assert pod_full(read_snapshots(train_path), "initial") is a
    assert pod_full(read_snapshots(train_path), "initial", n_modes=2) is a
    assert not a.basis.flags.writeable
    assert pod_full(read_snapshots(train_path), "none") is not a
    copy = tmp_path / "train.h5"
    copy.write_bytes(train_path.read_bytes())
    with h5py.File(copy, "a") as f:  # other data: another basis
        f["states"][0, 1] *= 2.0
    b = pod_full(read_snapshots(copy), "initial")
    assert b is not a and not np.allclose(np.abs(b.basis[:, 0]), np.abs(a.basis[:, 0]))
