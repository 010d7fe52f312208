"""Targets (SPEC section 4): every form, every error, and the round trip to text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.targets import Kind, Role, Target, Topology, parse_target

FULL = Topology(workers=4, mules=3, spoolers=1, farms={"heavy": (1, 2), "light": (3,)})
BARE = Topology(workers=2)   # the defaults of a config: no mules, farms or spooler


@pytest.mark.parametrize("text, expected", [
    ("worker", Target(Kind.WORKER)),
    ("worker0", Target(Kind.WORKER)),
    ("", Target(Kind.WORKER)),
    ("worker1", Target(Kind.WORKER_N, 1)),
    ("worker4", Target(Kind.WORKER_N, 4)),
    ("workers", Target(Kind.WORKERS)),
    ("active-workers", Target(Kind.ACTIVE_WORKERS)),
    ("mule", Target(Kind.MULE)),
    ("mule0", Target(Kind.MULE)),
    ("mule3", Target(Kind.MULE_N, 3)),
    ("mules", Target(Kind.MULES)),
    ("farm_heavy", Target(Kind.FARM, 1)),
    ("farm_light", Target(Kind.FARM, 2)),
    ("farm1", Target(Kind.FARM, 1)),
    ("farm2", Target(Kind.FARM, 2)),
    ("spooler", Target(Kind.SPOOLER)),
])
def test_every_valid_form_parses(text, expected):
    assert parse_target(text, FULL) == expected


def test_farm_name_and_number_are_the_same_target():
    # SPEC: farmN, N = 1-based order in the config.
    assert parse_target("farm_heavy", FULL) == parse_target("farm1", FULL)
    assert parse_target("farm_light", FULL) == parse_target("farm2", FULL)


@pytest.mark.parametrize("text", [
    "Worker", "WORKERS", " worker", "worker ", "workers1", "worker-1", "worker01",
    "worker1.0", "mule_1", "farm", "farm_", "farm0", "spoolers", "master", "cluster",
    "subscribed", "all", "active_workers", "worker\n", "wörker",
])
def test_unknown_targets_are_errors_naming_the_value_and_the_valid_forms(text):
    with pytest.raises(ValueError) as err:
        parse_target(text, FULL)
    message = str(err.value)
    assert f"'{text}'" in message
    assert "workers" in message and "farm_NAME" in message      # the valid forms


def test_worker_n_beyond_workers_is_an_error_naming_the_value():
    with pytest.raises(ValueError) as err:
        parse_target("worker3", BARE)
    assert "worker3" in str(err.value)
    assert "2" in str(err.value)                                 # how many there are
    assert parse_target("worker2", BARE) == Target(Kind.WORKER_N, 2)


@pytest.mark.parametrize("text", ["mule", "mule0", "mules", "mule1"])
def test_mule_targets_without_mules_are_errors(text):
    with pytest.raises(ValueError, match="mule") as err:
        parse_target(text, BARE)
    assert f"'{text}'" in str(err.value)


def test_mule_n_beyond_mules_is_an_error():
    with pytest.raises(ValueError, match="mule4"):
        parse_target("mule4", FULL)


def test_spooler_without_a_spooler_is_an_error():
    with pytest.raises(ValueError, match="spooler") as err:
        parse_target("spooler", BARE)
    assert "'spooler'" in str(err.value)


@pytest.mark.parametrize("text", ["farm_nope", "farm3", "farm_heavy2"])
def test_farms_that_do_not_exist_are_errors_naming_the_value(text):
    with pytest.raises(ValueError) as err:
        parse_target(text, FULL)
    assert text in str(err.value)


def test_farm_targets_without_farms_are_errors():
    for text in ("farm1", "farm_heavy"):
        with pytest.raises(ValueError, match=text):
            parse_target(text, BARE)


@pytest.mark.parametrize("value", [None, 1, 0, True, b"worker", ["worker"], 1.5])
def test_a_non_string_target_is_a_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match="target") as err:
        parse_target(value, FULL)
    assert type(value).__name__ in str(err.value)


@pytest.mark.parametrize("text", ["worker", "workers", "active-workers", "worker3", "mule",
                                  "mules", "mule2", "farm_heavy", "farm_light", "spooler"])
def test_text_gives_back_the_canonical_form(text):
    assert parse_target(text, FULL).text(FULL) == text


def test_aliases_have_one_canonical_text():
    for alias in ("", "worker0"):
        assert parse_target(alias, FULL).text(FULL) == "worker"
    assert parse_target("mule0", FULL).text(FULL) == "mule"
    assert parse_target("farm2", FULL).text(FULL) == "farm_light"


# -- slots -----------------------------------------------------------------------------------

def test_slots_number_master_then_workers_mules_spoolers():
    topo = FULL
    assert topo.slots == 1 + 4 + 3 + 1
    assert list(topo.worker_slots()) == [1, 2, 3, 4]
    assert list(topo.mule_slots()) == [5, 6, 7]
    assert list(topo.spooler_slots()) == [8]
    for slot in range(topo.slots):
        role, ident = topo.role_of(slot)
        assert topo.slot(role, ident) == slot
    assert topo.role_of(0) == (Role.MASTER, 0)
    assert [topo.describe(s) for s in (0, 2, 6, 8)] == ["master", "worker 2", "mule 2",
                                                         "spooler"]


def test_members_of_each_target():
    topo = FULL
    assert topo.members(parse_target("worker", topo)) == [1, 2, 3, 4]
    assert topo.members(parse_target("worker3", topo)) == [3]
    assert topo.members(parse_target("mule2", topo)) == [6]
    assert topo.members(parse_target("farm_heavy", topo)) == [5, 6]
    assert topo.members(parse_target("farm2", topo)) == [7]
    assert topo.members(parse_target("spooler", topo)) == [8]


# -- properties ------------------------------------------------------------------------------

FARM_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789-", min_size=1,
                     max_size=8)


@st.composite
def topologies(draw):
    mules = draw(st.integers(0, 4))
    names = draw(st.lists(FARM_NAMES, unique=True, max_size=3)) if mules else []
    farms = {n: tuple(draw(st.lists(st.integers(1, mules), min_size=1, max_size=mules)))
             for n in names}
    return Topology(workers=draw(st.integers(1, 6)), mules=mules,
                    spoolers=draw(st.integers(0, 2)), farms=farms)


TARGETISH = st.one_of(
    st.text(max_size=20),
    st.builds(lambda p, n: f"{p}{n}",
              st.sampled_from(["worker", "mule", "farm", "farm_", "workers", "spooler",
                               "mules", "active-workers", ""]),
              st.one_of(st.just(""), st.integers(-3, 10**6).map(str), FARM_NAMES)),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(TARGETISH, topologies())
def test_parse_target_raises_only_value_error_and_round_trips(text, topo):
    try:
        target = parse_target(text, topo)
    except ValueError as exc:
        assert str(exc)
        return
    assert parse_target(target.text(topo), topo) == target
    members = topo.members(target)
    assert members, "a target that parses reaches at least one process"
    assert all(1 <= slot < topo.slots for slot in members)
