"""The gate-threshold sweep (paper Eq. 5, Appx. I): share gated open and KL cost per g0.

Needs no generation: a gate (:class:`conva_tl.gate.ActivationGate`) decides
per prompt before any layer is steered, so with the gate closed the output is
the base model's and KL(g0) is the ungated KL of the prompts whose score
passes g0. One pass with the gate held open (:func:`conva_tl.analysis.measures.kl_to_base`)
gives the scores and that KL for every g0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from conva_tl.analysis.measures import kl_to_base
from conva_tl.errors import ConvaError
from conva_tl.gate import ActivationGate
from conva_tl.methods import ConVA
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors

__all__ = ["GateSweep", "gate_sweep"]


@dataclass
class GateSweep:
    """:func:`gate_sweep` output: ``table`` per value x g0, ``scores`` per prompt, ``auroc`` per value x set."""

    table: pd.DataFrame
    scores: pd.DataFrame
    auroc: pd.DataFrame


def gate_sweep(
    model: HookedModel,
    vectors: ValueVectors,
    gate: ActivationGate,
    thresholds: Sequence[float],
    *,
    prompt_sets: Mapping[str, Sequence[str]],
    positive_set: str = "value",
    p0: float = 0.9,
    batch_size: int = 8,
) -> GateSweep:
    """Share of prompts gated open and KL(base || steered) for each gate threshold g0.

    One steered pass per prompt set with an always-open copy of the gate records
    each prompt's score and its ungated KL; at threshold g0 a prompt is steered
    iff its score > g0, and a closed prompt's output is exactly the base
    model's (the gate decides before the first control layer), so
    ``kl(g0) = mean(kl_i * [score_i > g0])``.

    Args:
        vectors / gate: the value's probes and its gate.
        thresholds: g0 values.
        prompt_sets: named lists of chat prompts, e.g. ``{"value": eval questions,
            "unrelated": ..., "mc": ...}``.
        positive_set: the set whose prompts should open the gate (for AUROC).
        p0: ConVA target probability.
    """
    if positive_set not in prompt_sets:
        raise ConvaError(f"positive_set {positive_set!r} is not one of {list(prompt_sets)}")
    method = ConVA(
        vectors, p0=p0, gate=gate.with_threshold(-1.0)
    )  # scores are in (0, 1): always open
    per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    for name, prompts in prompt_sets.items():
        kl, scores = kl_to_base(model, list(prompts), method, batch_size=batch_size)
        if scores is None:  # pragma: no cover - an ActivationGate always records scores
            raise ConvaError("the gate recorded no scores")
        per[name] = (kl.numpy(), scores.numpy())
        rows += [
            {"value": vectors.value, "set": name, "prompt": p, "score": float(s), "kl": float(k)}
            for p, s, k in zip(prompts, scores.tolist(), kl.tolist(), strict=True)
        ]
    table = []
    for g0 in thresholds:
        row: dict[str, Any] = {"value": vectors.value, "g0": float(g0)}
        for name, (kl_np, s_np) in per.items():
            opened = s_np > g0
            row[f"open_{name}"] = float(opened.mean())
            row[f"kl_{name}"] = float((kl_np * opened).mean())
        table.append(row)
    pos = per[positive_set][1]
    auroc = [
        {
            "value": vectors.value,
            "negatives": name,
            "auroc": float(
                roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(s))], np.r_[pos, s])
            ),
        }
        for name, (_, s) in per.items()
        if name != positive_set
    ]
    return GateSweep(pd.DataFrame(table), pd.DataFrame(rows), pd.DataFrame(auroc))
