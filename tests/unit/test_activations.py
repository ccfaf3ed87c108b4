import pytest
import torch

from conva_tl.activations import cache_resid_post
from conva_tl.errors import ConvaError, HookError
from conva_tl.hooks import hooked, resid_post_name

TEXTS = [
    "I locked the door.",
    "Hi",
    "She quit her stable job to sail around the world.",
    "What is 2?",
]


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_batched_equals_one_at_a_time(tiny, pooling):
    batched = cache_resid_post(tiny, TEXTS, pooling=pooling, batch_size=3)
    single = torch.stack([cache_resid_post(tiny, [t], pooling=pooling)[:, 0] for t in TEXTS], dim=1)
    assert batched.shape == (tiny.cfg.n_layers, len(TEXTS), tiny.cfg.d_model)
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def test_matches_run_with_cache_and_layer_subset(tiny):
    ids = tiny.tokenizer(TEXTS[2], return_tensors="pt", add_special_tokens=False).input_ids
    _, cache = tiny.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_post"))
    sub = cache_resid_post(tiny, [TEXTS[2]], layers=[2, 0])
    torch.testing.assert_close(sub[0, 0], cache[resid_post_name(0)][0, -1])
    torch.testing.assert_close(sub[1, 0], cache[resid_post_name(2)][0, -1])


def test_forward_stops_after_deepest_requested_layer(tiny, monkeypatch):
    fired = []
    names = [resid_post_name(layer) for layer in range(tiny.cfg.n_layers)]
    with hooked(tiny, [(n, lambda x, hook, n=n: fired.append(n)) for n in names]):
        cache_resid_post(tiny, TEXTS[:1], layers=[1])
    assert fired == names[:2]


def test_all_layers_skip_the_final_norm_and_unembedding(tiny):
    fired = []
    tail = ["ln_final.hook_in", "unembed.hook_out"]
    with hooked(tiny, [(n, lambda x, hook, n=n: fired.append(n)) for n in tail]):
        acts = cache_resid_post(tiny, TEXTS[:2])
        assert fired == []  # the deepest resid_post hook ended the pass
        tiny(tiny.tokenizer(TEXTS[0], return_tensors="pt").input_ids)
    assert fired == tail  # the hooks themselves work: a plain forward reaches them
    assert acts.shape[0] == tiny.cfg.n_layers and torch.isfinite(acts).all()


def test_bad_inputs(tiny):
    with pytest.raises(ConvaError, match="layers must be"):
        cache_resid_post(tiny, TEXTS, layers=[99])
    with pytest.raises(ConvaError, match="pooling"):
        cache_resid_post(tiny, TEXTS, pooling="max")
    with pytest.raises(ConvaError, match="list of strings"):
        cache_resid_post(tiny, "one string")
    with pytest.raises(HookError, match="close matches"):
        with hooked(tiny, [("blocks.0.hook_resid_pots", lambda x, hook: None)]):
            pass


def test_answer_format_puts_the_text_inside_the_assistant_turn(tiny):
    from conva_tl.prompts import ANSWER_PROMPT, format_chat, format_inputs

    (text,) = format_inputs(tiny.tokenizer, ["I kept the steady job."], "answer")
    head = format_chat(tiny.tokenizer, ANSWER_PROMPT)
    assert text == head + "I kept the steady job."
    assert text.index(ANSWER_PROMPT) < text.rindex("assistant") < text.index("I kept")
