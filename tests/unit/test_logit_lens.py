"""Logit lens of value vectors on the tiny model."""

import math
from types import SimpleNamespace

import pytest
import torch

from conva_tl.analysis import (
    decode_vectors,
    direction_of,
    final_norm_gain,
    format_logit_lens,
    render_token,
    unembed_directions,
)
from conva_tl.errors import ConvaError
from conva_tl.probes import ValueVectors


def make_vectors(value, w, *, mean_diff=None, accuracy=None):
    n_layers = w.shape[0]
    acc = accuracy if accuracy is not None else torch.linspace(0.5, 0.95, n_layers)
    return ValueVectors(
        value,
        w.float(),
        torch.zeros(n_layers),
        acc.float(),
        acc.float(),
        (0,),
        (mean_diff if mean_diff is not None else w).float(),
        {},
    )


def test_a_token_column_ranks_its_token_first(tiny):
    W_U = tiny.W_U.detach().float()
    gain = final_norm_gain(tiny)
    special = set(tiny.tokenizer.all_special_ids)
    ids = [t for t in range(W_U.shape[1]) if t not in special]
    # Without the norm: v = W_U[:, t]. With it: undo the gain, so that g * v = W_U[:, t].
    for apply_final_norm, dirs in ((False, W_U[:, ids].T), (True, (W_U[:, ids] / gain[:, None]).T)):
        logits = unembed_directions(tiny, dirs, apply_final_norm=apply_final_norm)
        assert logits.argmax(-1).tolist() == ids
    t = ids[7]
    vv = make_vectors("security", W_U[:, t].expand(4, -1).clone())
    df = decode_vectors(tiny, vv, k=5, apply_final_norm=False)
    assert len(df) == 4 * 2 * 5
    tops = df[(df["side"] == "top") & (df["rank"] == 1)]
    assert tops["token_id"].tolist() == [t] * 4
    assert tops["token"].iloc[0] == render_token(tiny.tokenizer, t)


def test_bottom_tokens_are_the_top_tokens_of_the_negated_vector(tiny):
    g = torch.Generator().manual_seed(0)
    vv = make_vectors("power", torch.randn(4, 32, generator=g))
    a = decode_vectors(tiny, vv, k=6)
    b = decode_vectors(tiny, -vv, k=6)
    for layer in range(4):
        bottom = a[(a["layer"] == layer) & (a["side"] == "bottom")]["token_id"].tolist()
        top_neg = b[(b["layer"] == layer) & (b["side"] == "top")]["token_id"].tolist()
        assert bottom == top_neg
    logits = a[a["side"] == "top"].groupby("layer")["logit"]
    assert (logits.apply(lambda s: s.is_monotonic_decreasing)).all()


def test_final_norm_convention_matches_the_models_own_logits(tiny):
    """For a real final residual x, unembedding x as a direction gives the model's logits.

    RMSNorm is scale invariant, so the convention (sqrt(d_model) * v * g @ W_U)
    is exactly what the model does to a residual along v (up to eps).
    """
    ids = tiny.tokenizer("He helped his neighbour.", return_tensors="pt", add_special_tokens=False)[
        "input_ids"
    ]
    last = f"blocks.{tiny.cfg.n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        logits, cache = tiny.run_with_cache(ids, names_filter=lambda n: n == last)
    x = cache[last][0]
    ours = unembed_directions(tiny, x, apply_final_norm=True)
    torch.testing.assert_close(
        ours, logits[0].float(), rtol=2e-3, atol=2e-3 * float(logits.abs().max())
    )


def test_gain_changes_the_ranking_and_layernorm_centres():
    torch.manual_seed(0)
    d, vocab = 8, 20
    W_U = torch.randn(d, vocab)
    gain = torch.rand(d) * 2
    model = SimpleNamespace(
        W_U=W_U,
        cfg=SimpleNamespace(d_model=d, normalization_type="RMS"),
        ln_final=SimpleNamespace(weight=gain),
    )
    v = torch.randn(2, d)
    unit = v / v.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(
        unembed_directions(model, v * 5.0), (unit * math.sqrt(d) * gain) @ W_U
    )
    torch.testing.assert_close(unembed_directions(model, v, apply_final_norm=False), unit @ W_U)
    model.cfg.normalization_type = "LN"
    c = v - v.mean(-1, keepdim=True)
    expected = (c / c.norm(dim=-1, keepdim=True) * math.sqrt(d) * gain) @ W_U
    torch.testing.assert_close(unembed_directions(model, v), expected)
    model.ln_final = SimpleNamespace(weight=None)  # weights processed with fold_ln
    model.original_model = None
    assert torch.equal(final_norm_gain(model), torch.ones(d))


def test_render_token_byte_level(tiny):
    tok = tiny.tokenizer
    ids = tok(" sail\n", add_special_tokens=False)["input_ids"]
    rendered = "".join(render_token(tok, t) for t in ids)
    assert rendered == "·sail\\n"
    assert "".join(render_token(tok, t, space=" ") for t in ids) == " sail\\n"
    # A lone UTF-8 lead byte shows as an escape, not a replacement character.
    assert render_token(tok, tok.convert_tokens_to_ids("Ã")) == "\\xc3"
    assert render_token(tok, tok.convert_tokens_to_ids("<|im_end|>")) == "<|im_end|>"
    assert render_token(tok, tok.convert_tokens_to_ids("ĉ")) == "\\t"


def test_decode_vectors_layers_use_and_format(tiny):
    g = torch.Generator().manual_seed(1)
    acc = torch.tensor([0.5, 0.9, 0.97, 0.8])
    vectors = {
        "security": make_vectors("security", torch.randn(4, 32, generator=g), accuracy=acc),
        "power": make_vectors(
            "power", torch.randn(4, 32, generator=g), mean_diff=torch.randn(4, 32, generator=g)
        ),
    }
    best = decode_vectors(tiny, vectors, layers="best", k=3)
    assert best.groupby("value")["layer"].unique().map(list).to_dict() == {
        "security": [2],
        "power": [3],
    }
    some = decode_vectors(tiny, vectors, layers=[1, 3], k=3, use="mean_diff")
    assert sorted(some["layer"].unique()) == [1, 3] and set(some["use"]) == {"mean_diff"}
    md = decode_vectors(tiny, vectors["power"], layers=[1], k=3, use="mean_diff")
    via_md = make_vectors("power", vectors["power"].mean_diff)
    assert (
        md["token_id"].tolist()
        == decode_vectors(tiny, via_md, layers=[1], k=3)["token_id"].tolist()
    )
    assert torch.allclose(direction_of(vectors["power"], "v").norm(dim=-1), torch.ones(4))
    text = format_logit_lens(best)
    assert "security  layer 2  (held-out acc 0.97 best)" in text
    assert text.count("top:") == 2 and text.count("bottom:") == 2
    with pytest.raises(ConvaError, match="subset of 0..3"):
        decode_vectors(tiny, vectors, layers=[4])
    with pytest.raises(ConvaError, match="use must be"):
        decode_vectors(tiny, vectors, use="w")
    with pytest.raises(ConvaError, match="k must be"):
        decode_vectors(tiny, vectors, k=0)
