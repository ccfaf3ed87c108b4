"""Bad arguments fail fast with one clear ConvaError, before expensive work
(issue 14, points 5 to 8)."""

import argparse

import jaxtyping
import pytest
import torch

import conva_tl.demo
import conva_tl.model
from conva_tl.cli import _parser, main
from conva_tl.errors import ConvaError, ModelLoadError
from conva_tl.gate import CallableGate
from conva_tl.generate import GenerationContext, generate
from conva_tl.methods import ConVA
from conva_tl.model import check_device
from conva_tl.pipeline import fit_all, make_method
from conva_tl.probes import ValueVectors
from conva_tl.steering import conva_resid_hook

QUESTION = "Should I save my bonus or spend it on a holiday?"


def vectors(value="security") -> ValueVectors:
    g = torch.Generator().manual_seed(0)
    return ValueVectors(
        value,
        torch.randn(4, 32, generator=g),
        torch.zeros(4),
        torch.ones(4),
        torch.ones(4),
        (1, 2),
        torch.randn(4, 32, generator=g),
        {},
    )


@pytest.fixture
def as_a_user():
    """Turn off the suite's run-time type checker (pytest addopts), as in a user's
    session: the wrong types below reach the package's own checks."""
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: every check must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(conva_tl.model, "load_model", refuse)
    monkeypatch.setattr(conva_tl.demo, "load_model", refuse)


# point 5: prompts longer than the context


def test_prompt_beyond_the_context_is_refused_before_generating(tiny):
    long_question = " ".join(["the quick brown fox"] * 200)  # far beyond n_ctx = 256
    with pytest.raises(ConvaError, match="exceeds the model's context of 256 tokens"):
        generate(tiny, [QUESTION, long_question], max_new_tokens=2)
    n = len(tiny.tokenizer(QUESTION).input_ids)
    with pytest.raises(ConvaError, match="lower max_new_tokens"):
        generate(tiny, [QUESTION], max_new_tokens=256 - n + 1)


# point 6: every argument and output path checked before the model is loaded


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--values", "security", "--C", "-1"],
        ["fit", "--values", "security", "--threshold", "1.5"],
        ["fit", "--values", "kindness"],
        ["steer", "hi", "--value", "security", "--p0", "1.5"],
        ["steer", "hi", "--value", "security", "--method", "sft"],
        ["steer", "hi", "--value", "security", "--max-new-tokens", "0"],
        ["demo", "--p0", "1.5"],
        ["demo", "--max-new-tokens", "0"],
    ],
)
def test_bad_arguments_fail_before_the_model_loads(no_model, argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("conva: error:")


def test_output_path_under_a_file_fails_before_the_model_loads(no_model, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for argv in (
        ["fit", "--values", "security", "--vectors", str(blocker / "vecs")],
        ["steer", "hi", "--value", "security", "--vectors", str(blocker)],
        ["demo", "--out", str(blocker / "demo")],
    ):
        assert main(argv) == 2, argv
        assert "file.txt" in capsys.readouterr().err


def test_fit_values_needs_at_least_one_value(no_model):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--values"])
    assert exc.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="no usable CUDA GPU"):
        check_device("cuda")
    with pytest.raises(ModelLoadError, match="not a torch device"):
        check_device("gpu0")
    assert check_device("cpu") == "cpu"


# point 7: raw exceptions become ConvaErrors


@pytest.mark.parametrize(
    ("questions", "kwargs", "message"),
    [
        ([None], {}, r"questions\[0\] is NoneType"),
        ([123], {}, r"questions\[0\] is int"),
        ([QUESTION], {"max_new_tokens": 2.5}, "max_new_tokens must be an integer"),
        ([QUESTION], {"temperature": "hot"}, "temperature must be a finite number"),
        ([QUESTION], {"max_tokens": 5}, "unknown options"),
        ([QUESTION], {"intervention": "conva"}, "intervention must be a method"),
    ],
)
def test_generate_arguments_are_checked(tiny, as_a_user, questions, kwargs, message):
    with pytest.raises(ConvaError, match=message):
        generate(tiny, questions, **kwargs)


def test_p0_must_be_a_number(as_a_user):
    with pytest.raises(ConvaError, match="P0 must be a number"):
        ConVA(vectors(), p0="0.9")


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda texts: None, "returned None"),
        (lambda texts: [[1.0]] * len(texts), r"shape \(1, 1\)"),
        (lambda texts: ["high"] * len(texts), "not numbers"),
        (lambda texts: [float("nan")] * len(texts), "non-finite"),
    ],
)
def test_callable_gate_output_is_checked(tiny, fn, message):
    gate = CallableGate(fn)
    with pytest.raises(ConvaError, match=message):
        generate(tiny, [QUESTION], intervention=ConVA(vectors(), gate=gate), max_new_tokens=2)


def test_callable_gate_configuration_is_checked(as_a_user):
    with pytest.raises(ConvaError, match="threshold"):
        CallableGate(lambda t: [1.0], threshold="high")
    with pytest.raises(ConvaError, match="function"):
        CallableGate(0.5)


def test_fit_all_with_no_values_is_an_error(tiny, tmp_path):
    with pytest.raises(ConvaError, match="values is empty"):
        fit_all(tiny, tmp_path, [])


# point 8: minor


def test_make_method_refuses_another_values_vectors():
    with pytest.raises(ConvaError, match="given the vectors of 'security'"):
        make_method("conva", "power", vectors("security"))
    assert make_method("conva", "Security", vectors("security")).vectors.value == "security"


def test_trace_reports_p_after_as_the_model_sees_it_in_bfloat16():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g)
    resid = (torch.randn(1, 6, 16, generator=g) * 200).to(torch.bfloat16)
    ctx = GenerationContext(
        token_mask=torch.ones(1, 6, dtype=torch.bool), managed=True, prompt_pass=True, trace=[]
    )
    out = conva_resid_hook(resid, None, layer=1, w=w, b=0.0, p0=0.9, ctx=ctx)
    seen = torch.sigmoid(out.float() @ w)[0]
    reported = torch.tensor([r["p_after"] for r in ctx.trace])
    torch.testing.assert_close(reported, seen, atol=1e-6, rtol=0)
    assert (seen - 0.9).abs().max() > 1e-3  # the cast does move it off P0 here


def test_steer_and_demo_options_have_help():
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("steer", "demo"):
        for action in sub.choices[name]._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"conva {name} {action.dest} has no help"
