"""No NaN steering: unfitted or degenerate probes are refused, hooks stay finite,
and vectors are checked against the model they run on (issue 14, points 1 and 3)."""

import logging
from dataclasses import replace

import pytest
import torch

from conva_tl.errors import ArtifactError
from conva_tl.generate import GenerationContext, generate
from conva_tl.hooks import hooked, resid_post_name
from conva_tl.identify import identify
from conva_tl.methods import CAA, ConVA, steer
from conva_tl.probes import MIN_W_NORM, LayerRule, ValueVectors
from conva_tl.steering import conva_prompt_resid_hook, conva_resid_hook, conva_shift

QUESTION = "Should I save my bonus or spend it on a holiday?"


def vectors(n_layers=4, d_model=32, layers=(1, 2), seed=0) -> ValueVectors:
    g = torch.Generator().manual_seed(seed)
    return ValueVectors(
        value="security",
        w=torch.randn(n_layers, d_model, generator=g),
        b=torch.zeros(n_layers),
        accuracy=torch.ones(n_layers),
        train_accuracy=torch.ones(n_layers),
        control_layers=tuple(layers),
        mean_diff=torch.randn(n_layers, d_model, generator=g),
        metadata={},
    )


def scaled(vv: ValueVectors, layer: int, factor: float) -> ValueVectors:
    w = vv.w.clone()
    w[layer] = w[layer] * factor
    return replace(vv, w=w)


@pytest.fixture(scope="module")
def subset_vectors(tiny):
    # Fit layer 2 only; threshold 0.99 is out of reach on a random model, so the
    # fallback runs: before the fix it padded the choice with unfitted layers 0, 1.
    return identify(
        tiny,
        ["security"],
        layers=[2],
        rule=LayerRule(threshold=0.99, exclude_last=1, fallback_top=3),
        progress=False,
    )["security"]


def test_fallback_never_selects_an_unfitted_layer(subset_vectors):
    assert subset_vectors.control_layers == (2,)
    assert subset_vectors.fitted_layers == (2,)
    assert float(subset_vectors.w[0].norm()) == 0.0  # unfitted layers stay zero


def test_layer_rule_picks_only_among_candidates():
    acc = [0.0, 0.0, 0.7, 0.6, 0.0, 0.0]
    assert LayerRule(exclude_last=1, fallback_top=3).select(acc, candidates=[2, 3]) == (2, 3)
    # without candidates any allowed layer may fill the fallback
    assert LayerRule(exclude_last=1, fallback_top=3).select(acc) == (0, 2, 3)


def test_no_passing_layer_log_names_model_layers(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="conva_tl.probes"):
        identify(
            tiny,
            ["security"],
            layers=[2],
            rule=LayerRule(threshold=0.99, exclude_last=1),
            progress=False,
        )
    assert "model layer 2" in caplog.text and "[2]" in caplog.text


def test_with_layers_refuses_an_unfitted_layer(subset_vectors):
    with pytest.raises(ArtifactError, match=r"no usable probe at control layer\(s\) \[1\]"):
        subset_vectors.with_layers([1])
    assert subset_vectors.with_layers(
        rule=LayerRule(threshold=0.0, exclude_last=0)
    ).control_layers == (2,)


@pytest.mark.parametrize("factor", [0.0, 1e-20, 1e-30, float("nan")])
def test_conva_refuses_a_zero_or_tiny_probe(factor):
    vv = scaled(vectors(), 1, factor)
    with pytest.raises(ArtifactError, match=f"{MIN_W_NORM:g}"):
        ConVA(vv)
    with pytest.raises(ArtifactError, match=r"\[3\]"):
        ConVA(scaled(vectors(), 3, factor), layers=(3,))  # an explicit override too


@pytest.mark.parametrize("factor", [0.0, 1e-20, 1e-30, 1e-7])
def test_hooks_stay_finite_for_degenerate_probes(factor):
    g = torch.Generator().manual_seed(0)
    resid = torch.randn(2, 3, 16, generator=g) * 5
    w = torch.randn(16, generator=g) * factor
    allowed = torch.ones(2, 3, dtype=torch.bool)
    out, eps, _ = conva_shift(resid, w, 0.0, 0.99, allowed)
    assert torch.isfinite(out).all() and torch.isfinite(eps).all()
    for hook in (conva_resid_hook, conva_prompt_resid_hook):
        ctx = GenerationContext(token_mask=allowed, managed=True, prompt_pass=True, trace=[])
        steered = hook(resid, None, layer=1, w=w, b=0.0, p0=0.99, ctx=ctx)
        assert torch.isfinite(steered).all(), hook.__name__


def test_shift_that_overflows_the_dtype_keeps_the_input():
    # |w| just above the bound: the float32 push is finite but overflows float16.
    resid = torch.zeros(1, 2, 8, dtype=torch.float16)
    w = torch.full((8,), 2 * MIN_W_NORM / 8**0.5)
    out, eps, _ = conva_shift(resid, w, -5.0, 0.99, torch.ones(1, 2, dtype=torch.bool))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.equal(out, resid) and (eps == 0).all()


def _never_runs(tiny):
    """A read-only hook on block 0 that counts forward passes."""
    return hooked(tiny, [(resid_post_name(0), lambda x, hook: None)])


@pytest.mark.parametrize("shape", [(3, 32), (4, 48), (5, 32)])
def test_vectors_of_another_shape_are_refused_before_any_forward_pass(tiny, shape):
    vv = vectors(*shape)
    for run in (
        lambda: generate(tiny, [QUESTION], intervention=ConVA(vv), max_new_tokens=2),
        lambda: generate(tiny, [QUESTION], intervention=CAA(vv), max_new_tokens=2),
    ):
        with _never_runs(tiny) as calls, pytest.raises(ArtifactError) as err:
            run()
        assert sum(calls.values()) == 0
        assert f"{shape[0]} layers x d_model {shape[1]}" in str(err.value)
        assert "4 layers x d_model 32" in str(err.value)
    with _never_runs(tiny) as calls, pytest.raises(ArtifactError, match="4 layers"):
        with steer(tiny, vv):
            tiny(torch.tensor([[1, 2, 3]]), return_type=None)
    assert sum(calls.values()) == 0


def test_caa_refuses_layers_without_a_steering_vector():
    vv = vectors()
    md = vv.mean_diff.clone()
    md[3] = 0
    with pytest.raises(ArtifactError, match=r"zero steering vector .* \[3\]"):
        CAA(replace(vv, mean_diff=md), layers=(3,))
    with pytest.raises(ArtifactError, match="outside"):
        CAA(vv, layers=(7,))
