"""Properties of the gated control hook on a tiny random model."""

import math

import pytest
import torch

from conva_tl.errors import ConvaError
from conva_tl.gate import CallableGate
from conva_tl.generate import GenerationContext, generate
from conva_tl.hooks import hooked, resid_post_name
from conva_tl.methods import CAA, ConVA, steer
from conva_tl.probes import ValueVectors
from conva_tl.steering import conva_shift, logit
from conva_tl.tokens import tokenize_batch

P0 = 0.9
PROMPTS = ["I locked the door.", "Should I save my bonus or spend it on a holiday?", "Hi"]


def random_vectors(model, layers=(1, 2), seed=0) -> ValueVectors:
    g = torch.Generator().manual_seed(seed)
    n, d = model.cfg.n_layers, model.cfg.d_model
    w = torch.randn(n, d, generator=g)
    return ValueVectors(
        value="security",
        w=w,
        b=torch.zeros(n),
        accuracy=torch.ones(n),
        train_accuracy=torch.ones(n),
        control_layers=tuple(layers),
        mean_diff=torch.randn(n, d, generator=g),
        metadata={},
    )


def test_conva_shift_lands_exactly_on_p0():
    g = torch.Generator().manual_seed(1)
    resid = torch.randn(3, 5, 16, generator=g) * 3
    w = torch.randn(16, generator=g)
    allowed = torch.ones(3, 5, dtype=torch.bool)
    allowed[1, :2] = False
    out, eps, before = conva_shift(resid, w, 0.3, P0, allowed)
    p_before = torch.sigmoid(before)
    p_after = torch.sigmoid(out @ w + 0.3)
    moved = eps != 0
    assert moved.any() and (~moved).any()
    torch.testing.assert_close(
        p_after[moved], torch.full_like(p_after[moved], P0), atol=1e-4, rtol=0
    )
    # nothing moves where P_V >= P0 or where not allowed
    assert torch.equal(out[~moved], resid[~moved])
    assert not moved[p_before >= P0].any() and not moved[~allowed].any()
    # the push is the smallest one: eps >= 0, along v, and exactly the closed form
    expected = (logit(P0) - before) / w.norm()
    torch.testing.assert_close(eps[moved], expected[moved])


def test_shift_keeps_dtype_and_computes_in_float32():
    resid = torch.randn(1, 2, 8).to(torch.bfloat16)
    out, _, _ = conva_shift(resid, torch.ones(8), 0.0, 0.99, torch.ones(1, 2, dtype=torch.bool))
    assert out.dtype == torch.bfloat16


def _read_after(model, layers):
    seen = {}
    hooks = [
        (resid_post_name(layer), lambda x, hook, layer=layer: seen.__setitem__(layer, x.clone()))
        for layer in layers
    ]
    return seen, hooks


def test_hook_reaches_p0_on_every_position_and_only_on_selected_layers(tiny):
    vv = random_vectors(tiny, layers=(1, 2))
    batch = tokenize_batch(tiny.tokenizer, PROMPTS)
    ctx = GenerationContext(token_mask=batch.attention_mask.bool(), managed=True, prompt_pass=True)
    method = ConVA(vv, p0=P0)
    seen, read_hooks = _read_after(tiny, range(tiny.cfg.n_layers))
    with (
        torch.inference_mode(),
        hooked(tiny, method.fwd_hooks(tiny, ctx)) as calls,
        hooked(tiny, read_hooks),
    ):
        tiny(batch.input_ids, attention_mask=batch.attention_mask, return_type=None)
    assert dict(calls) == {resid_post_name(1): 1, resid_post_name(2): 1}
    real = batch.attention_mask.bool()
    for layer in (1, 2):
        p = torch.sigmoid(seen[layer] @ vv.w[layer] + vv.b[layer])
        assert (p[real] >= P0 - 1e-4).all()
    # padding positions are untouched: compare with an unsteered run
    seen0, read0 = _read_after(tiny, [1])
    with torch.inference_mode(), hooked(tiny, read0):
        tiny(batch.input_ids, attention_mask=batch.attention_mask, return_type=None)
    assert torch.equal(seen[1][~real], seen0[1][~real])


