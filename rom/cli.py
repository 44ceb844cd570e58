"""The ``mrom`` command-line program: one subcommand per pipeline stage.

Each subcommand is a thin wrapper over a plain Python function (named in its help text), so
scripts call the same code. Errors caused by the user's input print one line,
``mrom: error: <message>``, and exit with status 2: an :class:`fom.errors.InputError`, a bad
command line, and any ``OSError`` (an output or input the operating system refuses). A solver
that fails to converge exits with status 3. Imports are lazy: ``mrom snapshots`` never loads
TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fom.errors import ConvergenceError, InputError, MromError

#: Lines TensorFlow writes to stderr on import that say nothing to a user of the CLI (its
#: C++ logging starts before ``TF_CPP_MIN_LOG_LEVEL`` is read in TensorFlow >= 2.20).
TF_IMPORT_NOISE = ("All log messages before absl::InitializeLog() is called",
                   "oneDNN custom operations are on")


def _parse_mu(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--mu {text!r}: expected comma-separated numbers like 4.3,0.021") \
            from None


def _parse_option(text: str) -> tuple[str, Any]:
    """``--option KEY=VALUE``: a problem config value (a number if it parses as one)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--option {text!r}: expected KEY=VALUE, e.g. n=128")
    for conv in (int, float):
        try:
            return key.strip(), conv(value)
        except ValueError:
            pass
    return key.strip(), value


def cmd_snapshots(args: argparse.Namespace) -> int:
    from fom.snapshots import CLI_OVERRIDE, generate_snapshots, named_grid, snapshots_from_config

    if args.config is not None:
        if args.mu or args.grid or args.problem or args.output or args.allow_outside_domain \
                or args.option or args.store_every is not None or args.store_residuals:
            raise InputError("give either a CONFIG file or --problem/--mu/--grid/-o (and "
                             "--option/--store-every/--store-residuals/--allow-outside-domain), "
                             "not both (a config sets check_bounds and the storage options in "
                             "[snapshots])")
        for path in snapshots_from_config(args.config, progress=not args.quiet):
            print(f"wrote {path}")
        return 0
    from fom.registry import get_problem

    if args.problem is None:
        raise InputError("--problem is required without a CONFIG file (mrom info lists them)")
    if args.output is None:
        raise InputError("-o/--output is required without a CONFIG file")
    if bool(args.mu) == bool(args.grid):
        raise InputError("give the parameters either by --mu (repeatable) or by --grid")
    problem = get_problem(args.problem, **dict(_parse_option(o) for o in args.option))
    mus = [_parse_mu(m) for m in args.mu] if args.mu else named_grid(args.grid)
    store_every = 1 if args.store_every is None else args.store_every
    if store_every < 1:
        raise InputError(f"--store-every must be a positive integer, got {store_every}")
    path = generate_snapshots(problem, mus, args.output, dt=args.dt, t_final=args.t_final,
                              scheme=args.scheme, progress=not args.quiet,
                              check_bounds=not args.allow_outside_domain,
                              override=CLI_OVERRIDE, store_every=store_every,
                              store_residuals=args.store_residuals)
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rom.seed_selection import train_models

    train_models(args.config, latent_dims=args.p, progress=not args.quiet, jobs=args.jobs)
    return 0


def cmd_sample_mesh(args: argparse.Namespace) -> int:
    from rom.sample_mesh import sample_mesh_from_config

    sample_mesh_from_config(args.config, progress=not args.quiet, log=print)
    return 0


