"""The ``analyses/`` scripts share one parser: the same options have the same defaults everywhere."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conva_tl.probes import DEFAULT_C, LayerRule

ROOT = Path(__file__).resolve().parents[2]
ABLATIONS = sorted(p.stem for p in (ROOT / "analyses").glob("ablate_*.py"))
STEERING = ["ablate_p0", "ablate_layers", "ablate_control_mode", "ablate_data"]
PROBES = ["ablate_pooling", "ablate_input_format", "ablate_train_size", "ablate_calibration"]
OTHERS = ["logit_lens", "value_structure", "context_words"]


def load(name):
    if str(ROOT / "analyses") not in sys.path:
        sys.path.insert(0, str(ROOT / "analyses"))
    spec = importlib.util.spec_from_file_location(
        f"options_{name}", ROOT / "analyses" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def defaults(monkeypatch):
    """The parsed defaults of a script: its parser is captured instead of run."""
    load("ablate_p0")
    import _common

    monkeypatch.setattr(_common, "run", lambda fn, p, argv: p)
    return lambda name: load(name).main([]).parse_args([])


@pytest.mark.parametrize("name", ABLATIONS + OTHERS)
def test_shared_options_have_one_default(defaults, name):
    args = defaults(name)
    assert args.out == (
        Path("out/ablations") / name.removeprefix("ablate_")
        if name.startswith("ablate_")
        else Path("out") / name
    )
    assert args.verbose is False
    if name != "context_words":
        assert args.model is None and args.device is None and args.threads is None
        assert args.vectors == Path("out/vectors")
    if name.startswith("ablate_"):
        assert args.values == ["tradition", "stimulation"]
        assert args.backend == "fast" and args.batch_size == 8 and args.trust_vectors is False
    else:
        assert args.values is None  # all ten


@pytest.mark.parametrize("name", STEERING)
def test_steering_scripts_share_generation_and_judge_options(defaults, name):
    args = defaults(name)
    assert (args.questions, args.max_new_tokens, args.unrelated, args.gate) == (4, 32, 16, False)
    assert args.judge_model is None and args.base_url is None and args.api_key_env is None


@pytest.mark.parametrize("name", [*PROBES, "ablate_data"])
def test_probe_scripts_share_probe_options(defaults, name):
    args = defaults(name)
    assert (args.test_size, args.seed, args.C, args.pairs, args.layers) == (
        0.2,
        0,
        DEFAULT_C,
        None,
        None,
    )
    assert args.cache == Path("out/ablations/_activations")


def test_layer_ablation_defaults_are_the_layer_rule(defaults):
    args = defaults("ablate_layers")
    assert (args.threshold, args.exclude_last) == (LayerRule.threshold, LayerRule.exclude_last)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "evaluate_main",
            ["comparison", "--values", "security", "achievement", "--questions", "4"],
        ),
        (
            "control_priority",
            ["priority", "--values", "security", "achievement", "--questions", "4"],
        ),
        ("capability", ["capability", "--values", "security", "achievement", "--mc-limit", "40"]),
    ],
)
def test_evaluate_wrappers_forward_their_defaults_and_the_rest(monkeypatch, name, expected):
    module = load(name)
    calls = []
    monkeypatch.setattr(module, "main_evaluate", lambda argv: calls.append(argv) or 0)
    assert module.main(["--p0", "0.95"]) == 0
    argv = calls[0]
    assert argv[: len(expected)] == expected and argv[-2:] == ["--p0", "0.95"]
    assert argv[argv.index("--out") + 1] == f"out/eval/{expected[0]}"


@pytest.mark.parametrize(
    "argv",
    [["proxy"], ["proxy", "--out", "x", "--labels", "a.csv"]],
    ids=["neither", "both"],
)
def test_control_quality_proxy_needs_one_label_source(argv, capsys):
    # refused before any model is loaded, with exit status 2 and the fix in the message
    assert load("control_quality").main(argv) == 2
    assert "either --out" in capsys.readouterr().err


def _cell(value: str, method: str, csr: float) -> dict[str, object]:
    return {"value": value, "method": method, "csr": csr, "fr": 1.0, "n": 12.0}


def test_control_quality_headroom_writes_its_tables(tmp_path, capsys):
    results = tmp_path / "cq.json"
    table = [_cell("power", m, csr) for m, csr in [("base", 0.1), ("ica", 0.2), ("caa25", 0.1)]]
    table.append(_cell("power", "conva97", 0.5))
    results.write_text(json.dumps({"sections": {"r1": {"table": table}}}))
    assert load("control_quality").main(["headroom", "--results", str(results)]) == 0
    got = json.loads(results.read_text())["headroom"]
    assert got["table"][0]["best_margin"] == 0.3
    assert got["values_with_a_winning_round"] == ["power"]
    assert got["lift_over_base"]["table"][0]["steering"] == {"lift": 0.4, "cells": 1}
    assert "power: 1/1 rounds won" in capsys.readouterr().out
    assert "bar" not in got  # no per value summary or pooled table to read it on


def test_control_quality_headroom_reads_the_bar_on_the_summary_table(tmp_path, capsys):
    results = tmp_path / "cq.json"
    table = {
        "power": {"base": 0.1, "ica": 0.2, "caa": 0.1, "conva": 0.6, "conva_fr": 1.0},
        "hedonism": {"base": 0.2, "ica": 0.2, "caa": 0.3, "conva": 0.2, "conva_fr": 1.0},
    }
    summary = {"shipped_per_value_sets_3_to_6": {"table": table}}
    results.write_text(json.dumps({"sections": {}, "summary": summary}))
    assert load("control_quality").main(["headroom", "--results", str(results)]) == 0
    bar = json.loads(results.read_text())["headroom"]["bar"]["shipped_sets_3_to_6"]
    # best baseline caa .2 overall; 1.5x = .3, i.e. .6 over two values, hedonism gives .2
    assert bar["best_baseline"] == "caa" and bar["movers"] == ["power"]
    assert bar["movers_need"] == 0.4 and bar["movers_need_if_rest_at_best_baseline"] == 0.3
    assert "shipped_sets_3_to_6: 1.5x needs CSR 0.3" in capsys.readouterr().out
