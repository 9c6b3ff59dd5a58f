"""Property tests (hypothesis): parsers of user input raise SnnbenchError or nothing, and the
results store holds exactly its committed chunks whatever happens mid-transaction."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snnbench.config import coerce, format_eps, parse_assignment, parse_eps
from snnbench.defenses import DEFENSES
from snnbench.defenses.compose import parse_defense
from snnbench.errors import SnnbenchError
from snnbench.recipe import parse_recipe, parse_recipe_text
from snnbench.store import Chunk, ResultStore

SMALL = settings(max_examples=50, deadline=None)
GREY_LEVELS = 255


def only_snnbench_errors(fn, *args):
    """``fn(*args)``, or None when it refused with a SnnbenchError; anything else fails."""
    try:
        return fn(*args)
    except SnnbenchError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return None


# ------------------------------------------------------------------------------------- eps


@SMALL
@given(st.integers(0, GREY_LEVELS))
def test_eps_grey_levels_round_trip(levels):
    text = f"{levels}/{GREY_LEVELS}"
    assert parse_eps(text) == levels / GREY_LEVELS
    assert format_eps(parse_eps(text)) == text


@SMALL
@given(st.floats(0, 1))
def test_eps_numbers_round_trip(eps):
    assert parse_eps(format_eps(eps)) == pytest.approx(eps, rel=1e-5, abs=1e-9)
    assert parse_eps(str(eps)) == eps


@SMALL
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0 <= v <= 1),
        st.integers().filter(lambda v: v not in (0, 1)),
    )
)
def test_eps_out_of_range_is_refused(value):
    for given_value in (value, str(value)):
        with pytest.raises(SnnbenchError):
            parse_eps(given_value)


@SMALL
@given(st.text(max_size=30))
def test_eps_garbage_is_refused_or_in_range(text):
    value = only_snnbench_errors(parse_eps, text)
    assert value is None or 0 <= value <= 1


# ------------------------------------------------------------------------------------- defences


def _by_slot(slot: str) -> list[str]:
    return [n for n in DEFENSES.names() if DEFENSES.get(n).slot == slot]


@st.composite
def valid_defenses(draw) -> list[str]:
    """At most one member per exclusive slot, any loss members, in a random order."""
    members = []
    for slot in ("neuron", "gate", "generator"):
        choice = draw(st.sampled_from([None, *_by_slot(slot)]))
        members += [choice] if choice else []
    members += draw(st.lists(st.sampled_from(_by_slot("loss")), unique=True))
    return draw(st.permutations(members)) if members else ["vanilla"]


@SMALL
@given(valid_defenses(), st.sampled_from([str, str.upper]))
def test_valid_defense_combinations_parse_to_a_canonical_order(members, case):
    parsed = parse_defense(case("+".join(members)))
    assert sorted(parsed) == sorted(members)
    assert parse_defense("+".join(reversed(parsed))) == parsed


@SMALL
@given(
    st.one_of(
        st.text(max_size=20),
        st.lists(st.sampled_from([*DEFENSES.names(), "", " ", "tgp", "+"]), max_size=4).map(
            "+".join
        ),
    )
)
def test_defense_garbage_is_refused_with_snnbench_errors_only(text):
    parsed = only_snnbench_errors(parse_defense, text)
    assert parsed is None or all(name in DEFENSES for name in parsed)


# ------------------------------------------------------------------------------------- recipes

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["8/255", "digits", "vanilla", "tgo"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
recipe_keys = st.sampled_from(
    [
        "name",
        "dataset",
        "eps",
        "norm",
        "attacks",
        "n",
        "k_eval",
        "seed",
        "train",
        "models",
        "layouts",
        "arch",
        "timesteps",
        "track",
        "eot",
        "epochs",
        "defense",
        "settings",
        "lr",
        "batch_size",
    ]
)
model_tables = st.dictionaries(recipe_keys, toml_values, max_size=4)
recipes = st.fixed_dictionaries(
    {"dataset": st.sampled_from(["digits", "cifar10", 3])},
    optional={
        "models": st.lists(st.one_of(model_tables, toml_values), max_size=3),
        "train": st.one_of(st.dictionaries(recipe_keys, toml_values, max_size=3), toml_values),
        "eps": toml_values,
        "seed": toml_values,
        "attacks": toml_values,
        "k_eval": toml_values,
    },
)


@SMALL
@given(st.one_of(recipes, st.dictionaries(recipe_keys, toml_values, max_size=5), toml_values))
def test_recipe_dicts_parse_or_raise_snnbench_errors(data):
    only_snnbench_errors(parse_recipe, data, "fuzz.toml")


VALID = 'dataset = "digits"\nseed = 0\n[train]\nepochs = 2\n[[models]]\ndefense = "vanilla"\n'


@SMALL
@given(
    st.one_of(
        st.text(max_size=80),
        st.tuples(st.integers(0, len(VALID)), st.text(max_size=10)).map(
            lambda cut: VALID[: cut[0]] + cut[1] + VALID[cut[0] :]
        ),
    )
)
def test_recipe_text_parses_or_raises_snnbench_errors(text):
    only_snnbench_errors(parse_recipe_text, text, "fuzz.toml")


# ------------------------------------------------------------------------------------- --set


@SMALL
@given(st.text(max_size=20))
def test_set_assignments_parse_or_raise(text):
    parsed = only_snnbench_errors(parse_assignment, text)
    if parsed is not None:
        key, value = parsed
        assert key and key == key.strip() and value == value.strip()


@SMALL
@given(st.sampled_from([0.5, 3, True, "triangle"]), st.one_of(toml_scalars, st.text(max_size=10)))
def test_coerce_gives_the_default_type_or_a_snnbench_error(default, value):
    typed = only_snnbench_errors(coerce, "neuron.key", value, default)
    assert typed is None or type(typed) is type(default)


# ------------------------------------------------------------------------------------- store


class Boom(Exception):
    """A failure inside a transaction."""


ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "claim", "release", "card", "fail", "abandon", "reopen"]),
        st.integers(0, 4),
    ),
    max_size=25,
)


def _chunk(index: int, env: dict | None = None) -> Chunk:
    return Chunk(
        index, np.array([1, 0, 1], np.uint8), np.array([1, 0, 0], np.uint8), 1, seed=index, env=env
    )


@SMALL
@given(ops)
def test_store_holds_exactly_the_committed_chunks(sequence):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.sqlite"
        store = ResultStore(path)
        chunks, cards = set(), set()
        for op, i in sequence:
            if op == "put":
                store.put_chunk("m", "k", _chunk(i))
                chunks.add(i)
            elif op == "claim":
                assert store.claim("m", "k", i) == (i not in chunks)
            elif op == "release":
                store.release("m", "k", i)
            elif op == "card":
                store.put_card("m", f"k{i}", {"index": i})
                cards.add(f"k{i}")
            elif op == "fail":  # an error inside put_chunk's transaction: rolled back
                with pytest.raises(TypeError):
                    store.put_chunk("m", "k", _chunk(i, env={"bad": object()}))
            elif op == "abandon":  # a process killed between its write and its commit
                raw = sqlite3.connect(path, isolation_level=None)
                raw.execute("BEGIN IMMEDIATE")
                raw.execute(
                    "INSERT OR REPLACE INTO chunks SELECT model_sha, attack_key, ?, n, "
                    "k_eval, clean, adv, seconds, grad_evals, batch_size, seed, env, "
                    "created, adv_select, origin FROM chunks LIMIT 1",
                    (i + 100,),
                )
                raw.close()
            else:
                store.close()
                store = ResultStore(path)
        store.close()
        with ResultStore(path) as again:
            assert again.stored_chunks("m", "k") == chunks
            assert {c.index for c in again.chunks("m", "k")} == chunks
            assert {f"k{c['index']}" for c in again.cards()} == cards
