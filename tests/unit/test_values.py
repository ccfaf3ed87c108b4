import pytest

from conva_tl.errors import DataError
from conva_tl.values import (
    GROUPS,
    VALUES,
    canonical_value,
    circumplex_distance,
    conflicting_values,
    get_value,
    opposite_value,
)


@pytest.mark.parametrize(
    "raw", ["self-direction", "Self_Direction", "self direction", " SELF-DIRECTION "]
)
def test_spellings_resolve(raw):
    assert canonical_value(raw) == "self-direction"


def test_unknown_value_lists_valid_names():
    with pytest.raises(DataError) as err:
        canonical_value("kindness")
    for v in VALUES:
        assert v in str(err.value)


def test_groups_partition_the_ten_values():
    members = [v for vs in GROUPS.values() for v in vs]
    assert sorted(members) == sorted(VALUES) and len(VALUES) == 10
    for group, vs in GROUPS.items():
        assert all(get_value(v).group == group for v in vs)


def test_circumplex_geometry():
    assert circumplex_distance("security", "security") == 0
    assert circumplex_distance("universalism", "self-direction") == 1  # the circle closes
    assert opposite_value("self-direction") == "security"
    assert opposite_value("power") == "universalism"
    assert all(opposite_value(opposite_value(v)) == v for v in VALUES)
    assert "tradition" in conflicting_values("hedonism")
