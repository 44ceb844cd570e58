"""What a user can choose: problems, named parameter grids and config keys.

``mrom info`` (:func:`info`) lists the problems with their parameters and domains and the
named parameter grids; ``mrom config-keys [SECTION]`` (:func:`config_keys`) lists the keys of
the config sections with their types, defaults, allowed values and meaning; and
:func:`config_reference` is ``docs/config.md``. All three are generated from the code itself
(the problem registry and constructors, :data:`fom.snapshots.NAMED_GRIDS`, and the
:class:`fom.config.Field` schemas each package validates its section with), so they cannot
drift from what the code accepts. ``tests/test_catalog.py`` checks that ``docs/config.md``
is the current output (regenerate it with ``mrom config-keys --markdown > docs/config.md``).
"""

from __future__ import annotations

import inspect
import math
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fom.config import REQUIRED, Field, rule_of, type_name
from fom.errors import InputError


@dataclass(frozen=True)
class Section:
    """One config section: where it lives in the file, what reads it, and its keys."""

    name: str
    header: str
    about: str
    keys: Mapping[str, Field]


@dataclass(frozen=True)
class Option:
    """One keyword option of a problem (a key of ``[problem]``)."""

    name: str
    default: Any
    kind: str
    doc: str


def sections() -> dict[str, Section]:
    """The config sections and their schemas, in file order (``[problem]`` apart: its keys
    are the options of the chosen problem, see :func:`problem_options`)."""
    from autoencoder.settings import AUTOENCODER_SCHEMA, STAGE_ONLY_SCHEMA, TRAINING_SCHEMA
    from fom.config import TOP_LEVEL
    from fom.snapshots import SNAPSHOTS_SCHEMA
    from rom.online import ROM_SCHEMA
    from rom.sample_mesh import HYPERREDUCTION_SCHEMA
    from rom.sweep import SWEEP_SCHEMA

    top = {k: f for k, f in TOP_LEVEL.items() if f.types is not dict}
    return {s.name: s for s in [
        Section("top", "top level (before the first section)",
                "Where every generated file goes.", top),
        Section("snapshots", "[snapshots]",
                "The training and test parameters and the FOM's time scheme (mrom snapshots; "
                "the files are <output_dir>/train.h5 and <output_dir>/test.h5).",
                SNAPSHOTS_SCHEMA),
        Section("autoencoder", "[autoencoder]",
                "The convolutional autoencoder's architecture; the defaults are the paper's "
                "(mrom train).", AUTOENCODER_SCHEMA),
        Section("training", "[training]",
                "Optimiser, loss terms and stopping of the autoencoder's training; the "
                "defaults are the paper's (mrom train).", TRAINING_SCHEMA),
        Section("training.finetune", "[[training.finetune]]",
                "Each table is one more training stage that continues from the previous "
                "stage's weights. It takes every [training] key (except finetune; a key it "
                "does not set keeps its [training] value) and:", STAGE_ONLY_SCHEMA),
        Section("rom", "[rom]",
                "The online ROMs at the test parameters (mrom rom; results in "
                "<output_dir>/rom_results.h5).", ROM_SCHEMA),
        Section("hyperreduction", "[hyperreduction]",
                "The sample mesh of the hyper-reduced ROMs (hr-deep-lspg, hr-pod-lspg), built "
                "from the training snapshot file only (mrom sample-mesh; mrom rom, run and "
                "sweep build it when missing or stale).", HYPERREDUCTION_SCHEMA),
        Section("sweep", "[sweep]",
                "Many parameters, serially or under MPI (mrom sweep).", SWEEP_SCHEMA),
    ]}


def _docstring_params(cls: type) -> dict[str, tuple[str, str]]:
    """``{name: (type, description)}`` from a numpy-style "Parameters" docstring section."""
    doc = inspect.getdoc(cls) or ""
    m = re.search(r"^Parameters\n-+\n(.*?)(?:\n\n(?=\S[^\n]*\n-+\n)|\Z)", doc, re.S | re.M)
    out: dict[str, tuple[str, str]] = {}
    if not m:
        return out
    names: list[str] = []
    kind = ""
    desc: list[str] = []

    def flush() -> None:
        for n in names:
            out[n] = (kind, " ".join(desc))

    for line in m.group(1).splitlines():
        if line and not line[0].isspace():
            flush()
            head, _, kind = line.partition(" : ")
            names = [n.strip() for n in head.split(",")]
            kind, desc = kind.strip(), []
        elif line.strip():
            desc.append(line.strip())
    flush()
    return out