def cmd_rom(args: argparse.Namespace) -> int:
    from rom.online import roms_from_config

    path = roms_from_config(args.config, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rom.report import report, report_files

    folder = report(args.results, out_dir=args.output)
    for path in report_files(folder):
        print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rom.pipeline import run

    print(run(args.config, progress=not args.quiet, jobs=args.jobs).summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rom.pipeline import demo

    print(demo(output_dir=args.output, progress=not args.quiet).summary())
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rom.sweep import sweep

    path = sweep(args.config, progress=not args.quiet)
    if path is not None:
        print(f"wrote {path}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rom.catalog import info

    print(info())
    return 0


def cmd_config_keys(args: argparse.Namespace) -> int:
    from rom.catalog import config_keys, config_reference

    if args.markdown:
        if args.section is not None:
            raise InputError("--markdown prints every section; leave SECTION out")
        sys.stdout.write(config_reference())
    else:
        print(config_keys(args.section))
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``mrom: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        print(f"mrom: error: {message}{hint}", file=sys.stderr)
        sys.exit(2)


def _version() -> str:
    from fom import __version__

    return f"mrom (manifold-rom) {__version__}"


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="mrom", formatter_class=fmt,
        description="Reduced-order models of parameterized dynamical systems on nonlinear "
                    "manifolds learned\nby convolutional autoencoders (Lee & Carlberg 2019): "
                    "full-order snapshots, autoencoder\ntraining, Deep and POD LSPG/Galerkin "
                    "ROMs, reports, parameter sweeps.",
        epilog="start here:\n"
               "  mrom demo                          the whole pipeline in about 5 minutes\n"
               "  mrom info                          problems and named parameter grids\n"
               "  mrom config-keys training          the keys of a config section\n"
               "  mrom run examples/burgers1d.toml   the paper's 1D Burgers study\n\n"
               "'mrom COMMAND --help' describes each command. Docs: README.md, docs/.")
    parser.add_argument("--version", action="version", version=_version())
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def add(name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help, formatter_class=fmt,
                              description=description, epilog="examples:\n" + examples)

    cfg_help = "TOML run config (docs/config.md; examples/*.toml)"
    p = add("snapshots", "FOM trajectories to an HDF5 snapshot file",
            "Integrate the full-order model at each parameter and write one snapshot file\n"
            "(layout: docs/formats.md). With a CONFIG, write its training and test files\n"
            "(<output_dir>/train.h5, test.h5), keeping files that are already up to date.\n"
            "Finished trajectories are checkpointed in <output>.ckpt/: the same command\n"
            "resumes after a kill. Python: fom.snapshots.generate_snapshots,\n"
            "fom.snapshots.snapshots_from_config.",
            "  mrom snapshots --problem burgers1d --mu 4.3,0.021 --mu 5.15,0.0285 -o test.h5\n"
            "  mrom snapshots --problem burgers1d --grid paper-train -o train.h5\n"
            "  mrom snapshots examples/burgers1d.toml")
    p.add_argument("config", nargs="?", type=Path,
                   help=f"{cfg_help}, instead of --problem/--mu/--grid/-o")
    p.add_argument("--problem", help="problem name, e.g. burgers1d (mrom info lists them)")
    p.add_argument("--mu", action="append", default=[],
                   help="one parameter vector, comma-separated, e.g. 4.3,0.021 (repeatable)")
    p.add_argument("--grid", help="named parameter grid, e.g. paper-train or paper-test "
                                  "(mrom info lists them)")
    p.add_argument("-o", "--output", type=Path, help="output HDF5 file")
    p.add_argument("--scheme", default="backward_euler",
                   help="time scheme: backward_euler (default) or bdf2")
    p.add_argument("--dt", type=float, default=None, help="time step (default: the problem's)")
    p.add_argument("--t-final", type=float, default=None,
                   help="final time (default: the problem's)")
    p.add_argument("--allow-outside-domain", action="store_true",
                   help="accept parameters outside the problem's parameter domain (refused "
                        "by default)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="problem option, e.g. n=128 for burgers2d (repeatable)")
    p.add_argument("--store-every", type=int, default=None, metavar="K",
                   help="store every K-th step (and the last) only")
    p.add_argument("--store-residuals", action="store_true",
                   help="also store every Newton iterate's residual (/residuals)")
    p.set_defaults(func=cmd_snapshots)

    p = add("train", "train the autoencoder(s) of a config",
            "Train one convolutional autoencoder per latent dimension p into\n"
            "<output_dir>/models/p<p>/ (layout: docs/formats.md), generating the training\n"
            "snapshots first if missing. A model trained with the same snapshots and\n"
            "settings is kept; a killed training resumes from its checkpoint. With\n"
            "[training] n_seeds = K > 1, K models per p (seeds seed .. seed + K - 1) and\n"
            "the one with the lowest Deep LSPG error at training trajectories is kept.\n"
            "Python: rom.seed_selection.train_models.",
            "  mrom train examples/burgers1d.toml\n"
            "  mrom train examples/burgers1d_paper.toml --p 3 --p 5")
    p.add_argument("config", type=Path, help=cfg_help)
    p.add_argument("--p", type=int, action="append", default=None,
                   help="latent dimension to train (repeatable; default: [autoencoder] "
                        "latent_dims)")
    p.add_argument("--jobs", type=int, default=1,
                   help="with [training] n_seeds > 1: train up to this many seeds' models at "
                        "once, in separate processes (default 1)")
    p.set_defaults(func=cmd_train)

    p = add("sample-mesh", "build the sample mesh of the hyper-reduced ROMs",
            "Build the [hyperreduction] sample mesh from the training snapshot file only\n"
            "(residual snapshots, residual POD basis, QDEIM and greedy oversampling, the\n"
            "stencil) into <output_dir>/sample_mesh.h5 (layout: docs/formats.md), generating\n"
            "the training snapshots first if missing. An up-to-date file (same settings,\n"
            "problem and training snapshots) is kept. Prints the rows, the stencil size and\n"
            "the interpolation constant. mrom rom builds it too when an hr-* method needs\n"
            "it. Python: rom.sample_mesh.sample_mesh_from_config.",
            "  mrom sample-mesh examples/burgers1d.toml")
    p.add_argument("config", type=Path, help=cfg_help)
    p.set_defaults(func=cmd_sample_mesh)

    p = add("rom", "run the ROMs of a config at its test parameters",
            "Run the [rom] section's ROMs (Deep/POD LSPG and Galerkin, and the hyper-reduced\n"
            "hr-deep-lspg and hr-pod-lspg) at every test parameter and write their\n"
            "trajectories, iterations and errors against the FOM to\n"
            "<output_dir>/rom_results.h5 (layout: docs/formats.md). Needs the snapshot\n"
            "files and, for Deep ROMs, the trained models; builds the sample mesh of the\n"
            "hyper-reduced ROMs if missing or stale. Python: rom.online.roms_from_config.",
            "  mrom rom examples/burgers1d.toml")
    p.add_argument("config", type=Path, help=cfg_help)
    p.set_defaults(func=cmd_rom)

    p = add("report", "error table and figures from a ROM results file",
            "Print the error table (relative state errors in percent) and write report.md,\n"
            "states.png and errors_vs_p.png. Python: rom.report.report.",
            "  mrom report output/burgers1d/rom_results.h5\n"
            "  mrom report output/burgers1d_rom_sweep/rom_sweep.h5 -o figures")
    p.add_argument("results", type=Path,
                   help="ROM results file (from mrom rom, mrom run or a ROM sweep)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="folder for the table and figures (default: report/ beside RESULTS)")
    p.set_defaults(func=cmd_report)

    p = add("run", "the whole pipeline from one config",
            "Check the whole config, then run mrom snapshots, train, sample-mesh (for\n"
            "hyper-reduced ROMs), rom and report on it; each stage keeps outputs that are up\n"
            "to date. Ends by naming every output.\n"
            "Python: rom.pipeline.run.",
            "  mrom run examples/burgers1d.toml\n"
            "  mrom run output/demo/demo.toml")
    p.add_argument("config", type=Path, help=cfg_help)
    p.add_argument("--jobs", type=int, default=1,
                   help="with [training] n_seeds > 1: train up to this many seeds' models at "
                        "once, in separate processes (as mrom train --jobs)")
    p.set_defaults(func=cmd_run)

    p = add("demo", "the whole pipeline on the default problem in minutes",
            "Write a reduced 1D Burgers config (<output>/demo.toml: a 5 x 4 training grid,\n"
            "p = 3, at most 100 epochs) and run it: about 5 minutes on 2 cores. Ends by\n"
            "naming every output. Python: rom.pipeline.demo.",
            "  mrom demo\n"
            "  mrom demo -o /tmp/mrom-demo")
    p.add_argument("-o", "--output", type=Path, default=Path("output/demo"),
                   help="folder for every output (default: output/demo)")
    p.set_defaults(func=cmd_demo)

    p = add("sweep", "many parameters, serially or in parallel under MPI",
            "Run the config's [sweep]: the FOM (kind = \"fom\") or the FOM and the [rom]\n"
            "ROMs (kind = \"rom\") at every parameter, into one file that is byte-identical\n"
            "between serial, MPI and resumed runs (docs/reliability.md). Python:\n"
            "rom.sweep.sweep.",
            "  mrom sweep examples/burgers1d_sweep.toml\n"
            "  mpiexec -n 4 mrom sweep examples/burgers1d_sweep.toml")
    p.add_argument("config", type=Path, help=f"{cfg_help} with a [sweep] section")
    p.set_defaults(func=cmd_sweep)

    p = add("info", "list the problems and the named parameter grids",
            "The version, each problem with its parameters, parameter domain, default\n"
            "settings and options, the named parameter grids and the config sections.\n"
            "Python: rom.catalog.info.",
            "  mrom info")
    p.set_defaults(func=cmd_info)

    p = add("config-keys", "list the keys of the config sections",
            "Each key of a config section with its type, default, allowed values and\n"
            "meaning, generated from the schemas the code validates configs with.\n"
            "Python: rom.catalog.config_keys, rom.catalog.config_reference.",
            "  mrom config-keys training\n"
            "  mrom config-keys\n"
            "  mrom config-keys --markdown > docs/config.md")
    p.add_argument("section", nargs="?",
                   help="top, problem, snapshots, autoencoder, training, training.finetune, "
                        "rom, hyperreduction or sweep (default: all)")
    p.add_argument("--markdown", action="store_true",
                   help="all sections as the Markdown page docs/config.md")
    p.set_defaults(func=cmd_config_keys)
    return parser


@contextlib.contextmanager
def _stderr_without(noise: Sequence[str]) -> Iterator[None]:
    """Catch what is written to file descriptor 2 (also by C++ code) and pass on every line
    that contains none of ``noise``, when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            for line in buf.read().decode(errors="replace").splitlines(keepends=True):
                if not any(text in line for text in noise):
                    sys.stderr.write(line)
            sys.stderr.flush()


class QuietImport(importlib.abc.MetaPathFinder):
    """Import hook: when module ``name`` is first imported (only if a command needs it), it
    runs under :func:`_stderr_without` with the lines ``noise``.

    The CLI installs it for TensorFlow with :data:`TF_IMPORT_NOISE`: TensorFlow's C++ logging
    writes those lines during the import, before any setting such as
    ``TF_CPP_MIN_LOG_LEVEL`` is read (TensorFlow >= 2.20); every other line still shows.
    """

    def __init__(self, name: str, noise: Sequence[str]) -> None:
        self.name, self.noise = name, tuple(noise)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # once; the real finders locate the module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        real, noise = spec.loader.exec_module, self.noise

        def exec_module(module: Any) -> None:
            with _stderr_without(noise):
                real(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _close_progress_bars() -> None:
    """End any tqdm bar's line, so that a message printed next starts on its own line."""
    tqdm_mod = sys.modules.get("tqdm")
    if tqdm_mod is None:
        return
    for bar in list(getattr(tqdm_mod.tqdm, "_instances", ())):
        bar.close()


def _error(message: str, status: int) -> int:
    _close_progress_bars()
    text = " ".join(str(message).split("\n"))
    print(f"mrom: error: {text}", file=sys.stderr)
    return status


def _os_error(exc: OSError) -> str:
    """One line for an ``OSError``: the path(s) and the operating system's reason."""
    reason = exc.strerror or str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mrom``; returns the exit status."""
    # TensorFlow's Python-side chatter (CPU features, oneDNN) is not for users of the CLI.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error (_Parser.error)
        return int(exc.code or 0)
    hook = QuietImport("tensorflow", TF_IMPORT_NOISE)
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, hook)
    try:
        return args.func(args)
    except InputError as exc:
        return _error(str(exc), 2)
    except ConvergenceError as exc:
        return _error(str(exc), 3)
    except MromError as exc:
        return _error(str(exc), 1)
    except OSError as exc:  # a file the operating system refuses: the user's to fix
        return _error(_os_error(exc), 2)
    except KeyboardInterrupt:
        _close_progress_bars()
        print("mrom: interrupted", file=sys.stderr)
        return 130
    finally:
        if hook in sys.meta_path:
            sys.meta_path.remove(hook)


if __name__ == "__main__":
    sys.exit(main())
