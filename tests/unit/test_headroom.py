"""Best variant margins over each judged round's own baselines."""

from __future__ import annotations

import pytest

from conva_tl.evaluation.headroom import (
    bar_requirement,
    is_baseline,
    lift_over_base,
    values_with_wins,
    variant_margins,
)


def _cells(
    value: str, csr: dict[str, float], *, fr: dict[str, float] | None = None, n: float = 12.0
) -> list[dict[str, object]]:
    """Table rows of one value in one round: CSR per method, FR 1 unless given."""
    fr = fr or {}
    return [
        {"value": value, "method": m, "csr": c, "fr": fr.get(m, 1.0), "n": n}
        for m, c in csr.items()
    ]


def test_baselines_are_base_ica_and_caa_at_any_coefficient() -> None:
    assert all(map(is_baseline, ["base", "ica", "caa", "caa25", "caa25_shipped"]))
    assert not any(map(is_baseline, ["conva", "conva97", "shipped97", "advchat97m6"]))


def test_margins_compare_only_within_a_round_and_need_fluency() -> None:
    r1 = _cells(
        "power",
        {"base": 0.1, "caa25": 0.3, "conva97": 0.5, "loud": 0.9, "ica": 0.2},
        fr={"loud": 0.5},  # not fluent: never counts
    )
    r1 += _cells("hedonism", {"base": 0.1, "ica": 0.4, "caa": 0.0, "conva97": 0.2})
    r1 += _cells("all", {"conva97": 0.35})
    sections = {
        "r1": {"table": r1},
        # margins are over *this* round's baselines
        "r2": {"table": _cells("power", {"base": 0.0, "ica": 0.05, "caa50": 0.0, "p99": 0.3})},
        "r3": {
            "table": _cells(
                "hedonism", {"base": 0.1, "ica": 0.1, "caa": 0.1, "loud": 0.9}, fr={"loud": 0.6}
            )
        },
        # without ICA and CAA beside it a variant's margin over base alone would flatter it
        "base_only": {"table": _cells("power", {"base": 0.0, "p99": 0.9})},
    }
    got = {m["value"]: m for m in variant_margins(sections)}
    assert set(got) == {"power", "hedonism"}
    assert got["power"]["rounds"] == 2 and got["power"]["wins"] == 2
    assert got["power"]["best_margin"] == 0.25
    assert got["power"]["best_variant"] == "p99" and got["power"]["best_round"] == "r2"
    assert got["hedonism"]["rounds"] == 2 and got["hedonism"]["wins"] == 0
    assert got["hedonism"]["best_margin"] == -0.2
    assert values_with_wins(list(got.values())) == ["power"]
    relaxed = {m["value"]: m for m in variant_margins(sections, min_fr=0.5)}
    assert relaxed["hedonism"]["wins"] == 1 and relaxed["hedonism"]["best_variant"] == "loud"


def test_lift_over_base_weights_cells_by_answers_and_skips_rounds_without_base() -> None:
    sections = {
        "r1": {"table": _cells("power", {"base": 0.2, "ica": 0.5, "conva97": 0.1, "p99": 0.4})},
        "r2": {"table": _cells("power", {"base": 0.5, "conva97": 0.6}, n=36.0)},
        "no_base": {"table": _cells("power", {"ica": 1.0}, n=9.0)},
    }
    (got,) = lift_over_base(sections)
    assert got["value"] == "power" and "caa" not in got
    assert got["ica"] == {"lift": 0.3, "cells": 1}
    # (-0.1 * 12 + 0.2 * 12 + 0.1 * 36) / 60
    assert got["steering"] == {"lift": 0.08, "cells": 3}


def test_bar_requirement_asks_the_movers_to_carry_the_overall_bar() -> None:
    table = {
        "power": {"base": 0.1, "ica": 0.3, "caa": 0.1, "conva": 0.8, "conva_fr": 0.9},
        "hedonism": {"base": 0.3, "ica": 0.3, "caa": 0.2, "conva": 0.1},
        "security": {"base": 0.2, "ica": 0.3, "caa": 0.3, "conva": 0.2},
    }
    got = bar_requirement(table, target="conva")
    assert got["best_baseline"] == "ica" and got["best_baseline_csr"] == 0.3
    assert got["needed_csr"] == 0.45 and got["target_csr"] == round(1.1 / 3, 3)
    assert got["movers"] == ["power"] and got["movers_csr"] == 0.8
    # 0.45 * 3 = 1.35 in all; the rest gives 0.1 + 0.2 as they are (a need above 1: out of
    # reach), 0.3 + 0.3 if each reached its best baseline
    assert got["movers_need"] == 1.05
    assert got["movers_need_if_rest_at_best_baseline"] == 0.75
    assert bar_requirement(table, target="conva", ratio=1.0)["movers_need"] == 0.6


def test_bar_requirement_refuses_a_table_without_the_target_or_baselines() -> None:
    with pytest.raises(ValueError, match="hedonism"):
        bar_requirement(
            {"power": {"base": 0.1, "conva": 0.2}, "hedonism": {"base": 0.1}}, target="conva"
        )
    with pytest.raises(ValueError, match="baseline"):
        bar_requirement({"power": {"conva": 0.2}}, target="conva")
