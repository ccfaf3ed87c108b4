"""General capability under control (paper Sec. 4.3, Tab. 5, Fig. 3), judge-free.

Three measures, all from the next-token distribution at the answer start (the
last position of a chat prompt) of a forward pass under a method's hooks:

* :func:`mc_accuracy`: multiple-choice accuracy on MMLU-format questions
  (:func:`conva_tl.datasets.load_mc`). The prompt is :data:`MC_TEMPLATE` as the
  user turn; the prediction is the letter whose token scores highest, each
  letter scored by the best of its single-token spellings (``"A"`` and ``" A"``:
  the answer may start with or without a space depending on the template).
* gate scores (Fig. 3): read from the same passes, the scores the gate gave
  value-related prompts (the value's held-out eval questions) and unrelated
  ones (the MC prompts and the shipped unrelated prompts; note the shipped
  unrelated prompts are the gate's own training negatives, the MC prompts are
  not).
* :func:`next_token_kl`: mean KL(base || steered) of that distribution over a
  prompt set: near 0 where the gate stays closed, larger without the gate.

The forward passes build a :class:`~conva_tl.generate.GenerationContext`
(``managed=True, prompt_pass=True``) and attach ``method.fwd_hooks`` with
:func:`conva_tl.hooks.hooked`, exactly as the prompt pass of generation does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from conva_tl.datasets import MCQuestion, load_mc, load_questions, load_unrelated
from conva_tl.errors import ConvaError
from conva_tl.gate import ActivationGate
from conva_tl.generate import GenerationContext
from conva_tl.hooks import hooked
from conva_tl.methods import Base
from conva_tl.model_protocol import HookedModel
from conva_tl.pipeline import DEFAULT_P0, make_method
from conva_tl.probes import ValueVectors
from conva_tl.prompts import format_chat
from conva_tl.report import Report
from conva_tl.tokens import iter_batches, token_positions
from conva_tl.values import canonical_value

__all__ = [
    "MC_TEMPLATE",
    "LETTERS",
    "mc_prompt",
    "letter_token_ids",
    "answer_start_logprobs",
    "mc_accuracy",
    "next_token_kl",
    "CapabilityResult",
    "run_capability",
    "format_capability",
]

logger = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D")

#: The multiple-choice user message (MMLU's zero-shot wording, asking for the letter only).
MC_TEMPLATE = (
    "The following is a multiple choice question about {subject}. "
    "Reply with the letter of the correct answer only.\n\n"
    "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:"
)


def mc_prompt(q: MCQuestion, template: str = MC_TEMPLATE) -> str:
    """The user message for one multiple-choice question."""
    return template.format(
        subject=q.subject.replace("_", " "),
        question=q.question,
        **dict(zip(LETTERS, q.choices, strict=True)),
    )


def letter_token_ids(tokenizer: Any) -> list[list[int]]:
    """Per letter, the ids of its single-token spellings (``"A"``, ``" A"``)."""
    out = []
    for letter in LETTERS:
        ids = {tuple(tokenizer.encode(s, add_special_tokens=False)) for s in (letter, " " + letter)}
        single = sorted(i[0] for i in ids if len(i) == 1)
        if not single:
            raise ConvaError(f"the tokenizer has no single token for {letter!r} or ' {letter}'")
        out.append(single)
    return out


@torch.inference_mode()
def answer_start_logprobs(
    model: HookedModel, questions: Sequence[str], method: Any = None, *, batch_size: int = 8
) -> tuple[Float[Tensor, "batch d_vocab"], Float[Tensor, " batch"] | None]:
    """Log-probs of the first answer token for chat questions under ``method``'s hooks.

    Returns:
        ``(logprobs, gate_scores)`` in input order, on CPU; ``gate_scores`` is
        ``None`` unless the method's gate recorded scores.
    """
    method = method if method is not None else Base()
    texts = []
    for q in questions:
        user, system = method.rewrite_prompt(q)
        texts.append(format_chat(model.tokenizer, user, system=system))
    out = torch.empty(len(texts), int(model.cfg.d_vocab), dtype=torch.float32)
    gate = torch.full((len(texts),), float("nan"))
    seen_gate = False
    for idx, cpu_batch in iter_batches(model.tokenizer, texts, batch_size):
        chunk = [texts[i] for i in idx]
        batch = cpu_batch.to(model.cfg.device)
        mask = batch.attention_mask
        ctx = GenerationContext(
            token_mask=mask.bool(),
            positions=token_positions(mask),
            prompt_pass=True,
            step=0,
            managed=True,
            texts=chunk,
        )
        with hooked(model, method.fwd_hooks(model, ctx)):
            logits = model(batch.input_ids, attention_mask=mask, return_type="logits")
        out[torch.tensor(idx)] = torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu()
        if "gate_score" in ctx.state:
            gate[torch.tensor(idx)] = ctx.state["gate_score"].float().cpu()
            seen_gate = True
    return out, (gate if seen_gate else None)


def next_token_kl(
    base: Float[Tensor, "batch d_vocab"], steered: Float[Tensor, "batch d_vocab"]
) -> Float[Tensor, " batch"]:
    """KL(base || steered) per row, from log-probs (nats, clamped at 0)."""
    b, s = base.double(), steered.double()
    return (b.exp() * (b - s)).sum(-1).clamp_min(0.0).float()


def _mc_scores(
    logprobs: Float[Tensor, "batch d_vocab"], letter_ids: list[list[int]]
) -> Float[Tensor, "batch 4"]:
    return torch.stack([logprobs[:, ids].max(dim=-1).values for ids in letter_ids], dim=-1)


def mc_accuracy(
    model: HookedModel, questions: Sequence[MCQuestion], method: Any = None, *, batch_size: int = 8
) -> dict[str, Any]:
    """Accuracy of one method on multiple-choice questions.

    Returns:
        ``{"n", "accuracy", "p_correct"}`` (``p_correct``: mean probability of the
        right letter renormalised over the four), plus ``"logprobs"`` and
        ``"gate_scores"`` of the pass for reuse.
    """
    if not questions:
        raise ConvaError("no multiple-choice questions given")
    logprobs, gate = answer_start_logprobs(
        model, [mc_prompt(q) for q in questions], method, batch_size=batch_size
    )
    scores = _mc_scores(logprobs, letter_token_ids(model.tokenizer))
    gold = torch.tensor([LETTERS.index(q.answer) for q in questions])
    correct = scores.argmax(-1) == gold
    p = torch.softmax(scores, dim=-1)[torch.arange(len(questions)), gold]
    return {
        "n": len(questions),
        "accuracy": float(correct.float().mean()),
        "p_correct": float(p.mean()),
        "logprobs": logprobs,
        "gate_scores": gate,
    }


@dataclass
class CapabilityResult:
    """Tables of :func:`run_capability`: ``mc`` (Tab. 5), ``kl``, ``gate`` scores (Fig. 3)."""

    mc: pd.DataFrame
    kl: pd.DataFrame
    gate: pd.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)


def run_capability(
    model: HookedModel,
    values: Sequence[str],
    out_dir: str | Path,
    *,
    vectors: dict[str, ValueVectors],
    gates: dict[str, ActivationGate],
    mc: Sequence[MCQuestion] | None = None,
    mc_limit: int | None = None,
    unrelated_limit: int | None = 60,
    value_questions: int | None = 20,
    p0: float = DEFAULT_P0,
    batch_size: int = 8,
) -> CapabilityResult:
    """Tab. 5, Fig. 3 and the KL measure for base, ConVA (gate) and ConVA without gate.

    Writes ``mc.csv``, ``kl.csv``, ``gate_scores.csv``, ``capability.txt`` and
    ``gate_scores.png`` to ``out_dir``.
    """
    from conva_tl.evaluation.figures import plot_gate_histograms

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [canonical_value(v) for v in values]
    mcq = list(mc if mc is not None else load_mc())[:mc_limit]
    unrelated = [p.prompt for p in load_unrelated()][:unrelated_limit]
    base_mc = mc_accuracy(model, mcq, None, batch_size=batch_size)
    base_lp = {
        "mc": base_mc["logprobs"],
        "unrelated": answer_start_logprobs(model, unrelated, batch_size=batch_size)[0],
    }
    mc_rows = [
        {
            "value": "-",
            "method": "base",
            "n": base_mc["n"],
            "accuracy": base_mc["accuracy"],
            "p_correct": base_mc["p_correct"],
            "gate_open": float("nan"),
        }
    ]
    kl_rows, gate_rows = [], []
    for v in names:
        if v not in vectors:
            raise ConvaError(f"no value vectors for {v!r}: run conva fit first")
        vq = [q.question for q in load_questions(v, split="eval")][:value_questions]
        sets = {"value": vq, "mc": [mc_prompt(q) for q in mcq], "unrelated": unrelated}
        base_lp_v = {**base_lp, "value": answer_start_logprobs(model, vq, batch_size=batch_size)[0]}
        for name in ("conva", "conva-nogate"):
            method = make_method(name, v, vectors[v], gates.get(v), p0=p0)
            res = mc_accuracy(model, mcq, method, batch_size=batch_size)
            for set_name, prompts in sets.items():
                if set_name == "mc":
                    lp, gs = res["logprobs"], res["gate_scores"]
                else:
                    lp, gs = answer_start_logprobs(model, prompts, method, batch_size=batch_size)
                kl = next_token_kl(base_lp_v[set_name], lp)
                opened = (
                    float((gs > method.gate.threshold).float().mean()) if gs is not None else 1.0
                )
                kl_rows.append(
                    {
                        "value": v,
                        "method": name,
                        "set": set_name,
                        "n": len(prompts),
                        "kl_mean": float(kl.mean()),
                        "kl_median": float(kl.median()),
                        "kl_max": float(kl.max()),
                        "gate_open": opened,
                    }
                )
                if gs is not None:
                    gate_rows += [
                        {
                            "value": v,
                            "set": set_name,
                            "score": float(s),
                            "threshold": float(method.gate.threshold),
                        }
                        for s in gs
                    ]
            gate_open = (
                float((res["gate_scores"] > method.gate.threshold).float().mean())
                if res["gate_scores"] is not None
                else 1.0
            )
            mc_rows.append(
                {
                    "value": v,
                    "method": name,
                    "n": res["n"],
                    "accuracy": res["accuracy"],
                    "p_correct": res["p_correct"],
                    "gate_open": gate_open,
                }
            )
    result = CapabilityResult(
        pd.DataFrame(mc_rows),
        pd.DataFrame(kl_rows),
        pd.DataFrame(gate_rows, columns=["value", "set", "score", "threshold"]),
    )
    report = Report(
        "mc",
        result.mc,
        format_capability(result),
        extra={"kl": result.kl, "gate_scores": result.gate},
        figures={"gate_scores.png": lambda: plot_gate_histograms(result.gate)}
        if len(result.gate)
        else {},
        text_file="capability.txt",
        dpi=130,
    )
    report.write(out)
    result.paths = {
        "mc": out / "mc.csv",
        "kl": out / "kl.csv",
        "gate": out / "gate_scores.csv",
        "table": out / "capability.txt",
    }
    if len(result.gate):
        result.paths["figure"] = out / "gate_scores.png"
    return result


def format_capability(result: CapabilityResult) -> str:
    """Tab. 5-style summary (mean over values), the KL table and gate open rates, as text."""
    mc = result.mc.groupby("method", sort=False)[["accuracy", "p_correct", "gate_open"]].mean()
    kl = result.kl.pivot_table(index=["method"], columns="set", values="kl_mean", aggfunc="mean")
    opened = result.kl.pivot_table(
        index=["method"], columns="set", values="gate_open", aggfunc="mean"
    )
    return "\n\n".join(
        [
            "Multiple-choice accuracy (mean over values; paper Tab. 5):\n"
            + mc.round(3).to_string(),
            "Mean next-token KL(base || steered) at the answer start, nats (mean over values):\n"
            + kl.round(4).to_string(),
            "Share of prompts with the gate open:\n" + opened.round(2).to_string(),
            "Per value:\n" + result.mc.round(3).to_string(index=False),
        ]
    )
