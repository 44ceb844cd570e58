"""The ``mrom`` command-line program: one subcommand per pipeline stage.

Each subcommand is a thin wrapper over a plain Python function (named in its help text), so
scripts call the same code. Errors caused by the user's input print one line,
``mrom: error: <message>``, and exit with status 2; a solver that fails to converge exits
with status 3. Imports are lazy: ``mrom snapshots`` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fom.errors import ConvergenceError, InputError, MromError


def _parse_mu(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--mu {text!r}: expected comma-separated numbers like 4.3,0.021") \
            from None


def cmd_snapshots(args: argparse.Namespace) -> int:
    from fom.snapshots import generate_snapshots, named_grid, snapshots_from_config

    if args.config is not None:
        if args.mu or args.grid or args.problem or args.output:
            raise InputError("give either a CONFIG file or --problem/--mu/--grid/-o, not both")
        for path in snapshots_from_config(args.config, progress=not args.quiet):
            print(f"wrote {path}")
        return 0
    from fom.registry import get_problem

    if args.problem is None:
        raise InputError("--problem is required without a CONFIG file")
    if args.output is None:
        raise InputError("-o/--output is required without a CONFIG file")
    if bool(args.mu) == bool(args.grid):
        raise InputError("give the parameters either by --mu (repeatable) or by --grid")
    problem = get_problem(args.problem)
    mus = [_parse_mu(m) for m in args.mu] if args.mu else named_grid(args.grid)
    path = generate_snapshots(problem, mus, args.output, dt=args.dt, t_final=args.t_final,
                              scheme=args.scheme, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from autoencoder.train import train_from_config

    train_from_config(args.config, latent_dims=args.p, progress=not args.quiet)
    return 0


def cmd_rom(args: argparse.Namespace) -> int:
    from rom.online import roms_from_config

    path = roms_from_config(args.config, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rom.report import report

    report(args.results, out_dir=args.output)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rom.pipeline import run

    run(args.config, progress=not args.quiet)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rom.pipeline import demo

    demo(output_dir=args.output, progress=not args.quiet)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rom.sweep import sweep

    path = sweep(args.config, progress=not args.quiet)
    if path is not None:
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrom",
        description="Reduced-order models on autoencoder manifolds (Lee & Carlberg 2019).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help)

    p = add("snapshots", "FOM trajectories to an HDF5 snapshot file "
                       "(fom.snapshots.generate_snapshots)")
    p.add_argument("config", nargs="?", type=Path, help="TOML config ([problem], [snapshots])")
    p.add_argument("--problem", help="problem name, e.g. burgers1d")
    p.add_argument("--mu", action="append", default=[], help="parameters, e.g. 4.3,0.021")
    p.add_argument("--grid", help="named parameter grid: paper-train, paper-test, "
                   "flame2d-train or flame2d-test")
    p.add_argument("-o", "--output", type=Path, help="output HDF5 file")
    p.add_argument("--scheme", default="backward_euler", help="backward_euler or bdf2")
    p.add_argument("--dt", type=float, default=None, help="time step (problem default)")
    p.add_argument("--t-final", type=float, default=None, help="final time (problem default)")
    p.set_defaults(func=cmd_snapshots)

    p = add("train", "train the autoencoder(s) of a config "
                       "(autoencoder.train.train_from_config)")
    p.add_argument("config", type=Path)
    p.add_argument("--p", type=int, action="append", default=None,
                   help="latent dimension(s) to train (default: the config's latent_dims)")
    p.set_defaults(func=cmd_train)

    p = add("rom", "run the ROMs of a config (rom.online.roms_from_config)")
    p.add_argument("config", type=Path)
    p.set_defaults(func=cmd_rom)

    p = add("report", "error table and figures from a ROM results file "
                       "(rom.report.report)")
    p.add_argument("results", type=Path)
    p.add_argument("-o", "--output", type=Path, default=None, help="folder for the figures")
    p.set_defaults(func=cmd_report)

    p = add("run", "whole pipeline from one TOML file (rom.pipeline.run)")
    p.add_argument("config", type=Path)
    p.set_defaults(func=cmd_run)

    p = add("demo", "whole pipeline on the default problem in minutes "
                       "(rom.pipeline.demo)")
    p.add_argument("-o", "--output", type=Path, default=Path("output/demo"))
    p.set_defaults(func=cmd_demo)

    p = add("sweep", "many parameters, in parallel under MPI (rom.sweep.sweep)")
    p.add_argument("config", type=Path)
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mrom``; returns the exit status."""
    # TensorFlow's C++ start-up chatter (CPU features, oneDNN) is not for users of the CLI.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"mrom: error: {exc}", file=sys.stderr)
        return 2
    except ConvergenceError as exc:
        print(f"mrom: error: {exc}", file=sys.stderr)
        return 3
    except MromError as exc:
        print(f"mrom: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mrom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
