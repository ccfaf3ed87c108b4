"""Best variant margins over each judged round's own baselines."""

from __future__ import annotations

from conva_tl.evaluation.headroom import (
    is_baseline,
    lift_over_base,
    values_with_wins,
    variant_margins,
)


def _row(value: str, method: str, csr: float, fr: float = 1.0) -> dict[str, object]:
    return {"value": value, "method": method, "csr": csr, "fr": fr, "n": 12.0}


def test_baselines_are_base_ica_and_caa_at_any_coefficient() -> None:
    assert all(map(is_baseline, ["base", "ica", "caa", "caa25", "caa25_shipped"]))
    assert not any(map(is_baseline, ["conva", "conva97", "shipped97", "advchat97m6"]))


def test_margins_compare_only_within_a_round_and_need_fluency() -> None:
    sections = {
        "r1": {
            "table": [
                _row("power", "base", 0.1),
                _row("power", "caa25", 0.3),
                _row("power", "conva97", 0.5),
                _row("power", "loud", 0.9, fr=0.5),  # not fluent: never counts
                _row("power", "ica", 0.2),
                _row("hedonism", "base", 0.1),
                _row("hedonism", "ica", 0.4),
                _row("hedonism", "caa", 0.0),
                _row("hedonism", "conva97", 0.2),
                _row("all", "conva97", 0.35),
            ]
        },
        # margins are over *this* round's baselines
        "r2": {
            "table": [
                _row("power", "base", 0.0),
                _row("power", "ica", 0.05),
                _row("power", "caa50", 0.0),
                _row("power", "p99", 0.3),
            ]
        },
        "r3": {
            "table": [
                _row("hedonism", "base", 0.1),
                _row("hedonism", "ica", 0.1),
                _row("hedonism", "caa", 0.1),
                _row("hedonism", "loud", 0.9, fr=0.6),
            ]
        },
        # without ICA and CAA beside it a variant's margin over base alone would flatter it
        "base_only": {"table": [_row("power", "base", 0.0), _row("power", "p99", 0.9)]},
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
        "r1": {
            "table": [
                {"value": "power", "method": "base", "csr": 0.2, "fr": 1.0, "n": 12.0},
                {"value": "power", "method": "ica", "csr": 0.5, "fr": 1.0, "n": 12.0},
                {"value": "power", "method": "conva97", "csr": 0.1, "fr": 1.0, "n": 12.0},
                {"value": "power", "method": "p99", "csr": 0.4, "fr": 1.0, "n": 12.0},
            ]
        },
        "r2": {
            "table": [
                {"value": "power", "method": "base", "csr": 0.5, "fr": 1.0, "n": 36.0},
                {"value": "power", "method": "conva97", "csr": 0.6, "fr": 1.0, "n": 36.0},
            ]
        },
        "no_base": {
            "table": [{"value": "power", "method": "ica", "csr": 1.0, "fr": 1.0, "n": 9.0}]
        },
    }
    (got,) = lift_over_base(sections)
    assert got["value"] == "power" and "caa" not in got
    assert got["ica"] == {"lift": 0.3, "cells": 1}
    # (-0.1 * 12 + 0.2 * 12 + 0.1 * 36) / 60
    assert got["steering"] == {"lift": 0.08, "cells": 3}
