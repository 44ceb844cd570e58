"""TOML configuration files: loading and section-by-section validation.

Every package declares the keys of its own config section as a schema of :class:`Field`;
:func:`parse_section` checks a section against it and fills the defaults. Errors name the file,
the section and the key (``examples/x.toml [training] batch_size: must be >= 1, got 0``).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import check_output_folder
from .errors import InputError

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One config key.

    Attributes
    ----------
    types : type or tuple of types
        Accepted Python types after TOML parsing (``float`` also accepts ``int``).
    default : object
        Value when the key is absent; :data:`REQUIRED` makes the key mandatory.
    check : callable, optional
        ``check(value)`` returns an error string (e.g. ``"must be >= 1"``) or None.
    doc : str
        One-line description (used in docs).
    """

    types: type | tuple[type, ...]
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


def _with_rule(check: Callable[[Any], str | None], rule: str) -> Callable[[Any], str | None]:
    """Attach the human-readable ``rule`` of a check (shown by ``mrom config-keys``)."""
    check.rule = rule  # type: ignore[attr-defined]
    return check


def rule_of(check: Callable[[Any], str | None] | None) -> str:
    """The rule a check enforces, in words (empty if it has none)."""
    return str(getattr(check, "rule", "")) if check is not None else ""


def positive(v: Any) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be a positive number"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 and math.isfinite(v) else "must be >= 0"


_with_rule(positive, "> 0")
_with_rule(non_negative, ">= 0")


def at_least(lo: float) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v >= lo else f"must be >= {lo}"
    return _with_rule(check, f">= {lo}")


def fraction(v: Any) -> str | None:
    return None if 0 <= v < 1 else "must lie in [0, 1)"


_with_rule(fraction, "in [0, 1)")


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"
    return _with_rule(check, "one of " + ", ".join(f'"{c}"' for c in choices))


def list_of(item_type: type, item_check: Callable[[Any], str | None] | None = None,
            min_len: int = 1) -> Callable[[Any], str | None]:
    """Check for a list of ``item_type`` values (each checked by ``item_check``)."""
    def check(v: Any) -> str | None:
        if len(v) < min_len:
            return f"must have at least {min_len} entries"
        for x in v:
            if not _is_type(x, item_type):
                return f"entries must be {item_type.__name__}, got {x!r}"
            if item_check and (msg := item_check(x)):
                return f"entry {x!r} {msg}"
        return None
    rule = f"entries {rule_of(item_check)}" if rule_of(item_check) else ""
    if min_len > 0:
        rule = ", ".join(r for r in (f"at least {min_len} entr{'y' if min_len == 1 else 'ies'}",
                                     rule) if r)
    return _with_rule(check, rule)


def _is_type(v: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(v, bool) and bool not in types:
        return False
    if float in types and isinstance(v, int) and not isinstance(v, bool):
        return True
    return isinstance(v, types)


def type_name(types: type | tuple[type, ...]) -> str:
    """What a config value of these types is, in words (``"a number"``)."""
    types = types if isinstance(types, tuple) else (types,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def parse_section(data: Mapping[str, Any] | None, schema: Mapping[str, Field],
                  where: str) -> dict[str, Any]:
    """Validate ``data`` against ``schema`` and return it with defaults filled in.

    ``where`` names the file and section for error messages, e.g. ``"cfg.toml [training]"``.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise InputError(f"{where}: must be a table")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise InputError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(schema)})")
    out: dict[str, Any] = {}
    for key, field in schema.items():
        if key not in data:
            if field.default is REQUIRED:
                raise InputError(f"{where}: missing required key '{key}'")
            out[key] = field.default
            continue
        val = data[key]
        if not _is_type(val, field.types):
            raise InputError(f"{where} {key}: must be {type_name(field.types)}, got {val!r}")
        if isinstance(val, float) and not math.isfinite(val):
            raise InputError(f"{where} {key}: must be finite, got {val!r}")
        if field.check is not None and (msg := field.check(val)):
            raise InputError(f"{where} {key}: {msg}, got {val!r}")
        out[key] = float(val) if (float in _as_tuple(field.types) and int not in
                                   _as_tuple(field.types) and isinstance(val, int)) else val
    return out


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML file; a missing, unreadable or malformed file raises :class:`InputError`."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"config file {path} is a folder, not a TOML file")
    if not path.exists():
        raise InputError(f"config file {path} does not exist")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file (byte {exc.start}: "
                         f"{exc.reason}); TOML files are UTF-8") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


# ----------------------------------------------------------------------------- run configs

#: Top-level layout of a run config; each package validates its own section.
TOP_LEVEL: dict[str, Field] = {
    "output_dir": Field(str, "output", doc="folder for every generated file"),
    "problem": Field(dict, REQUIRED, doc="name = problem, other keys = its options"),
    "snapshots": Field(dict, {}, doc="training/test parameters (fom)"),
    "autoencoder": Field(dict, {}, doc="architecture (autoencoder)"),
    "training": Field(dict, {}, doc="optimiser and stopping (autoencoder)"),
    "rom": Field(dict, {}, doc="online solvers (rom)"),
    "hyperreduction": Field(dict, {}, doc="sample mesh of the hyper-reduced ROMs (rom)"),
    "sweep": Field(dict, {}, doc="parameter sweep (rom.sweep)"),
}


@dataclass
class RunConfig:
    """A validated run config: the file, its output folder and its raw sections."""

    path: Path
    output_dir: Path
    sections: dict[str, dict[str, Any]]

    def where(self, section: str) -> str:
        """Location prefix for error messages, e.g. ``cfg.toml [training]``."""
        return f"{self.path} [{section}]"

    def section(self, name: str, schema: Mapping[str, Field]) -> dict[str, Any]:
        """Section ``name`` validated against ``schema``."""
        return parse_section(self.sections.get(name), schema, self.where(name))

    def check_output_dir(self) -> Path:
        """Check that ``output_dir`` is, or can be created as, a writable folder (nothing is
        created); see :func:`fom.atomic.check_output_folder`."""
        return check_output_folder(self.output_dir, f"{self.path} output_dir")


def load_config(path: str | os.PathLike) -> RunConfig:
    """Load a run config and check its top level (sections are checked by their users)."""
    path = Path(path)
    return config_from_data(path, load_toml(path))


def config_from_data(path: str | os.PathLike, raw: dict[str, Any]) -> RunConfig:
    """The :class:`RunConfig` of parsed TOML ``raw``, as if read from ``path``."""
    path = Path(path)
    top = parse_section(raw, TOP_LEVEL, str(path))
    sections = {k: v for k, v in top.items() if isinstance(v, dict)}
    return RunConfig(path, Path(top["output_dir"]), sections)
