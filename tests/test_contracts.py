"""The documentation is true to the code: the ``Problem`` contract of ``docs/CONTRACTS.md`` is
what the ``Problem`` class offers and what the code that drives a problem uses, and the docs
stand alone (no reference to files a user's clone does not have)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fom.problem import Problem

ROOT = Path(__file__).resolve().parents[1]

#: The code that receives a problem object: the online solvers, sweeps, reports, catalog and
#: CLI (rom/), and the FOM code they drive with it (fom.solve, the steppers, the sparse
#: Newton, the snapshot files).
DRIVERS = [*sorted((ROOT / "rom").glob("*.py")),
           *(ROOT / "fom" / name for name in ("solve.py", "steppers.py", "sparse_newton.py",
                                              "snapshots.py"))]
#: Names the code gives a problem object.
PROBLEM_NAMES = {"problem", "prob"}


def documented_problem_names() -> list[str]:
    """The first column of the table between the problem-contract markers of CONTRACTS.md."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    m = re.search(r"<!-- problem-contract.*?-->\n(.*?)<!-- /problem-contract -->", text, re.S)
    assert m, "docs/CONTRACTS.md lost its problem-contract markers"
    names = []
    for line in m.group(1).splitlines():
        cell = line.split("|")[1].strip() if line.startswith("|") else ""
        if cell.startswith("`"):
            names.append(re.match(r"`(\w+)", cell).group(1))
    return names


def problem_interface() -> set[str]:
    """The public names of the ``Problem`` class: methods, properties, annotated attributes."""
    names = {n for n in dir(Problem) if not n.startswith("_")}
    return names | {n for n in Problem.__annotations__ if not n.startswith("_")}


def _is_problem(node: ast.expr) -> bool:
    """``problem``, ``prob``, ``self.problem``, ``plan.problem``, ..."""
    if isinstance(node, ast.Name):
        return node.id in PROBLEM_NAMES
    return isinstance(node, ast.Attribute) and node.attr == "problem"


def used_on_problems(path: Path) -> set[str]:
    """Attributes read from a problem object in a source file (``problem.x`` and
    ``getattr(problem, "x", ...)``)."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) \
                and _is_problem(node.value):
            used.add(node.attr)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
              and _is_problem(node.args[0]) and isinstance(node.args[1], ast.Constant)):
            used.add(node.args[1].value)
    return used


def test_documented_contract_is_the_problem_class():
    documented = documented_problem_names()
    assert len(documented) == len(set(documented)), "a name is listed twice"
    assert set(documented) == problem_interface(), (
        f"documented but not on Problem: {sorted(set(documented) - problem_interface())}; "
        f"on Problem but not documented: {sorted(problem_interface() - set(documented))}")


def test_abstract_methods_are_marked_abstract_in_the_table():
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    marked = set(re.findall(r"^\| `(\w+)[^|]*\| abstract \|", text, re.M))
    assert marked == set(Problem.__abstractmethods__)


@pytest.mark.parametrize("path", DRIVERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_uses_only_the_documented_contract(path):
    extra = used_on_problems(path) - set(documented_problem_names())
    assert not extra, f"{path.relative_to(ROOT)} uses {sorted(extra)} on a problem, which " \
                      f"docs/CONTRACTS.md does not list"


def test_the_scan_sees_what_the_rom_solver_uses():
    """The scan is not vacuous: it finds the calls the LSPG driver makes."""
    used = used_on_problems(ROOT / "rom" / "projection.py")
    assert {"velocity", "jacobian", "jacobian_structure", "velocity_jacobian_into",
            "initial_state", "check_mu", "n_dofs"} <= used

SKIP_DIRS = {".git", ".venv", "output", "build", "dist", "__pycache__", ".pytest_cache",
             ".ruff_cache"}


def test_docs_and_code_never_point_outside_the_repository():
    internal = ("design" + ".md", ".." + "/shared")
    hits = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if (not path.is_file() or set(rel.parts) & SKIP_DIRS or rel.parts[0].endswith(
                ".egg-info") or path.suffix not in (".py", ".md", ".toml", ".sbatch", ".txt")):
            continue
        text = path.read_text(errors="replace")
        hits += [f"{rel}: {w}" for w in internal if w in text]
    assert not hits


def test_docs_link_to_files_that_exist():
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