def test_closed_gate_changes_nothing(tiny):
    vv = random_vectors(tiny)
    closed = CallableGate(lambda texts: [0.0] * len(texts), threshold=0.5)
    base = generate(tiny, PROMPTS, max_new_tokens=6)
    gated = generate(tiny, PROMPTS, max_new_tokens=6, intervention=ConVA(vv, p0=0.99, gate=closed))
    assert gated == base


def test_gate_decisions_are_per_row(tiny):
    vv = random_vectors(tiny)
    first_only = CallableGate(lambda texts: [1.0] + [0.0] * (len(texts) - 1), threshold=0.5)
    _, trace = generate(
        tiny,
        PROMPTS,
        max_new_tokens=3,
        intervention=ConVA(vv, p0=0.999, gate=first_only),
        trace=True,
    )
    moved_rows = set(trace.loc[trace.eps != 0, "row"])
    assert moved_rows == {0}


def test_steered_batch_equals_one_at_a_time(tiny):
    vv = random_vectors(tiny)
    for method in (ConVA(vv, p0=0.95), ConVA(vv, p0=0.95, mode="per_prompt"), CAA(vv, coef=2.0)):
        batched = generate(tiny, PROMPTS, max_new_tokens=8, intervention=method, batch_size=3)
        single = [generate(tiny, [p], max_new_tokens=8, intervention=method)[0] for p in PROMPTS]
        assert batched == single, method.name


def test_trace_covers_prompt_and_generated_tokens(tiny):
    vv = random_vectors(tiny)
    answers, trace = generate(
        tiny, PROMPTS[:1], max_new_tokens=5, intervention=ConVA(vv, p0=0.999), trace=True
    )
    assert set(trace.layer) == {1, 2}
    assert trace.step.max() >= 1  # decoding steps are steered too (KV cache)
    moved = trace[trace.eps != 0]
    assert (moved.p_after - 0.999).abs().max() < 1e-3
    assert (trace.loc[trace.eps == 0, "p_before"] >= 0.999 - 1e-6).all()


def _mode_trace(tiny, vv, mode: str, *, p0: float = 0.999, steps: int = 3):
    """The control trace of ConVA in ``mode`` over PROMPTS."""
    _, trace = generate(
        tiny,
        PROMPTS,
        max_new_tokens=steps,
        intervention=ConVA(vv, p0=p0, mode=mode),
        trace=True,
    )
    return trace


def test_per_prompt_mode_uses_one_eps_per_row_and_layer(tiny):
    trace = _mode_trace(tiny, random_vectors(tiny), "per_prompt", p0=0.99, steps=4)
    per = trace.groupby(["row", "layer"]).eps.nunique()
    assert (per == 1).all()


def test_answer_mode_leaves_the_prompt_but_its_last_token(tiny):
    vv = random_vectors(tiny)
    full = _mode_trace(tiny, vv, "per_token")
    ans = _mode_trace(tiny, vv, "per_token_answer")
    prompt_full, prompt_ans = full[full.step == 0], ans[ans.step == 0]
    last = prompt_ans.groupby("row").position.transform("max")
    assert (prompt_ans[prompt_ans.position < last].eps == 0).all()
    assert (prompt_ans[prompt_ans.position == last].eps > 0).all()
    assert (prompt_full.eps > 0).mean() > 0.5  # the paper's mode moves the prompt too
    assert (ans[ans.step > 0].eps > 0).all()  # every generated token is steered
    with pytest.raises(ConvaError, match="per_token_answer"):
        ConVA(vv, mode="answer")


