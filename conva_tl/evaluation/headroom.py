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
:func:`bar_requirement` turns a per value table into what the project's overall bar
(ConVA's mean CSR at least ``ratio`` times the best baseline's) asks of the values
that steering does move, given the ones it does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
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


def bar_requirement(
    table: Mapping[str, Mapping[str, float]],
    *,
    target: str,
    ratio: float = 1.5,
) -> dict[str, Any]:
    """What an overall CSR of ``ratio`` x the best baseline asks of the values ``target`` moves.

    Args:
        table: ``{value: {method: CSR}}`` with the same questions per value, so that a
            method's overall CSR is the plain mean over values. Methods other than the
            baselines and ``target`` (e.g. ``conva_fr``) are ignored.
        target: the steering method under test.
        ratio: the bar, as a multiple of the best baseline's overall CSR.

    Returns:
        ``ratio``, ``target``, ``best_baseline`` and its ``best_baseline_csr``, the ``needed_csr``
        (``ratio`` times it) and ``target_csr``; ``movers`` (values where ``target`` is
        above every baseline) with their mean CSR now (``movers_csr``); and the mean CSR
        the movers would need for the bar, with the other values as they are
        (``movers_need``) and if each of them rose to its own best baseline
        (``movers_need_if_rest_at_best_baseline``). A need above 1 cannot be met.
    """
    if not table:
        raise ValueError("bar_requirement: the table is empty; pass {value: {method: csr}}")
    values = list(table)
    baselines = sorted({m for cells in table.values() for m in cells if is_baseline(m)})
    missing = [v for v in values if any(m not in table[v] for m in [*baselines, target])]
    if missing or not baselines:
        raise ValueError(
            f"bar_requirement: no {target!r} or baseline CSR for {missing}; "
            "every value needs the target and the same baselines"
        )
    overall = {m: fmean(table[v][m] for v in values) for m in baselines}
    best = max(overall, key=lambda m: overall[m])
    needed = ratio * overall[best]
    best_of = {v: max(table[v][m] for m in baselines) for v in values}
    movers = [v for v in values if table[v][target] > best_of[v]]
    rest = [v for v in values if v not in movers]
    out: dict[str, Any] = {
        "ratio": ratio,
        "target": target,
        "best_baseline": best,
        "best_baseline_csr": round(overall[best], 3),
        "needed_csr": round(needed, 3),
        "target_csr": round(fmean(table[v][target] for v in values), 3),
        "movers": movers,
        "movers_csr": round(fmean(table[v][target] for v in movers), 3) if movers else None,
    }
    if movers:
        total = needed * len(values)
        as_is = sum(table[v][target] for v in rest)
        lifted = sum(best_of[v] for v in rest)
        out["movers_need"] = round((total - as_is) / len(movers), 3)
        out["movers_need_if_rest_at_best_baseline"] = round((total - lifted) / len(movers), 3)
    return out