def problem_options(name: str) -> list[Option]:
    """The keys of ``[problem]`` for problem ``name`` besides ``name``: its constructor's
    keyword arguments, their defaults and their docstring descriptions."""
    from fom.registry import PROBLEMS

    if name not in PROBLEMS:
        raise InputError(f"unknown problem {name!r}; available: {', '.join(sorted(PROBLEMS))}")
    cls = PROBLEMS[name]
    docs = _docstring_params(cls)
    out = []
    for pname, par in inspect.signature(cls).parameters.items():
        if par.kind in (par.VAR_KEYWORD, par.VAR_POSITIONAL):
            continue
        kind, doc = docs.get(pname, ("", ""))
        default = REQUIRED if par.default is inspect.Parameter.empty else par.default
        out.append(Option(pname, default, kind, doc))
    return out


def _toml(value: Any) -> str:
    """A default value as it would be written in TOML."""
    if value is REQUIRED:
        return "required"
    if value is None:
        return "(see meaning)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _rows(sec: Section) -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, allowed values, meaning) of each key of a section."""
    return [(k, type_name(f.types), _toml(f.default), rule_of(f.check), f.doc)
            for k, f in sec.keys.items()]


#: Docstring type names in the words of :func:`fom.config.type_name`.
_KINDS = {"int": int, "float": float, "str": str, "bool": bool}


def _problem_rows(name: str) -> list[tuple[str, str, str, str, str]]:
    rows = [("name", "a string", "required", f'"{name}"', "the problem")]
    rows += [(o.name, type_name(_KINDS[o.kind]) if o.kind in _KINDS else o.kind,
              _toml(o.default), "", o.doc) for o in problem_options(name)]
    return rows


def _section_names() -> list[str]:
    return list(sections())


def config_keys(section: str | None = None) -> str:
    """The keys of one config section (or of all), as plain text (``mrom config-keys``).

    ``section`` is ``top``, ``problem``, ``snapshots``, ``autoencoder``, ``training``,
    ``training.finetune``, ``rom`` or ``sweep`` (brackets are ignored).

    Raises
    ------
    InputError
        For an unknown section.
    """
    from fom.registry import PROBLEMS

    secs = sections()
    names = ["top", "problem", *[n for n in _section_names() if n != "top"]]
    if section is not None:
        section = section.strip("[] ")
        if section not in names:
            raise InputError(f"unknown config section {section!r}; choose one of "
                             f"{', '.join(names)}")
        names = [section]
    blocks = []
    for name in names:
        if name == "problem":
            for prob in sorted(PROBLEMS):
                blocks.append(_text_block(f'[problem] with name = "{prob}"',
                                          "The full-order model and its options "
                                          "(mrom info lists the problems).",
                                          _problem_rows(prob)))
            continue
        sec = secs[name]
        blocks.append(_text_block(sec.header, sec.about, _rows(sec)))
    return "\n\n".join(blocks)


