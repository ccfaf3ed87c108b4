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


# --- value-specific gates and the opening-rate matrix --------------------------------

MARK = "0123456789 0123456789 0123456789 "  # shared by every value's toy prompts
OTHER = "capital of France Paris "  # only the other values' toy prompts


def test_specific_gate_takes_other_values_training_questions_as_hard_negatives(tiny):
    from conva_tl.gate import fit_gates, heldout_questions
    from conva_tl.probes import ValueVectors

    vv = ValueVectors(
        "security",
        torch.zeros(tiny.cfg.n_layers, tiny.cfg.d_model),
        torch.zeros(tiny.cfg.n_layers),
        torch.ones(tiny.cfg.n_layers),
        torch.ones(tiny.cfg.n_layers),
        (1,),
        torch.zeros(tiny.cfg.n_layers, tiny.cfg.d_model),
        {},
    )
    n_unrelated = len(load_unrelated())
    n_held = len(heldout_questions("power"))
    assert n_held == 9 and set(heldout_questions("power")) <= {
        q.question for q in load_questions("power", split="gate")
    }
    neutral = fit_gates(tiny, {"security": vv})["security"]
    specific = fit_gates(tiny, {"security": vv}, kind="specific")["security"]
    assert neutral.kind == "neutral" and specific.kind == "specific"
    assert neutral.metrics["n_negative"] == n_unrelated and neutral.metrics["n_hard_negative"] == 0
    assert specific.metrics["n_hard_negative"] == 9 * (30 - n_held)  # nine other values
    assert specific.metrics["n_negative"] == n_unrelated + 9 * (30 - n_held)
    assert specific.metrics["n_positive"] == 30


def test_specific_gate_opens_less_on_other_values_where_values_separate(tiny):
    # Toy values through a random-weight model: a shared marker makes every value's
    # prompts "value-laden"; the other values' prompts also start with their own words.
    own = [MARK + q.question for q in load_questions("security", split="gate")]
    others = [
        OTHER + MARK + q.question
        for v in ("power", "tradition")
        for q in load_questions(v, split="gate")
    ]
    unrelated = [p.prompt for p in load_unrelated()][:60]
    kw = {"block": 2, "positives": own, "negatives": unrelated, "C": 1.0}
    neutral = fit_gate(tiny, "security", **kw)
    specific = fit_gate(tiny, "security", kind="specific", hard_negatives=others[::2], **kw)
    assert specific.metrics["n_negative"] == 60 + 30 and specific.metrics["n_hard_negative"] == 30
    unseen = others[1::2]
    rate = {
        g.kind: float((g.score_texts_with(tiny, unseen) > g.threshold).float().mean())
        for g in (neutral, specific)
    }
    assert rate["neutral"] >= 0.9 and rate["specific"] <= 0.5, rate
    assert float((specific.score_texts_with(tiny, own) > 0.5).float().mean()) >= 0.9


def test_gate_kind_round_trips_and_old_json_loads_as_neutral(tmp_path):
    import json

    import pytest

    from conva_tl.artifact_schema import _GATE_KINDS
    from conva_tl.errors import ArtifactError, ConvaError
    from conva_tl.gate import GATE_KINDS

    assert _GATE_KINDS == GATE_KINDS
    gate = ActivationGate("power", 1, torch.ones(32), 0.0, 0.5, {}, kind="specific")
    assert gate.with_threshold(0.7).kind == "specific"
    save_gates(tmp_path, [gate, ActivationGate("security", 1, torch.ones(32), 0.0)])
    loaded = load_gates(tmp_path)
    assert loaded["power"].kind == "specific" and loaded["security"].kind == "neutral"
    path = tmp_path / "gate-power.json"
    meta = json.loads(path.read_text())
    del meta["kind"]  # a gate saved before kinds existed
    path.write_text(json.dumps(meta))
    assert load_gates(tmp_path, ["power"])["power"].kind == "neutral"
    path.write_text(json.dumps({**meta, "kind": "vague"}))
    with pytest.raises(ArtifactError, match="'kind'"):
        load_gates(tmp_path, ["power"])
    with pytest.raises(ConvaError, match="kind"):
        ActivationGate("power", 1, torch.ones(32), 0.0, kind="vague")


def test_gate_opening_matrix_matches_direct_scoring(tiny):
    import pytest

    from conva_tl.errors import ConvaError
    from conva_tl.gate import gate_opening_matrix, heldout_questions

    g = torch.Generator().manual_seed(0)
    d = tiny.cfg.d_model
    gates = {
        "power": ActivationGate("power", 1, torch.randn(d, generator=g), 0.0, 0.5),
        "security": ActivationGate("security", 2, torch.randn(d, generator=g), 0.1, 0.4),
    }
    matrix = gate_opening_matrix(tiny, gates)
    assert list(matrix.index) == ["power", "security"]
    assert list(matrix.columns) == ["power", "security", "neutral"]
    assert ((matrix >= 0) & (matrix <= 1)).all().all()
    cols = {v: heldout_questions(v) for v in gates} | {
        "neutral": [p.prompt for p in load_unrelated()]
    }
    for row, gate in gates.items():
        for col, texts in cols.items():
            direct = float((gate.score_texts_with(tiny, texts) > gate.threshold).float().mean())
            assert matrix.loc[row, col] == pytest.approx(direct, abs=1e-9)
    everything = gate_opening_matrix(tiny, gates, split="gate")
    direct = gates["power"].score_texts_with(
        tiny, [q.question for q in load_questions("security", split="gate")]
    )
    assert everything.loc["power", "security"] == pytest.approx(
        float((direct > 0.5).float().mean()), abs=1e-9
    )
    with pytest.raises(ConvaError, match="evaluation set"):
        gate_opening_matrix(tiny, gates, split="eval")


def test_conva_fit_gate_kind_saves_specific_gates_and_prints_the_matrix(
    tiny, tmp_path, monkeypatch, capsys
):
    import json

    import conva_tl.model
    from conva_tl.cli import main

    monkeypatch.setattr(conva_tl.model, "load_model", lambda *a, **k: tiny)
    folder = tmp_path / "vecs"
    argv = ["fit", "--values", "security", "--vectors", str(folder), "--gate-kind", "specific"]
    assert main([*argv, "--threshold", "0", "--exclude-last", "1", "--min-depth", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "specific gates" in out and "neutral" in out.split("specific gates")[1]
    assert json.loads((folder / "gate-security.json").read_text())["kind"] == "specific"


def test_gate_block_is_one_the_model_has_even_without_control_layers(tiny):
    from conva_tl.gate import _candidates

    n = tiny.cfg.n_layers
    # no control layers -> first control defaults to 8, beyond this 4-layer model
    assert max(_candidates(8, n)) == n - 1
    assert all(1 <= b < n for first in range(0, 12) for b in _candidates(first, n))
