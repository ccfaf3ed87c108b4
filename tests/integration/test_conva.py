"""ConVA end to end on the embedded model: fit, gate, steer, save and reload.

Two values are fitted once for the module (one shared activation pass).
"""

import pytest
import torch

from conva_tl.artifacts import load_gates, load_vectors
from conva_tl.datasets import load_questions, load_unrelated
from conva_tl.generate import generate
from conva_tl.methods import ConVA
from conva_tl.pipeline import fit_all

VALUES = ("tradition", "security")


@pytest.fixture(scope="module")
def fitted(embedded, tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors")
    vectors, gates = fit_all(embedded, out, VALUES, progress=False)
    return out, vectors, gates


def test_probes_separate_the_pairs_and_select_layers(fitted, embedded):
    _, vectors, _ = fitted
    for v in VALUES:
        vv = vectors[v]
        # well above chance on held-out pairs (measured: security 0.80, a hard value for a 135M model)
        assert float(vv.accuracy.max()) >= 0.75, (v, vv.accuracy)
        assert all(layer < embedded.cfg.n_layers - 5 for layer in vv.control_layers)
        passing = [layer for layer in range(25) if float(vv.accuracy[layer]) > 0.9]
        # the paper's rule, or (when no layer passes) the 3 most accurate allowed layers
        assert list(vv.control_layers) == passing or (not passing and len(vv.control_layers) == 3)
    assert vectors["tradition"].control_layers, "tradition should have accurate layers"


def test_gate_separates_value_questions_from_unrelated_prompts(fitted, embedded):
    _, _, gates = fitted
    gate = gates["tradition"]
    assert gate.metrics["heldout_auroc"] > 0.9
    # never-seen evaluation questions vs unrelated prompts
    q = [x.question for x in load_questions("tradition", split="eval")[:8]]
    u = [x.prompt for x in load_unrelated()[::40]]
    sq, su = gate.score_texts_with(embedded, q), gate.score_texts_with(embedded, u)
    assert sq.mean() > su.mean() + 0.3


def test_conva_steers_prompt_and_generated_tokens_onto_p0(fitted, embedded):
    _, vectors, gates = fitted
    vv = vectors["tradition"]
    questions = [x.question for x in load_questions("tradition", split="eval")[::25]]
    base = generate(embedded, questions, max_new_tokens=40)
    steered, trace = generate(
        embedded,
        questions,
        max_new_tokens=40,
        intervention=ConVA(vv, p0=0.9, gate=None),
        trace=True,
    )
    assert set(trace.layer) == set(vv.control_layers)
    moved = trace[trace.eps != 0]
    assert (moved.p_after - 0.9).abs().max() < 1e-3
    assert len(moved) > 0 and (trace.step > 0).any()
    assert all(len(a.split()) >= 5 for a in steered) and len(base) == len(steered)


def test_save_load_gives_identical_generations(fitted, embedded):
    out, vectors, gates = fitted
    loaded = load_vectors(out, model=embedded)["tradition"]
    lgate = load_gates(out, ["tradition"], model=embedded)["tradition"]
    assert loaded == vectors["tradition"]
    q = [load_questions("tradition", split="eval")[3].question]
    a = generate(
        embedded,
        q,
        max_new_tokens=24,
        intervention=ConVA(vectors["tradition"], p0=0.9, gate=gates["tradition"]),
    )
    b = generate(embedded, q, max_new_tokens=24, intervention=ConVA(loaded, p0=0.9, gate=lgate))
    assert a == b


def test_resume_reuses_matching_artifacts(fitted, embedded, monkeypatch):
    out, vectors, _ = fitted
    import conva_tl.store as store

    def boom(*args, **kwargs):
        raise AssertionError("identify() must not run again")

    monkeypatch.setattr(store, "identify", boom)
    again, _ = fit_all(embedded, out, VALUES, progress=False)
    assert all(torch.equal(again[v].w, vectors[v].w) for v in VALUES)


def test_demo_reuses_artifacts_and_writes_its_report(fitted, embedded):
    import io

    from conva_tl.demo import run_demo

    out, _, _ = fitted
    stream = io.StringIO()
    result = run_demo(out, model=embedded, values=VALUES, max_new_tokens=12, stream=stream)
    text = stream.getvalue()
    assert "best_layer" in text and "[tradition]" in text and "ConVA p0=" in text
    assert (
        len(result["answers"]) == 2
        and (out / "report.md").is_file()
        and (out / "answers.jsonl").is_file()
    )
