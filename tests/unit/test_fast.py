"""The fast path (plain HF model + torch hooks) against the bridge, on a tiny model.

Both models are built here from one set of random weights: the bridge gets a
deep copy (booting rewires a model in place), the fast path the original.
Tolerances: float32 on CPU, eager (bridge) vs SDPA (fast) attention. With
this init the residual stream reaches ~30 and the two paths differ by ~1.5e-6
of a vector's norm, so activations must agree to 1e-5 relative (norm) and
1e-4 elementwise; eps, P_V and gate scores to 1e-4 absolute.
"""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from conva_tl.activations import cache_resid_post
from conva_tl.datasets import contrast_set
from conva_tl.errors import HookError
from conva_tl.fast import FastModel
from conva_tl.gate import ActivationGate
from conva_tl.generate import GenerationConfig, generate, generate_batch
from conva_tl.hooks import hook_name, hooked, resid_post_name
from conva_tl.identify import identify
from conva_tl.methods import ConVA, steer
from conva_tl.model import boot_bridge, model_info
from conva_tl.probes import ValueVectors
from conva_tl.tokens import token_positions, tokenize_batch

ATOL = 1e-4
REL = 1e-5
TEXTS = [
    "I locked the door.",
    "Should I save my bonus or spend it on a holiday?",
    "Hi",
    "What is 2?",
]


@pytest.fixture(scope="module")
def pair():
    """(bridge, fast) over identical weights; larger init so greedy text varies."""
    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        initializer_range=0.3,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    hf = LlamaForCausalLM(config).eval()
    bridge = boot_bridge(copy.deepcopy(hf), tok, "tiny-llama", device="cpu")
    return bridge, FastModel(hf, tok, "tiny-llama")


def assert_same_stream(got: torch.Tensor, ref: torch.Tensor) -> None:
    rel = (got - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-6)
    assert rel.max() < REL, f"relative difference {rel.max():.2e}"
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)


def vectors(n_layers: int, d_model: int, layers=(1, 2), seed: int = 0) -> ValueVectors:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_layers, d_model, generator=g)
    return ValueVectors(
        value="security",
        w=w,
        b=torch.full((n_layers,), -1.0),
        accuracy=torch.ones(n_layers),
        train_accuracy=torch.ones(n_layers),
        control_layers=tuple(layers),
        mean_diff=torch.randn(n_layers, d_model, generator=g),
        metadata={},
    )


def open_gate(d_model: int, block: int = 1, threshold: float = 0.5) -> ActivationGate:
    g = torch.Generator().manual_seed(5)
    return ActivationGate("security", block, torch.randn(d_model, generator=g), 0.0, threshold)


def test_cfg_and_hook_points(pair):
    bridge, fast = pair
    assert model_info(fast) == model_info(bridge)
    assert fast.tokenizer.pad_token_id is not None
    for layer in range(fast.cfg.n_layers):
        assert resid_post_name(layer) in fast.hook_dict
        assert hook_name(layer, "hook_resid_pre") in fast.hook_dict
    with pytest.raises(HookError, match="close matches: blocks.1.hook_resid_post"):
        with hooked(fast, [("blocks.1.hook_resid_pots", lambda x, hook: None)]):
            pass
    with pytest.raises(HookError, match="no hook point"):
        with hooked(fast, [("blocks.9.hook_resid_post", lambda x, hook: None)]):
            pass


