import random

import torch

from conva_tl.artifacts import load_gates, save_gates
from conva_tl.datasets import load_questions, load_unrelated
from conva_tl.gate import ActivationGate, fit_gate, gate_hook
from conva_tl.generate import GenerationContext


def test_fit_gate_reports_heldout_quality_and_round_trips(tiny, tmp_path):
    gate = fit_gate(tiny, "security", block=2, test_size=0.3)
    assert gate.block == 2 and gate.hook_name == "blocks.2.hook_resid_pre"
    assert gate.metrics["candidates"] == [2] and gate.metrics["test_size"] == 0.3
    assert gate.metrics["n_positive"] == 30 and gate.metrics["n_negative"] >= 300
    save_gates(tmp_path, [gate])
    loaded = load_gates(tmp_path, ["security"], model=tiny)["security"]
    assert torch.equal(loaded.w, gate.w) and loaded.b == gate.b and loaded.block == 2


def test_gate_auroc_is_one_on_separable_prompts_and_chance_on_shuffled_labels(tiny):
    questions = [q.question for q in load_questions("security", split="gate")]
    unrelated = [p.prompt for p in load_unrelated()][:60]
    # a shared marker makes the positives separable even through a random-weight model
    marked = ["0123456789 0123456789 0123456789 " + q for q in questions]
    gate = fit_gate(tiny, "security", block=2, positives=marked, negatives=unrelated)
    assert gate.metrics["heldout_auroc"] == 1.0
    assert gate.metrics["n_positive"] == 30 and gate.metrics["n_negative"] == 60
    mixed = questions + unrelated
    random.Random(0).shuffle(mixed)
    shuffled = fit_gate(tiny, "security", block=2, positives=mixed[:30], negatives=mixed[30:])
    assert shuffled.metrics["heldout_auroc"] < 0.75


def test_gate_hook_decides_per_row_on_prompt_pass_only():
    gate = ActivationGate("security", 1, torch.tensor([1.0, 0.0]), 0.0, threshold=0.5)
    resid = torch.tensor([[[5.0, 0.0], [5.0, 0.0]], [[-5.0, 0.0], [-5.0, 0.0]]])
    ctx = GenerationContext(
        token_mask=torch.ones(2, 2, dtype=torch.bool), managed=True, prompt_pass=True
    )
    gate_hook(resid, None, gate=gate, ctx=ctx)
    assert ctx.state["gate_open"].tolist() == [True, False]
    ctx.prompt_pass = False
    gate_hook(-resid, None, gate=gate, ctx=ctx)  # decoding steps keep the prompt's decision
    assert ctx.state["gate_open"].tolist() == [True, False]