def _text_block(header: str, about: str, rows: list[tuple[str, str, str, str, str]]) -> str:
    lines = [header, *textwrap.wrap(about, 92, initial_indent="  ", subsequent_indent="  ")]
    for key, kind, default, allowed, doc in rows:
        dflt = default if default == "required" else f"default {default}"
        facts = "; ".join(x for x in (kind, dflt, allowed) if x)
        lines.append(f"  {key}  ({facts})")
        lines += textwrap.wrap(doc, 88, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|") if text else ""


def _md_table(rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    out = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key, kind, default, allowed, doc in rows:
        out.append(f"| `{key}` | {_md_cell(kind)} | `{_md_cell(default)}` | "
                   f"{_md_cell(allowed)} | {_md_cell(doc)} |")
    return out


def config_reference() -> str:
    """``docs/config.md``: every config key of every section, generated from the schemas."""
    from fom.registry import PROBLEMS

    secs = sections()
    lines = [
        "# Config reference",
        "",
        "<!-- Generated by `mrom config-keys --markdown` from the schemas in the code; do not "
        "edit by hand. -->",
        "",
        "A run config is one TOML file (UTF-8). Every section is optional except `[problem]`; "
        "a key that is left out takes its default, and an unknown key or a value of the wrong "
        "type is refused with a one-line error naming the file, section and key. "
        "`mrom config-keys SECTION` prints one section in the terminal, `mrom info` the "
        "problems and named parameter grids. `examples/*.toml` are complete configs; "
        "`docs/formats.md` says what the files the commands write contain.",
        "",
        f"## {secs['top'].header[0].upper()}{secs['top'].header[1:]}",
        "",
        secs["top"].about,
        "",
        *_md_table(_rows(secs["top"])),
        "",
        "## [problem]",
        "",
        "The full-order model: `name` picks the problem, the other keys are its options "
        "(`docs/problems.md` describes each problem).",
    ]
    for prob in sorted(PROBLEMS):
        lines += ["", f'### name = "{prob}"', "", *_md_table(_problem_rows(prob))]
    for name in _section_names():
        if name == "top":
            continue
        sec = secs[name]
        lines += ["", f"## {sec.header}", "", sec.about, "", *_md_table(_rows(sec))]
    lines += ["", "## Parameter sets", "",
              "`[snapshots] train`/`test` and `[sweep] params` take a named grid (below) or a "
              "list of parameter vectors such as `[[4.3, 0.021], [5.15, 0.0285]]`; "
              "`[sweep] params` also takes a product grid, a table with one entry per "
              "parameter, each a list of values or `{start, stop, num}`. Every parameter "
              "must lie inside the problem's parameter domain unless the section sets "
              "`check_bounds = false` (`mrom snapshots --mu` likewise unless "
              "`--allow-outside-domain`).", "",
              "| named grid | points | what |", "|---|---:|---|"]
    lines += [f"| `{g}` | {n} | {_md_cell(doc)} |" for g, n, doc in named_grids()]
    return "\n".join(lines) + "\n"


def named_grids() -> list[tuple[str, int, str]]:
    """``(name, number of points, description)`` of every named parameter grid."""
    from fom.snapshots import NAMED_GRIDS

    out = []
    for name, fn in NAMED_GRIDS.items():
        doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
        out.append((name, len(fn()), doc))
    return out


def info() -> str:
    """``mrom info``: the version, the problems with their parameter domains and default
    settings, the named parameter grids and the config sections."""
    from fom import __version__
    from fom.registry import PROBLEMS, get_problem

    lines = [f"manifold-rom {__version__}", "", "problems ([problem] name = ...):"]
    for name in sorted(PROBLEMS):
        prob = get_problem(name)
        summary = (inspect.getdoc(PROBLEMS[name]) or "").split("\n\n")[0].replace("\n", " ")
        lines.append(f"  {name}: {summary}")
        dom = ", ".join(f"{n} in [{lo:g}, {hi:g}]"
                        for n, (lo, hi) in zip(prob.param_names, prob.param_bounds, strict=True))
        lines.append(f"      parameters: {dom}")
        n_steps = round(prob.t_final / prob.dt)
        lines.append(f"      default: N = {prob.n_dofs}, dt = {prob.dt:g}, t_final = "
                     f"{prob.t_final:g} ({n_steps} steps), autoencoder image "
                     f"{' x '.join(str(s) for s in prob.image_shape)}")
        opts = ", ".join(o.name for o in problem_options(name))
        lines.append(f"      options: {opts}  (mrom config-keys problem)")
    lines += ["", "named parameter grids (mrom snapshots --grid NAME; [snapshots] train = "
              "\"NAME\"):"]
    width = max((len(g) for g, _, _ in named_grids()), default=0)
    for g, n, doc in named_grids():
        lines.append(f"  {g:<{width}}  {n:>3} points  {doc}")
    lines += ["", "config sections (mrom config-keys SECTION; all of them in docs/config.md):",
              "  " + ", ".join(["top", "problem", *[n for n in _section_names()
                                                      if n != "top"]])]
    return "\n".join(lines)


__all__ = ["Option", "Section", "config_keys", "config_reference", "info", "named_grids",
           "problem_options", "sections"]