def test_token_positions_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert token_positions(mask).tolist() == [[-1, -1, 0, 1, 2], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("input_format", ["raw", "chat"])
def test_resid_post_equals_bridge_at_every_layer(pair, pooling, input_format):
    bridge, fast = pair
    a = cache_resid_post(bridge, TEXTS, pooling=pooling, input_format=input_format, batch_size=3)
    b = cache_resid_post(fast, TEXTS, pooling=pooling, input_format=input_format, batch_size=3)
    assert a.shape == b.shape == (4, len(TEXTS), 32)
    assert_same_stream(b, a)


def test_logits_cache_and_early_stop(pair):
    bridge, fast = pair
    batch = tokenize_batch(fast.tokenizer, TEXTS)
    with torch.inference_mode():
        ref = bridge(batch.input_ids, attention_mask=batch.attention_mask, return_type="logits")
        got = fast(batch.input_ids, attention_mask=batch.attention_mask, return_type="logits")
        real = batch.attention_mask.bool()
        assert_same_stream(got[real], ref[real])
        # prefill + one cached step == the uncached pass over the longer input
        last, cache = fast(
            batch.input_ids, attention_mask=batch.attention_mask, return_type="logits_and_cache"
        )
        assert last.shape == (len(TEXTS), 1, fast.cfg.d_vocab)
        nxt = last[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([batch.attention_mask, torch.ones_like(nxt)], 1)
        step, _ = fast(
            nxt, attention_mask=mask, past_key_values=cache, return_type="logits_and_cache"
        )
        full = fast(torch.cat([batch.input_ids, nxt], 1), attention_mask=mask, return_type="logits")
        assert_same_stream(step[:, -1], full[:, -1])
        # stop_after block 1: hooks of later blocks never fire, the pass ends there
        fired: list[str] = []
        seen: list[torch.Tensor] = []
        names = [resid_post_name(layer) for layer in range(4)]
        hooks = [(n, lambda x, hook, n=n: fired.append(n)) for n in names]
        hooks.append((names[1], lambda x, hook: seen.append(x[:, -1].clone())))
        with hooked(fast, hooks, stop_after=names[1]):
            fast(batch.input_ids, attention_mask=batch.attention_mask, return_type=None)
        assert fired == names[:2]
        acts = cache_resid_post(fast, TEXTS, layers=[1])
        torch.testing.assert_close(seen[0], acts[0], rtol=0, atol=0)
        assert fast(batch.input_ids, return_type=None) is None


def test_hooks_are_removed_and_users_hooks_survive(pair):
    _, fast = pair
    layer = fast.hf_model.model.layers[1]
    own = layer.register_forward_hook(lambda m, a, o: None)
    try:
        with hooked(fast, [(resid_post_name(1), lambda x, hook: None)]) as calls:
            fast(torch.tensor([[5, 6, 7]]), return_type=None)
        assert calls[resid_post_name(1)] == 1
        assert list(layer._forward_hooks) == [own.id]
        with pytest.raises(HookError, match="must return None or a tensor of shape"):
            with hooked(fast, [(resid_post_name(1), lambda x, hook: x[:, :1])]):
                fast(torch.tensor([[5, 6, 7]]), return_type=None)
        assert list(layer._forward_hooks) == [own.id]
    finally:
        own.remove()


def test_resid_pre_is_previous_resid_post_and_replaceable(pair):
    _, fast = pair
    seen: dict[str, torch.Tensor] = {}

    def read(x, hook):
        seen[hook.name] = x.clone()

    def zero(x, hook):
        return torch.zeros_like(x)

    ids = torch.tensor([[5, 6, 7, 8]])
    pre, post = hook_name(2, "hook_resid_pre"), resid_post_name(1)
    with torch.inference_mode(), hooked(fast, [(post, read), (pre, read)]):
        fast(ids, return_type=None)
    torch.testing.assert_close(seen[pre], seen[post], rtol=0, atol=0)
    with torch.inference_mode(), hooked(fast, [(pre, zero), (resid_post_name(2), read)]):
        fast(ids, return_type=None)
    with torch.inference_mode(), hooked(fast, [(resid_post_name(2), read)]):
        fast(ids, return_type=None)
    # zeroing block 2's input leaves only the MLP/attention of block 2 on a zero stream
    assert not torch.allclose(seen[resid_post_name(2)], seen[post])


@pytest.mark.parametrize("mode", ["per_token", "per_prompt"])
def test_conva_generation_and_trace_equal_bridge(pair, mode):
    bridge, fast = pair
    vv = vectors(4, 32, layers=(1, 2))
    gate = open_gate(32, block=1, threshold=0.3)
    method = ConVA(vv, p0=0.9, gate=gate, mode=mode)
    kw = dict(intervention=method, max_new_tokens=10, batch_size=4, trace=True, input_format="raw")
    ans_b, tr_b = generate(bridge, TEXTS, **kw)
    ans_f, tr_f = generate(fast, TEXTS, **kw)
    assert ans_f == ans_b
    assert any(len(a) > 0 for a in ans_b)
    assert len(tr_f) == len(tr_b) > 0
    keys = ["row", "step", "position", "layer"]
    assert (tr_f[keys].values == tr_b[keys].values).all()
    for col in ["eps", "p_before", "p_after", "gate_score"]:
        torch.testing.assert_close(
            torch.tensor(tr_f[col].values), torch.tensor(tr_b[col].values), rtol=0, atol=ATOL
        )
    assert (tr_f.eps > 0).any()


def test_greedy_token_ids_equal_bridge_unsteered_and_uncached(pair):
    bridge, fast = pair
    batch = tokenize_batch(fast.tokenizer, TEXTS)
    cfg = GenerationConfig(max_new_tokens=12)
    ref = generate_batch(bridge, batch, cfg)
    assert generate_batch(fast, batch, cfg) == ref
    assert generate_batch(fast, batch, GenerationConfig(max_new_tokens=12, use_cache=False)) == ref
    assert any(len(r) > 3 for r in ref)


def test_steer_context_on_plain_hf_generate(pair):
    """steer() hooks fire inside HF's own generate on the fast model's HF object."""
    _, fast = pair
    vv = vectors(4, 32, layers=(2,))
    ids = torch.tensor([[5, 6, 7, 8]])
    with steer(fast, vv, p0=0.9, trace=True) as s:
        fast.hf_model.generate(
            ids, max_new_tokens=3, do_sample=False, pad_token_id=fast.tokenizer.pad_token_id
        )
    assert s.calls[resid_post_name(2)] == 3
    tr = s.trace_frame()
    assert (torch.sigmoid(torch.tensor(tr.p_after.values)) > 0).all() and len(tr) == 4 + 2


def test_identify_equal_on_fast_path(pair):
    bridge, fast = pair
    full = contrast_set("security")
    data = {"security": full.subset(sorted(set(full.groups))[:30])}
    a = identify(bridge, ["security"], data=data, layers=[1, 3])["security"]
    b = identify(fast, ["security"], data=data, layers=[1, 3])["security"]
    assert a.control_layers == b.control_layers
    torch.testing.assert_close(b.accuracy, a.accuracy, rtol=0, atol=0)
    # SDPA vs eager attention differ by ~1e-6; the logistic fit amplifies that
    # slightly, so compare the probe directions rather than raw weights.
    cos = torch.nn.functional.cosine_similarity(a.w[[1, 3]], b.w[[1, 3]], dim=-1)
    assert (cos > 0.999).all(), cos
    torch.testing.assert_close(b.w, a.w, rtol=0.05, atol=5e-3)
    assert b.metadata["model"] == a.metadata["model"]
