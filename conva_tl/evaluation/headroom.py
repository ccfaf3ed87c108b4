"""How far any judged steering variant got past the baselines, value by value.

The judged loop (``analyses/control_quality.py``) stores one section per blind
round: a per value x method table of mean CSR and FR. Variants differ between
rounds, and so do the question sets, so a variant is only ever compared with
the baselines judged in its own round. :func:`variant_margins` does that for
every round at once and keeps, per value, the best margin any variant reached
over the best baseline of its round (with the variant's fluency), which answers
"could *some* tried setting beat the baselines on this value?", an optimistic
ceiling because the best of many noisy variants is picked after the fact.
:func:`lift_over_base` asks the complementary question: how far does each kind of
intervention (prompting, CAA, steering) move a value's CSR from the base model's?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Method names that are baselines in the judged rounds (CAA under any coefficient).
BASELINE_PREFIXES = ("base", "ica", "caa")


def family(method: str) -> str:
    """``base``, ``ica``, ``caa`` (any coefficient) or ``steering`` (every other variant)."""
    for prefix in BASELINE_PREFIXES:
        if method.startswith(prefix):
            return prefix
    return "steering"


def is_baseline(method: str) -> bool:
    """Whether a judged method name is a baseline (Base, ICA or CAA at some coefficient)."""
    return family(method) != "steering"


def _rows_by_value(section: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """``{value: {method: table row}}`` of one judged round, without the ``all`` rows."""
    cells: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in section["table"]:
        if row["value"] != "all":
            cells.setdefault(row["value"], {})[row["method"]] = row
    return cells


def variant_margins(
    sections: Mapping[str, Mapping[str, Any]],
    *,
    min_fr: float = 0.95,
) -> list[dict[str, Any]]:
    """Per value: each round's best steering variant minus that round's best baseline.

    Args:
        sections: ``{round name: {"table": [{"value", "method", "csr", "fr", "n"}, ...]}}``
            as written by ``control_quality.py join --section``. Only rounds that judged
            Base, ICA, CAA and at least one steering variant on a value count for it.
        min_fr: a variant below this fluency does not count as a win.

    Returns:
        One dict per value (in first-seen order): ``rounds`` (rounds judging it),
        ``wins`` (rounds where some variant with FR >= ``min_fr`` beat every
        baseline), ``best_margin`` (largest CSR margin of any fluent variant over
        its round's best baseline, negative when none beat it), and the
        ``best_round`` / ``best_variant`` it came from.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, sec in sections.items():
        for value, rows in _rows_by_value(sec).items():
            fams = {m: family(m) for m in rows}
            if not {*BASELINE_PREFIXES, "steering"} <= set(fams.values()):
                continue
            base = [r["csr"] for m, r in rows.items() if fams[m] != "steering"]
            fluent = {
                m: r["csr"] for m, r in rows.items() if fams[m] == "steering" and r["fr"] >= min_fr
            }
            rec = out.setdefault(
                value,
                {"value": value, "rounds": 0, "wins": 0, "best_margin": None},
            )
            rec["rounds"] += 1
            if not fluent:
                continue
            variant, csr = max(fluent.items(), key=lambda kv: kv[1])
            margin = csr - max(base)
            rec["wins"] += margin > 0
            if rec["best_margin"] is None or margin > rec["best_margin"]:
                rec.update(best_margin=round(margin, 3), best_round=name, best_variant=variant)
    return list(out.values())


def lift_over_base(sections: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per value: mean CSR change from the base model of its round, per method family.

    Each (round, method) cell counts with its number of answers, so a family's lift is the
    answer-weighted mean of ``csr - base csr`` over every round that judged both. A value on
    which no family lifts CSR is one the model does not move on these questions, whatever
    the intervention.

    Returns:
        One dict per value: ``{"value", "ica", "caa", "steering"}``, each family a dict
        ``{"lift", "cells"}`` (absent when never judged beside the base model).
    """
    sums: dict[str, dict[str, list[float]]] = {}
    for sec in sections.values():
        for value, rows in _rows_by_value(sec).items():
            if "base" not in rows:
                continue
            base = rows["base"]["csr"]
            for method, row in rows.items():
                fam = family(method)
                if fam != "base":
                    acc = sums.setdefault(value, {}).setdefault(fam, [0.0, 0.0, 0.0])
                    acc[0] += (row["csr"] - base) * row["n"]
                    acc[1] += row["n"]
                    acc[2] += 1
    return [
        {
            "value": value,
            **{
                fam: {"lift": round(a[0] / a[1], 3), "cells": int(a[2])}
                for fam, a in sorted(fams.items())
            },
        }
        for value, fams in sums.items()
    ]


def values_with_wins(margins: Sequence[Mapping[str, Any]]) -> list[str]:
    """The values on which at least one round had a fluent variant above every baseline."""
    return [m["value"] for m in margins if m["wins"]]
