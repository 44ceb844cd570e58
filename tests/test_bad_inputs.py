"""Bad inputs through the ``mrom`` command line: each gives exactly one line
``mrom: error: ...`` naming the file, key or value at fault, exit status 2, and leaves every
file that existed before untouched (and creates none).

Run as a script (``python tests/test_bad_inputs.py``) to print the Markdown table of inputs and
messages that ``docs/reliability.md`` reproduces.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from rom.cli import main

PROBLEM = '[problem]\nname = "burgers1d"\nn_cells = 64\ndt = 0.07\nt_final = 0.7\n'
SWEEP = '[sweep]\nparams = [[4.3, 0.021], [5.15, 0.0285]]\n'


def config(tmp: Path, text: str, name: str = "run.toml") -> str:
    """Write a config (with ``output_dir = "out"`` unless the text sets it) and return its
    name."""
    if "output_dir" not in text:
        text = 'output_dir = "out"\n' + text
    (tmp / name).write_text(text)
    return name


def sweep_cfg(tmp: Path, problem: str = PROBLEM, sweep: str = SWEEP, top: str = "") -> list[str]:
    return ["sweep", config(tmp, top + problem + sweep)]


# ----------------------------------------------------------------------------- snapshot files

_VALID: dict[str, bytes] = {}


def valid_snapshot_bytes() -> bytes:
    """A small valid snapshot file (64 cells, 10 steps, 2 trajectories), made once."""
    if "file" not in _VALID:
        import tempfile

        import fom
        from fom.snapshots import generate_snapshots

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "s.h5"
            generate_snapshots(fom.get_problem("burgers1d", n_cells=64), [[4.3, 0.021],
                               [5.15, 0.0285]], path, t_final=0.7, progress=False)
            _VALID["file"] = path.read_bytes()
    return _VALID["file"]


def valid_results_bytes() -> bytes:
    """A small valid ROM results file (POD-LSPG, 32 cells, 5 steps), made once."""
    if "results" not in _VALID:
        import tempfile

        import fom
        from rom import AffineManifold, solve_rom
        from rom.results import RunRecord, write_results

        problem = fom.Burgers1D(n_cells=32, t_final=0.35)
        mus = [[4.3, 0.021], [5.15, 0.0285]]
        ref = np.array([fom.solve(problem, m).states for m in mus])
        man = AffineManifold.from_snapshots(ref, 3)
        roms = [solve_rom(problem, man, m, "lspg") for m in mus]
        rec = RunRecord.from_rom_results("pod-lspg", roms, ref.shape[1],
                                         relative_error=[0.1, 0.2], projection_error=[0.1, 0.2])
        with tempfile.TemporaryDirectory() as d:
            path = write_results(Path(d) / "r.h5", [rec], mu=np.array(mus), t=roms[0].t,
                                 param_names=problem.param_names, reference=ref)
            _VALID["results"] = path.read_bytes()
    return _VALID["results"]


def train_with(mutate: Callable[[Path], None], n_cells: int = 64) -> Callable[[Path], list[str]]:
    """``mrom train`` on a config whose ``out/train.h5`` exists and is altered by ``mutate``."""
    def setup(tmp: Path) -> list[str]:
        (tmp / "out").mkdir()
        path = tmp / "out" / "train.h5"
        path.write_bytes(valid_snapshot_bytes())
        mutate(path)
        return ["train", config(tmp, PROBLEM.replace("n_cells = 64", f"n_cells = {n_cells}"))]
    return setup


def _replace(name: str, data: np.ndarray) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        with h5py.File(path, "a") as f:
            del f[name]
            f.create_dataset(name, data=data)
    return mutate


def _delete(name: str) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        with h5py.File(path, "a") as f:
            del f[name]
    return mutate


def _with_nan(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f["states"][0, 3, 5] = np.nan


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_hdf5(path: Path) -> None:
    path.write_text("mu1,mu2\n4.3,0.021\n")


def _states(shape: tuple[int, ...], dtype: str = "f8") -> np.ndarray:
    return np.ones(shape, dtype=dtype)


# ----------------------------------------------------------------------------- the cases


@dataclass
class Case:
    """One bad input: what it is, how to make it (returns the argv) and what the message
    must contain ({tmp} stands for the test folder)."""

    what: str
    setup: Callable[[Path], list[str]]
    expect: tuple[str, ...]


def _other_checkpoint(tmp: Path) -> list[str]:
    (tmp / "out" / "sweep.h5.ckpt").mkdir(parents=True)
    (tmp / "out" / "sweep.h5.ckpt" / "manifest.json").write_text('{"mu": [[5.0, 0.02]]}')
    return sweep_cfg(tmp)


def _output_dir_is_file(tmp: Path) -> list[str]:
    (tmp / "results").write_text("not a folder")
    return sweep_cfg(tmp, top='output_dir = "results"\n')


def _output_is_folder(tmp: Path) -> list[str]:
    (tmp / "out" / "sweep.h5").mkdir(parents=True)
    return sweep_cfg(tmp)


#: A folder in which nobody, root included, can create a file (Linux).
UNWRITABLE = "/proc"
TINY_RUN = (PROBLEM + '[snapshots]\ntrain = [[4.3, 0.021]]\ntest = [[4.3, 0.021]]\n'
            '[autoencoder]\nlatent_dims = [2]\nfilters = [4]\nstrides = [2]\n')


def _report_to(folder: str) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "r.h5").write_bytes(valid_results_bytes())
        return ["report", "r.h5", "-o", folder]
    return setup


def _report_to_file(tmp: Path) -> list[str]:
    (tmp / "figs").write_text("a file")
    return _report_to("figs")(tmp)


def _not_utf8(tmp: Path) -> list[str]:
    (tmp / "run.toml").write_bytes(b'\xff\xfe[problem]\nname = "burgers1d"\n')
    return ["sweep", "run.toml"]


def mesh_cfg(tmp: Path, hr: str, train: bool = False,
             mesh: Callable[[Path], None] | None = None) -> list[str]:
    """``mrom sample-mesh`` on a config with the ``[hyperreduction]`` lines ``hr``, with
    ``out/train.h5`` (if ``train``) and ``out/sample_mesh.h5`` made by ``mesh``."""
    if train or mesh:
        (tmp / "out").mkdir()
        (tmp / "out" / "train.h5").write_bytes(valid_snapshot_bytes())
    if mesh:
        mesh(tmp / "out" / "sample_mesh.h5")
    return ["sample-mesh", config(tmp, TINY_RUN + "[hyperreduction]\n" + hr)]


def _config_is_folder(tmp: Path) -> list[str]:
    (tmp / "run.toml").mkdir()
    return ["run", "run.toml"]


CASES: dict[str, Case] = {c.what: c for c in [
    # --- TOML configs
    Case("config file does not exist", lambda t: ["sweep", "missing.toml"],
         ("config file missing.toml does not exist",)),
    Case("malformed TOML", lambda t: ["sweep", config(t, "[problem\nname = 1\n")],
         ("run.toml: invalid TOML",)),
    Case("unknown top-level key", lambda t: sweep_cfg(t, top='outptu_dir = "x"\n'),
         ("run.toml", "unknown key 'outptu_dir'")),
    Case("unknown key in [sweep]", lambda t: sweep_cfg(t, sweep=SWEEP + "paramz = 1\n"),
         ("run.toml [sweep]", "unknown key 'paramz'")),
    Case("missing required key [sweep] params",
         lambda t: sweep_cfg(t, sweep="[sweep]\nkind = 'fom'\n"),
         ("run.toml [sweep]", "missing required key 'params'")),
    Case("wrong type: [sweep] output = 3", lambda t: sweep_cfg(t, sweep=SWEEP + "output = 3\n"),
         ("run.toml [sweep] output", "must be a string")),
    Case("wrong type: [sweep] check_bounds = \"yes\"",
         lambda t: sweep_cfg(t, sweep=SWEEP + 'check_bounds = "yes"\n'),
         ("run.toml [sweep] check_bounds", "must be true/false")),
    Case("value not among the choices: [sweep] kind", lambda t: sweep_cfg(
        t, sweep=SWEEP + 'kind = "banana"\n'), ("run.toml [sweep] kind", "must be one of")),
    Case("value not among the choices: [sweep] scheme", lambda t: sweep_cfg(
        t, sweep=SWEEP + 'scheme = "rk4"\n'), ("run.toml [sweep] scheme", "must be one of")),
    Case("[problem] without a name", lambda t: sweep_cfg(t, problem="[problem]\nn_cells = 64\n"),
         ("run.toml [problem]", "missing required key 'name'")),
    Case("unknown problem", lambda t: sweep_cfg(t, problem='[problem]\nname = "burgers3d"\n'),
         ("run.toml [problem]", "unknown problem 'burgers3d'")),
    Case("unknown problem option", lambda t: sweep_cfg(t, problem=PROBLEM + "viscosity = 0.1\n"),
         ("run.toml [problem]", "viscosity")),
    Case("out of range: [problem] n_cells = 1",
         lambda t: sweep_cfg(t, problem=PROBLEM.replace("n_cells = 64", "n_cells = 1")),
         ("run.toml [problem]", "n_cells must be an integer >= 2")),
    Case("out of range: [problem] dt = -0.07",
         lambda t: sweep_cfg(t, problem=PROBLEM.replace("dt = 0.07", "dt = -0.07")),
         ("run.toml [problem]", "dt must be a positive number")),
    Case("t_final not a whole number of steps",
         lambda t: sweep_cfg(t, problem=PROBLEM.replace("t_final = 0.7", "t_final = 0.75")),
         ("run.toml [problem]", "not a whole number of steps")),
    Case("unknown named parameter grid", lambda t: sweep_cfg(t, sweep='[sweep]\nparams = "x"\n'),
         ("run.toml [sweep] params", "unknown parameter grid 'x'")),
    Case("parameter vector of the wrong length",
         lambda t: sweep_cfg(t, sweep="[sweep]\nparams = [[4.3]]\n"),
         ("run.toml [sweep] params", "takes 2 parameters")),
    Case("non-numeric parameter", lambda t: sweep_cfg(t, sweep='[sweep]\nparams = [["a", 1]]\n'),
         ("run.toml [sweep] params", "not a list of numbers")),
    Case("parameter outside the domain",
         lambda t: sweep_cfg(t, sweep="[sweep]\nparams = [[45.0, 0.021]]\n"),
         ("run.toml [sweep] params", "mu1 = 45.0 is outside its range")),
    Case("product grid: unknown parameter",
         lambda t: sweep_cfg(t, sweep="[sweep.params]\nmu1 = [4.3]\nmu3 = [1.0]\n"),
         ("run.toml [sweep] params", "unknown parameter 'mu3'")),
    Case("product grid: num = 0", lambda t: sweep_cfg(
        t, sweep="[sweep.params]\nmu1 = {start = 4.3, stop = 5.0, num = 0}\nmu2 = [0.02]\n"),
        ("run.toml [sweep] params mu1 num", "must be an integer >= 1")),
    Case("output in a folder that does not exist",
         lambda t: sweep_cfg(t, sweep=SWEEP + f'output = "{t}/nowhere/sweep.h5"\n'),
         ("run.toml [sweep] output: cannot write", "nowhere/sweep.h5", "does not exist")),
    Case("output path is a folder", _output_is_folder, (
        "run.toml [sweep] output: cannot write out/sweep.h5: it is a folder",)),
    Case("output_dir is a file", _output_dir_is_file, (
        "run.toml output_dir: cannot create folder results: a file of that name exists",)),
    Case("checkpoint folder of a different run", _other_checkpoint,
         ("out/sweep.h5.ckpt belongs to a different run",)),
    Case("config file is not UTF-8", _not_utf8,
         ("run.toml: not a UTF-8 text file (byte 0",)),
    Case("config path is a folder", _config_is_folder,
         ("config file run.toml is a folder, not a TOML file",)),
    # --- outputs that cannot be written
    Case("output_dir cannot be created",
         lambda t: ["snapshots", config(t, f'output_dir = "{UNWRITABLE}/mrom_out"\n' + TINY_RUN)],
         ("run.toml output_dir: cannot write in folder /proc/mrom_out: folder /proc is not "
          "writable",)),
    Case("[sweep] output cannot be written",
         lambda t: sweep_cfg(t, sweep=SWEEP + f'output = "{UNWRITABLE}/x.h5"\n'),
         ("run.toml [sweep] output: cannot write /proc/x.h5: folder /proc is not writable",)),
    Case("-o cannot be written", lambda t: ["snapshots", "--problem", "burgers1d", "--grid",
                                            "paper-test", "-o", f"{UNWRITABLE}/x.h5"],
         ("cannot write /proc/x.h5: folder /proc is not writable",)),
    Case("report folder cannot be written", _report_to(f"{UNWRITABLE}/figs"),
         ("report folder: cannot write in folder /proc/figs",)),
    Case("report folder is a file", _report_to_file, (
        "report folder: cannot create folder figs: a file of that name exists",)),
    Case("demo folder cannot be written", lambda t: ["demo", "-o", f"{UNWRITABLE}/demo"],
         ("demo output folder: cannot write in folder /proc/demo",)),
    Case("mrom train: output_dir cannot be created",
         lambda t: ["train", config(t, f'output_dir = "{UNWRITABLE}/o"\n' + TINY_RUN)],
         ("run.toml output_dir: cannot write in folder /proc/o",)),
    # --- [hyperreduction] and the sample-mesh file
    Case("unknown key in [hyperreduction]", lambda t: mesh_cfg(t, "n_sample = 20\n"),
         ("run.toml [hyperreduction]", "unknown key 'n_sample'")),
    Case("value not among the choices: [hyperreduction] sample_by",
         lambda t: mesh_cfg(t, 'sample_by = "cell"\n'),
         ("run.toml [hyperreduction] sample_by: must be one of row, node, got 'cell'",)),
    Case("[hyperreduction] n_samples above the rows of the problem",
         lambda t: mesh_cfg(t, "n_samples = 100\n"),
         ("run.toml [hyperreduction] n_samples: must be at most 64, the rows of burgers1d "
          "(N = 64), got 100",)),
    Case("GNAT with fewer sampled rows than basis vectors",
         lambda t: mesh_cfg(t, 'method = "gnat"\nn_samples = 8\nn_basis = 10\n'),
         ("run.toml [hyperreduction] n_basis: GNAT needs at least n_basis sampled rows",)),
    Case("[hyperreduction] n_basis above the rank of the residual snapshots",
         lambda t: mesh_cfg(t, "n_samples = 30\nn_basis = 30\n", train=True),
         ("run.toml [hyperreduction]: n_basis = 30 must lie in [1, 10] (the rank of the "
          "residual snapshots)",)),
    Case("sample-mesh file that is not HDF5",
         lambda t: mesh_cfg(t, "n_samples = 20\n", mesh=_not_hdf5),
         ("run.toml [hyperreduction] file: out/sample_mesh.h5 is not a readable HDF5 file",
          "remove it or choose another file")),
    Case("sample-mesh file that is another HDF5 file",
         lambda t: mesh_cfg(t, "n_samples = 20\n",
                            mesh=lambda p: p.write_bytes(valid_snapshot_bytes())),
         ("run.toml [hyperreduction] file: out/sample_mesh.h5 is not a sample-mesh file",)),
    Case("mrom run: bad [hyperreduction] key is found before any work",
         lambda t: ["run", config(t, TINY_RUN + '[rom]\nmethods = ["hr-pod-lspg"]\n'
                                  '[hyperreduction]\nmethod = "deim"\n')],
         ("run.toml [hyperreduction] method: must be one of collocation, gnat",)),
    Case("[rom] methods: hyper-reduced Galerkin",
         lambda t: ["rom", config(t, TINY_RUN + '[rom]\nmethods = ["hr-deep-galerkin"]\n')],
         ("run.toml [rom] methods: entry 'hr-deep-galerkin' must be one of",)),
    # --- every input is checked before anything is written
    Case("mrom run: bad [rom] key is found before any work",
         lambda t: ["run", config(t, TINY_RUN + '[rom]\nmethods = ["lspg"]\n')],
         ("run.toml [rom] methods: entry 'lspg' must be one of",)),
    Case("mrom run: bad fine-tuning stage is found before any work",
         lambda t: ["run", config(t, TINY_RUN + "[[training.finetune]]\nepoch = 3\n")],
         ("run.toml [training] finetune[0]: unknown key 'epoch'",)),
    Case("mrom train: bad [snapshots] test is found before any work",
         lambda t: ["train", config(t, TINY_RUN.replace("test = [[4.3, 0.021]]",
                                                        "test = [[4.3]]"))],
         ("run.toml [snapshots] test: problem burgers1d takes 2 parameters",)),
    # --- parameters outside the problem's domain
    Case("--mu outside the domain",
         lambda t: ["snapshots", "--problem", "burgers1d", "--mu", "45,0.021", "-o", "s.h5"],
         ("parameter mu1 = 45.0 is outside its range [4.25, 5.5] (--allow-outside-domain "
          "allows it)",)),
    Case("[snapshots] test parameter outside the domain",
         lambda t: ["snapshots", config(t, TINY_RUN.replace("test = [[4.3, 0.021]]",
                                                            "test = [[4.3, 0.05]]"))],
         ("run.toml [snapshots] test: parameter mu2 = 0.05 is outside its range [0.015, 0.03] "
          "(set check_bounds = false to allow it)",)),
    # --- command-line arguments
    Case("--scheme unknown", lambda t: ["snapshots", "--problem", "burgers1d", "--mu",
                                        "4.3,0.021", "--scheme", "rk4", "-o", "s.h5"],
         ("unknown time scheme 'rk4'",)),
    Case("unknown option", lambda t: ["snapshots", "--problme", "burgers1d"],
         ("unrecognized arguments: --problme", "mrom --help")),
    Case("missing positional argument", lambda t: ["train"],
         ("the following arguments are required: config", "mrom train --help")),
    Case("unknown config section", lambda t: ["config-keys", "trainig"],
         ("unknown config section 'trainig'; choose one of",)),
    Case("--mu not numbers", lambda t: ["snapshots", "--problem", "burgers1d", "--mu",
                                        "4.3,abc", "-o", "s.h5"], ("--mu '4.3,abc'",)),
    Case("--mu with the wrong number of values",
         lambda t: ["snapshots", "--problem", "burgers1d", "--mu", "4.3", "-o", "s.h5"],
         ("takes 2 parameters",)),
    Case("--problem unknown", lambda t: ["snapshots", "--problem", "nope", "--grid",
                                         "paper-test", "-o", "s.h5"], ("unknown problem 'nope'",)),
    Case("--grid unknown", lambda t: ["snapshots", "--problem", "burgers1d", "--grid", "nope",
                                      "-o", "s.h5"], ("unknown parameter grid 'nope'",)),
    Case("-o in a folder that does not exist",
         lambda t: ["snapshots", "--problem", "burgers1d", "--grid", "paper-test", "-o",
                    "nowhere/s.h5"], ("cannot write nowhere/s.h5",)),
    # --- snapshot files (read by mrom train)
    Case("snapshot file is not HDF5", train_with(_not_hdf5),
         ("out/train.h5 is not a readable HDF5 file",)),
    Case("snapshot file truncated", train_with(_truncate),
         ("out/train.h5 is not a readable HDF5 file",)),
    Case("snapshot file without /states", train_with(_delete("states")),
         ("out/train.h5: missing dataset /states",)),
    Case("snapshot /states of integer dtype", train_with(_replace("states", _states(
        (2, 11, 64), "i4"))), ("out/train.h5: /states has dtype int32",)),
    Case("snapshot /states of the wrong rank", train_with(_replace("states", _states((22, 64)))),
         ("out/train.h5: /states has 2 dimensions, expected 3",)),
    Case("snapshot /states and /t disagree", train_with(_replace("states", _states((2, 7, 64)))),
         ("out/train.h5: /states has 7 times but /t has 11",)),
    Case("snapshot /states contains NaN", train_with(_with_nan),
         ("out/train.h5: /states contains NaN or Inf",)),
    Case("snapshot /t not increasing", train_with(_replace("t", np.zeros(11))),
         ("out/train.h5: /t must start at 0 and increase strictly",)),
    Case("snapshot file of another state size", train_with(lambda p: None, n_cells=256),
         ("out/train.h5: states have N = 64", "N = 256")),
]}


# ----------------------------------------------------------------------------- the test


def _tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with the SHA-256 of its content ("dir" for folders)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_enough_distinct_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("what", list(CASES))
def test_bad_input(what, tmp_path, monkeypatch, capsys):
    case = CASES[what]
    monkeypatch.chdir(tmp_path)
    for var in ("MROM_TEST_PAUSE", "PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        monkeypatch.delenv(var, raising=False)
    # a previous result that a bad input must not destroy
    (tmp_path / "previous.h5").write_bytes(b"precious result")
    code, out, err = run_case_prepared(case, tmp_path, capsys)
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("mrom: error: ")
    for text in case.expect:
        assert text.format(tmp=tmp_path) in lines[0], lines[0]


def run_case_prepared(case: Case, tmp: Path, capsys) -> tuple[int, str, str]:
    """Set the case up, snapshot the folder, run, and check nothing changed on disk."""
    argv = case.setup(tmp)
    before = _tree(tmp)
    capsys.readouterr()
    code = main([*argv[:1], "-q", *argv[1:]])
    cap = capsys.readouterr()
    assert _tree(tmp) == before, "the failed command changed files on disk"
    return code, cap.out, cap.err


# ----------------------------------------------------------------------------- the docs table


def _table() -> str:
    """Markdown table of every case and the message it produces (for docs/reliability.md)."""
    import contextlib
    import io
    import tempfile

    rows = ["| # | Bad input | Command | Message |", "|---|---|---|---|"]
    for n, case in enumerate(CASES.values(), 1):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                argv = case.setup(tmp)
                buf = io.StringIO()
                with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
                    code = main([*argv[:1], "-q", *argv[1:]])
            finally:
                os.chdir(cwd)
            msg = buf.getvalue().strip().replace(str(tmp), "$TMP").replace("|", "\\|")
            cmd = "mrom " + " ".join(a.replace(str(tmp), "$TMP") for a in argv)
            rows.append(f"| {n} | {case.what} | `{cmd}` | `{msg}` (exit {code}) |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table())


# ----------------------------------------------------------------------------- after an error


def test_rejected_option_does_not_poison_the_next_run(tmp_path, monkeypatch, capsys):
    """A bad ``--scheme`` is refused before any checkpoint folder exists, so the next, valid
    command with the same output works."""
    monkeypatch.chdir(tmp_path)
    args = ["snapshots", "-q", "--problem", "burgers1d", "--mu", "4.3,0.021", "-o", "s.h5"]
    assert main([*args, "--scheme", "rk4"]) == 2
    assert list(tmp_path.iterdir()) == []
    assert main([*args, "--t-final", "0.7"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_outside_domain_is_allowed_when_asked(tmp_path, monkeypatch):
    from fom.snapshots import read_snapshots

    monkeypatch.chdir(tmp_path)
    assert main(["snapshots", "-q", "--problem", "burgers1d", "--mu", "6.0,0.021",
                 "--t-final", "0.7", "--allow-outside-domain", "-o", "s.h5"]) == 0
    assert read_snapshots("s.h5").mu.tolist() == [[6.0, 0.021]]
    (tmp_path / "run.toml").write_text(
        'output_dir = "out"\n' + PROBLEM + "[snapshots]\ntrain = [[6.0, 0.021]]\n"
        "test = [[4.3, 0.021]]\ncheck_bounds = false\n")
    assert main(["snapshots", "-q", "run.toml"]) == 0
    assert read_snapshots("out/train.h5").mu.tolist() == [[6.0, 0.021]]


def test_any_os_error_is_one_line(tmp_path, monkeypatch, capsys):
    """An OSError no check foresaw (disk full, a file removed under the run) is one line,
    exit 2, not a traceback."""
    import fom.snapshots

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "s.h5"))

    monkeypatch.setattr(fom.snapshots, "write_snapshots", full)
    monkeypatch.chdir(tmp_path)
    code = main(["snapshots", "-q", "--problem", "burgers1d", "--mu", "4.3,0.021",
                 "--t-final", "0.7", "-o", "s.h5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [f"mrom: error: {tmp_path / 's.h5'}: No space left on device"]

