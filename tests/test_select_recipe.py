"""benchmarks/select_recipe.py: the 1D Burgers example holds one of the protocol's candidates.

Which candidate wins needs the protocol's training runs (``select_recipe.py --check``); this
test only guards against a config that drifts outside the candidates the protocol compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import select_recipe as sr  # noqa: E402

from fom.config import load_config  # noqa: E402
from fom.errors import InputError  # noqa: E402


def candidates() -> list[sr.Candidate]:
    """Every recipe the three greedy rounds can reach, whichever candidate wins a round."""
    return [third for first in sr.ROUND1 for second in sr.round2(first)
            for third in sr.round3(second)]


def test_burgers1d_recipe_is_a_protocol_candidate() -> None:
    have = sr.recipe(load_config(ROOT / "examples" / "burgers1d.toml").sections["training"])
    found = []
    for cand in candidates():
        try:
            recipe = sr.recipe({**cand.section(), "validation_every": 0})
        except InputError:  # a combination the settings refuse (e.g. smoothness + residual)
            continue
        if recipe == have:
            found.append(cand.name)
    assert found == ["b64-s4-e200+tan30-trajectory-lr1e-3-e20"]


def test_recipe_sees_a_changed_stage() -> None:
    """The comparison is not vacuous: another weight or normalization is another recipe."""
    sec = load_config(ROOT / "examples" / "burgers1d.toml").sections["training"]
    stage = dict(sec["finetune"][0])
    for key, value in [("residual_weight", 31.0), ("residual_normalization", "none"),
                       ("latent_dims", [])]:
        other = {**sec, "finetune": [{**stage, key: value}]}
        assert sr.recipe(other) != sr.recipe(sec), key


def test_tangent_candidate_names_are_unique_and_describe_the_stage() -> None:
    names = [n for n, _, _ in sr.ROUND3]
    assert len(set(names)) == len(names)
    name, what, st = sr.tangent(30.0, learning_rate=1e-3, residual_normalization="trajectory")
    assert name == "tan30-trajectory-lr1e-3-e20"
    assert "weight 30, trajectory normalization" in what and "lr 1e-3" in what
    assert (st["residual_projection"], st["snapshot_stride"], st["epochs"]) == ("tangent", 2, 20)
