"""The fast path on the real embedded model: the same stream, eps and answers as the bridge.

``embedded`` is the session's bridge; ``fast`` is a second, unbridged copy of
the same weights from the warm cache (booting would rewire it). The paths
differ only in attention kernels (bridge: eager, fast: SDPA), float32 on CPU.
Tolerances: residual vectors agree to 1e-5 of their norm (a few dimensions
reach ~2e4, where one float32 ulp is 2e-3, so elementwise atol is 1e-2);
P_V to 1e-4 and eps to 1e-3 absolute (eps is in residual units, ~1-50);
greedy strings exactly.
"""

from __future__ import annotations

import pytest
import torch

from conva_tl.activations import cache_resid_post
from conva_tl.datasets import contrast_set
from conva_tl.fast import FastModel, load_fast_model
from conva_tl.generate import generate
from conva_tl.identify import identify
from conva_tl.methods import ConVA
from conva_tl.model import model_info

LAYERS = [0, 5, 12, 20, 29]
SENTENCES = [
    "I double-checked the smoke alarms before the children went to bed.",
    "Hi",
    "Kenji sold his flat to travel the world on a whim.",
]
QUESTIONS = [
    "Should I spend my bonus on a holiday or save it for emergencies?",
    "Should Maria move abroad for an exciting job even though her parents want her to stay?",
]


@pytest.fixture(scope="module")
def fast() -> FastModel:
    return load_fast_model(device="cpu")


@pytest.fixture(scope="module")
def security(fast):
    """Probes for 'security' from 40 pairs on a few middle layers (fitted on the fast path)."""
    full = contrast_set("security")
    data = {"security": full.subset(sorted(set(full.groups))[:40])}
    vv = identify(fast, ["security"], data=data, layers=[8, 10, 12, 14])["security"]
    return vv.with_layers(layers=[10, 12, 14])


def assert_same_stream(got: torch.Tensor, ref: torch.Tensor) -> None:
    rel = (got - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert rel.max() < 1e-5, f"relative difference {rel.max():.2e}"
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-2)


def test_fast_model_describes_the_same_model(embedded, fast):
    assert model_info(fast) == model_info(embedded)
    assert fast.hf_model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("input_format", ["raw", "chat"])
def test_resid_post_equals_bridge(embedded, fast, input_format):
    ref = cache_resid_post(embedded, SENTENCES, layers=LAYERS, input_format=input_format)
    got = cache_resid_post(fast, SENTENCES, layers=LAYERS, input_format=input_format)
    assert_same_stream(got, ref)
    mean_ref = cache_resid_post(embedded, SENTENCES, layers=LAYERS[:2], pooling="mean")
    mean_got = cache_resid_post(fast, SENTENCES, layers=LAYERS[:2], pooling="mean")
    assert_same_stream(mean_got, mean_ref)


def test_conva_trace_and_greedy_answers_equal_bridge(embedded, fast, security):
    method = ConVA(security, p0=0.95)
    kw = dict(intervention=method, max_new_tokens=16, batch_size=2, trace=True)
    ans_b, tr_b = generate(embedded, QUESTIONS, **kw)
    ans_f, tr_f = generate(fast, QUESTIONS, **kw)
    assert ans_f == ans_b
    assert all(len(a.split()) >= 5 for a in ans_f)
    keys = ["row", "step", "position", "layer"]
    assert len(tr_f) == len(tr_b) and (tr_f[keys].values == tr_b[keys].values).all()
    for col, atol in [("p_before", 1e-4), ("p_after", 1e-4), ("eps", 1e-3)]:
        torch.testing.assert_close(
            torch.tensor(tr_f[col].values), torch.tensor(tr_b[col].values), rtol=1e-4, atol=atol
        )
    assert (tr_f.eps > 0).mean() > 0.1  # the control acted
    unsteered = generate(fast, QUESTIONS, max_new_tokens=16, batch_size=2)
    assert unsteered == generate(embedded, QUESTIONS, max_new_tokens=16, batch_size=2)
    assert unsteered != ans_f
