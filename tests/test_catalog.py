"""Help and self-description: ``mrom info``, ``mrom config-keys``, the generated
``docs/config.md``, ``--version`` and the help text of every subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fom import __version__
from fom.config import TOP_LEVEL
from fom.errors import InputError
from fom.registry import PROBLEMS, get_problem
from fom.snapshots import NAMED_GRIDS
from rom.catalog import config_keys, config_reference, info, problem_options, sections
from rom.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_the_generated_reference():
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == config_reference(), (
        "docs/config.md is out of date: run 'mrom config-keys --markdown > docs/config.md'")


def test_every_config_section_is_described():
    """Every table-valued top-level key of a config (except [problem], which lists the
    problem's options) has its section in the catalog, and nothing else is there."""
    tables = {k for k, f in TOP_LEVEL.items() if f.types is dict} - {"problem"}
    described = {n for n in sections() if n not in ("top", "training.finetune")}
    assert described == tables


@pytest.mark.parametrize("name", list(sections()))
def test_every_key_is_listed_with_its_default(name):
    sec = sections()[name]
    text = config_keys(name)
    for key, field in sec.keys.items():
        assert f"  {key}  (" in text
        assert f"`{key}`" in config_reference()
        if field.doc:
            assert field.doc.split()[0] in text


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_problem_options_are_what_get_problem_accepts(name):
    opts = problem_options(name)
    assert opts, "a problem without options"
    # each listed option, at its listed default, is accepted
    get_problem(name, **{o.name: o.default for o in opts if o.default is not None})
    text = config_keys("problem")
    for o in opts:
        assert f"  {o.name}  (" in text and o.doc, f"{name}: option {o.name} undocumented"


def test_info_lists_problems_domains_and_grids(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out == info() + "\n"
    assert out.startswith(f"manifold-rom {__version__}")
    for name, cls in PROBLEMS.items():
        assert f"  {name}: " in out
        for pname, (lo, hi) in zip(cls.param_names, cls.param_bounds, strict=True):
            assert f"{pname} in [{lo:g}, {hi:g}]" in out
    for grid, fn in NAMED_GRIDS.items():
        assert f"  {grid}  " in out and f" {len(fn())} points" in out


def test_config_keys_command(capsys):
    assert main(["config-keys", "[rom]"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[rom]") and "  linear_solver  (a string; default \"qr\"; one of" in out
    assert main(["config-keys", "--markdown"]) == 0
    assert capsys.readouterr().out == config_reference()
    with pytest.raises(InputError, match="unknown config section 'x'; choose one of top, "
                                         "problem, snapshots"):
        config_keys("x")


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mrom (manifold-rom) {__version__}"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", list(_subcommands()))
def test_every_subcommand_has_a_description_examples_and_argument_help(name):
    sub = _subcommands()[name]
    assert sub.description and len(sub.description) > 40
    assert sub.epilog.startswith("examples:\n") and f"mrom {name}" in sub.epilog
    for action in sub._actions:
        assert action.help, f"mrom {name}: argument {action.dest} has no help text"
    top = build_parser().format_help()
    assert f"    {name}" in top  # listed with its one-line help
