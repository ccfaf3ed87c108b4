"""Schwartz's ten basic values: names, definitions, groups and the circumplex.

Every other module refers to values through :func:`canonical_value`, so the
spellings users type (``Self-Direction``, ``self_direction``) all resolve to one
canonical name. The definitions are Schwartz's (2012) defining goals; the
paper passes them to its ICA prompt and its judge prompts as
``{value_description}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conva_tl.errors import DataError

__all__ = [
    "VALUES",
    "GROUPS",
    "Value",
    "canonical_value",
    "get_value",
    "circumplex_angle",
    "circumplex_distance",
    "opposite_value",
    "conflicting_values",
    "group_of",
]


@dataclass(frozen=True)
class Value:
    """One basic value.

    Attributes:
        name: canonical name, lower case with a hyphen (``self-direction``).
        definition: Schwartz's defining goal, used verbatim in prompts.
        group: the higher-order group it belongs to.
        position: index on the circumplex (0..9, see :data:`VALUES`).
    """

    name: str
    definition: str
    group: str
    position: int


_DEFINITIONS: dict[str, tuple[str, str]] = {
    "self-direction": (
        "independent thought and action: choosing, creating, exploring",
        "openness to change",
    ),
    "stimulation": ("excitement, novelty, and challenge in life", "openness to change"),
    "hedonism": ("pleasure and sensuous gratification for oneself", "openness to change"),
    "achievement": (
        "personal success through demonstrating competence according to social standards",
        "self-enhancement",
    ),
    "power": (
        "social status and prestige, control or dominance over people and resources",
        "self-enhancement",
    ),
    "security": (
        "safety, harmony, and stability of society, of relationships, and of self",
        "conservation",
    ),
    "conformity": (
        "restraint of actions, inclinations, and impulses likely to upset or harm others "
        "and violate social expectations or norms",
        "conservation",
    ),
    "tradition": (
        "respect, commitment, and acceptance of the customs and ideas that traditional "
        "culture or religion provide the self",
        "conservation",
    ),
    "benevolence": (
        "preserving and enhancing the welfare of those with whom one is in frequent "
        "personal contact",
        "self-transcendence",
    ),
    "universalism": (
        "understanding, appreciation, tolerance, and protection for the welfare of all "
        "people and for nature",
        "self-transcendence",
    ),
}

#: The ten values in circumplex order: neighbours are compatible, values five
#: steps apart conflict. Hedonism shares openness to change and
#: self-enhancement; it is listed with openness, as in the paper's Fig. 5.
VALUES: tuple[str, ...] = tuple(_DEFINITIONS)

#: Higher-order groups, in circumplex order.
GROUPS: dict[str, tuple[str, ...]] = {
    "openness to change": ("self-direction", "stimulation", "hedonism"),
    "self-enhancement": ("achievement", "power"),
    "conservation": ("security", "conformity", "tradition"),
    "self-transcendence": ("benevolence", "universalism"),
}

_REGISTRY: dict[str, Value] = {
    name: Value(name, definition, group, i)
    for i, (name, (definition, group)) in enumerate(_DEFINITIONS.items())
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def canonical_value(name: str) -> str:
    """Return the canonical spelling of a value name.

    Accepts any case, and ``_`` or a space for the hyphen in ``self-direction``.

    Raises:
        DataError: the name is not one of the ten values; the message lists them.

    Example:
        >>> canonical_value("Self_Direction")
        'self-direction'
    """
    if not isinstance(name, str):
        raise DataError(f"value name must be a string, got {type(name).__name__}")
    key = _normalise(name)
    if key == "selfdirection":
        key = "self-direction"
    if key not in _REGISTRY:
        raise DataError(
            f"unknown value {name!r}; expected one of Schwartz's ten basic values: "
            + ", ".join(VALUES)
        )
    return key


def get_value(name: str) -> Value:
    """The :class:`Value` record for ``name`` (any accepted spelling)."""
    return _REGISTRY[canonical_value(name)]


def group_of(name: str) -> str:
    """The higher-order group of a value."""
    return get_value(name).group


def circumplex_angle(name: str) -> float:
    """Angle of the value on the circumplex in radians, values equally spaced."""
    return 2.0 * math.pi * get_value(name).position / len(VALUES)


def circumplex_distance(a: str, b: str) -> int:
    """Steps between two values around the circle (0..5)."""
    d = abs(get_value(a).position - get_value(b).position)
    return min(d, len(VALUES) - d)


def opposite_value(name: str) -> str:
    """The value diametrically across the circle (five steps away)."""
    return VALUES[(get_value(name).position + len(VALUES) // 2) % len(VALUES)]


def conflicting_values(name: str) -> tuple[str, ...]:
    """Values four or five steps away: the motivational conflicts of ``name``."""
    return tuple(v for v in VALUES if circumplex_distance(name, v) >= 4)
