"""The HookedModel protocol: both model types satisfy it, other objects do not."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from conva_tl import HookedModel
from conva_tl.activations import resolve_layers
from conva_tl.errors import ConvaError, HookError
from conva_tl.fast import FastModel
from conva_tl.hooks import check_hook_names, hooked, resid_post_name
from conva_tl.model_protocol import ModelConfig
from conva_tl.tokens import iter_batches


@pytest.fixture(scope="module")
def fast() -> FastModel:
    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    return FastModel(LlamaForCausalLM(config).eval(), tok, "tiny-llama")


def test_bridge_and_fast_model_are_hooked_models(tiny, fast):
    for model in (tiny, fast):
        assert isinstance(model, HookedModel)
        assert isinstance(model.cfg, ModelConfig)
        # a stage typed HookedModel accepts both under the runtime type checks
        assert resolve_layers(model, None) == list(range(model.cfg.n_layers))


class _NoHooks:
    """Has everything a HookedModel has except ``hooks()``."""

    def __init__(self, model: HookedModel) -> None:
        self.cfg = model.cfg
        self.tokenizer = model.tokenizer
        self.hook_dict = dict(model.hook_dict)

    def __call__(self, *args, **kwargs):
        return None


def test_objects_without_the_interface_are_not_hooked_models(fast):
    assert not isinstance(_NoHooks(fast), HookedModel)
    assert not isinstance(fast.hf_model, HookedModel)
    assert not isinstance(object(), HookedModel)


def test_fast_hooks_refuse_the_bridge_options_they_cannot_honour(fast):
    hook = [("blocks.0.hook_resid_post", lambda x, hook: None)]
    for kwargs in ({"reset_hooks_end": False}, {"clear_contexts": True}):
        with pytest.raises(HookError, match="leave both at their defaults"):
            with fast.hooks(fwd_hooks=hook, **kwargs):
                pass
    layer = fast.hf_model.model.layers[0]
    assert not layer._forward_hooks  # nothing was attached by the refused calls


def test_one_hook_name_check_for_both_models(tiny, fast):
    for model in (tiny, fast):
        with pytest.raises(HookError, match="no hook point 'blocks.0.hook_resid_pots'"):
            check_hook_names(model, ["blocks.0.hook_resid_pots"])
    # FastModel.add_hook goes through the same check, with its own advice
    with pytest.raises(HookError, match="close matches: blocks.0.hook_resid_post.*use the bridge"):
        fast.add_hook("blocks.0.hook_resid_pots", lambda x, hook: None)


def test_one_early_stop_for_both_models(tiny, fast):
    ids = torch.tensor([[5, 6, 7, 8]])
    for model in (tiny, fast):
        names = [resid_post_name(layer) for layer in range(model.cfg.n_layers)]
        fired: list[str] = []
        after: list[bool] = []
        hooks = [(n, lambda x, hook, n=n, fired=fired: fired.append(n)) for n in names]
        with torch.inference_mode(), hooked(model, hooks, stop_after=names[1]) as calls:
            model(ids, return_type="logits")
            after.append(True)  # never reached: the pass was abandoned
        assert fired == names[:2] and not after
        assert calls == {names[0]: 1, names[1]: 1}
        # the hooks are gone and a plain pass runs to the end
        with torch.inference_mode():
            assert model(ids, return_type="logits").shape[-1] == model.cfg.d_vocab
        assert fired == names[:2]
        with pytest.raises(HookError, match="stop_after='blocks.3.hook_resid_pre' is not one"):
            with hooked(model, hooks, stop_after="blocks.3.hook_resid_pre"):
                pass


def test_an_inner_stop_does_not_end_the_outer_block(fast):
    ids = torch.tensor([[5, 6, 7, 8]])
    outer_done: list[bool] = []
    last = resid_post_name(fast.cfg.n_layers - 1)
    with hooked(fast, [(last, lambda x, hook: None)]) as outer:
        with hooked(
            fast, [(resid_post_name(0), lambda x, hook: None)], stop_after=resid_post_name(0)
        ):
            fast(ids, return_type=None)
        fast(ids, return_type=None)
        outer_done.append(True)
    assert outer_done == [True] and outer[last] == 1


def test_iter_batches_sorts_by_length_and_keeps_every_text_once(fast):
    texts = ["a b c d e f", "a", "a b c", "a b", "a b c d"]
    tok = fast.tokenizer
    batches = list(iter_batches(tok, texts, 2))
    idx = [i for rows, _ in batches for i in rows]
    assert sorted(idx) == list(range(len(texts)))
    lengths = [len(tok(texts[i], add_special_tokens=False)["input_ids"]) for i in idx]
    assert lengths == sorted(lengths)
    for rows, batch in batches:
        assert batch.input_ids.shape[0] == len(rows) <= 2
        assert batch.attention_mask.sum(1).tolist() == [
            len(tok(texts[i], add_special_tokens=False)["input_ids"]) for i in rows
        ]
    in_order = [rows for rows, _ in iter_batches(tok, texts, 2, by_length=False)]
    assert in_order == [[0, 1], [2, 3], [4]]
    with pytest.raises(ConvaError, match="batch_size must be >= 1"):
        iter_batches(tok, texts, 0)