def test_prompt_mode_steers_the_prompt_and_no_generated_token(tiny):
    trace = _mode_trace(tiny, random_vectors(tiny), "per_token_prompt")
    assert (trace[trace.step == 0].eps > 0).mean() > 0.5
    assert (trace[trace.step > 0].eps == 0).all()
    assert (trace.step > 0).any()  # generated tokens were seen, and left alone


def test_steer_context_manager_cleans_up(tiny):
    vv = random_vectors(tiny)
    ids = tiny.tokenizer(
        "Should I save my bonus?", return_tensors="pt", add_special_tokens=False
    ).input_ids
    with torch.inference_mode():
        ref = tiny(ids, return_type="logits")
        with steer(tiny, vv, p0=0.999, trace=True) as s:
            steered = tiny(ids, return_type="logits")
        after = tiny(ids, return_type="logits")
    assert s.calls[resid_post_name(1)] == 1 and not torch.allclose(ref, steered)
    assert torch.equal(ref, after)
    assert len(s.trace_frame()) == 2 * ids.shape[1]


def test_bad_configuration_is_rejected(tiny):
    vv = random_vectors(tiny)
    with pytest.raises(ConvaError, match="P0"):
        ConVA(vv, p0=1.0)
    with pytest.raises(ConvaError, match="mode"):
        ConVA(vv, mode="sometimes")
    assert math.isclose(logit(0.5), 0.0)


class FailingAtStep:
    """ConVA whose hooks raise at one decoding step, as a crash mid-generation would."""

    def __init__(self, method: ConVA, step: int) -> None:
        self.method, self.step, self.name = method, step, "failing"

    def rewrite_prompt(self, question):
        return self.method.rewrite_prompt(question)

    def fwd_hooks(self, model, ctx):
        def fail_then(fn):
            def hook(resid, hook):
                if ctx.step == self.step:
                    raise RuntimeError(f"crash at step {ctx.step}")
                return fn(resid, hook=hook)

            return hook

        return [(name, fail_then(fn)) for name, fn in self.method.fwd_hooks(model, ctx)]


def test_users_own_bridge_hooks_survive_steering(tiny):
    vv = random_vectors(tiny)  # steers blocks 1 and 2, where the user's hook sits too
    name = resid_post_name(1)
    point = tiny.hook_dict[name]
    assert not point.fwd_hooks, "another test left a hook on the shared tiny model"
    ids = tiny.tokenizer("Should I save?", return_tensors="pt", add_special_tokens=False).input_ids
    seen: list[tuple[int, ...]] = []

    def record_resid_hook(resid, hook):
        seen.append(tuple(resid.shape))

    def assert_users_hook_alone_and_firing():
        seen.clear()
        with torch.inference_mode():
            tiny(ids, return_type=None)
        assert seen == [(1, ids.shape[1], tiny.cfg.d_model)] and len(point.fwd_hooks) == 1

    tiny.add_hook(name, record_resid_hook)
    try:
        assert_users_hook_alone_and_firing()
        with torch.inference_mode(), steer(tiny, vv, p0=0.999) as s:
            tiny(ids, return_type=None)
        assert s.calls[name] == 1 and len(seen) == 2  # both fired inside the block
        assert_users_hook_alone_and_firing()
        with pytest.raises(RuntimeError, match="inside the block"):
            with torch.inference_mode(), steer(tiny, vv, p0=0.999):
                raise RuntimeError("inside the block")
        assert_users_hook_alone_and_firing()
        generate(tiny, ["Hi"], intervention=ConVA(vv, p0=0.999), max_new_tokens=2)
        assert_users_hook_alone_and_firing()
        with pytest.raises(RuntimeError, match="crash at step 1"):
            generate(
                tiny, ["Hi"], intervention=FailingAtStep(ConVA(vv, p0=0.999), 1), max_new_tokens=3
            )
        assert_users_hook_alone_and_firing()
    finally:
        point.remove_hooks("fwd")
    assert not point.fwd_hooks
