"""The analysis scripts analyses/logit_lens.py and analyses/value_structure.py, end to end.

On the embedded model with three values fitted on 20 pairs each (so the
activation pass takes seconds); the scripts' model loading
(``analyses/_common.subject``) is replaced by the session's model. A last test runs both scripts on a tiny model saved to a
folder with no vectors yet, which exercises fitting and then reuse.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conva_tl.artifacts import save_vectors
from conva_tl.datasets import contrast_set
from conva_tl.identify import identify

ROOT = Path(__file__).resolve().parents[2]
VALUES3 = ["self-direction", "achievement", "security"]


def load_script(name):
    if str(ROOT / "analyses") not in sys.path:
        sys.path.insert(0, str(ROOT / "analyses"))  # the scripts import their shared `_common`
    spec = importlib.util.spec_from_file_location(
        f"analyses_{name}", ROOT / "analyses" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vectors_dir(embedded, tmp_path_factory):
    data = {v: contrast_set(v).subset(range(20)) for v in VALUES3}
    vectors = identify(embedded, VALUES3, data=data, progress=False)
    return save_vectors(tmp_path_factory.mktemp("vectors"), vectors.values())


def run(name, argv, model, monkeypatch):
    module = load_script(name)
    import _common

    monkeypatch.setattr(_common, "subject", lambda args: model)
    return module.main([str(a) for a in argv])


def test_logit_lens_script(embedded, vectors_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ll"
    rc = run(
        "logit_lens",
        [
            "--vectors",
            vectors_dir,
            "--out",
            out,
            "--values",
            *VALUES3,
            "--layers",
            10,
            20,
            "--k",
            5,
        ],
        embedded,
        monkeypatch,
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "== each value at its best layer ==" in text and "== layer 20 ==" in text
    df = pd.read_csv(out / "logit_lens.csv", keep_default_na=False)
    assert set(df["value"]) == set(VALUES3)
    assert {10, 20} <= set(df["layer"])
    assert (df.groupby(["value", "layer", "side"]).size() == 5).all()
    top = df[(df["side"] == "top")].sort_values(["value", "layer", "rank"])
    assert top.groupby(["value", "layer"])["logit"].apply(lambda s: s.is_monotonic_decreasing).all()
    assert (
        run(
            "logit_lens",
            ["--vectors", vectors_dir, "--out", out, "--values", "kindness"],
            embedded,
            monkeypatch,
        )
        == 2
    )


def test_value_structure_script(embedded, vectors_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "vs"
    rc = run(
        "value_structure",
        [
            "--vectors",
            vectors_dir,
            "--out",
            out,
            "--values",
            *VALUES3,
            "--layer",
            12,
            "--n-permutations",
            200,
        ],
        embedded,
        monkeypatch,
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "Most circumplex-like layers" in text and "Layer 12: r =" in text
    df = pd.read_csv(out / "structure_by_layer.csv", index_col="layer")
    assert len(df) == embedded.cfg.n_layers
    assert df["p_value"].between(1 / 201, 1.0).all()
    best = int(df["statistic"].idxmin())
    for name in (
        "cosine_layer12.png",
        f"cosine_layer{best}.png",
        "cosine_grid.png",
        "structure_by_layer.png",
        "accuracy.png",
        f"mds_layer{best}.png",
    ):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    mds = json.loads((out / f"mds_layer{best}.json").read_text())
    assert mds["values"] == VALUES3 and len(mds["embedding"]) == 3
    cos = pd.read_csv(out / "cosine_matrices.csv")
    assert len(cos) == embedded.cfg.n_layers * 9
    diag = cos[cos["value_a"] == cos["value_b"]]["cosine"]
    assert diag.sub(1.0).abs().max() < 1e-5


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from tiny import tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

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
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_scripts_fit_missing_vectors_then_reuse_them(tiny_folder, tmp_path, capsys, caplog):
    vectors = tmp_path / "vectors"
    common = ["--model", tiny_folder, "--vectors", vectors, "--values", *VALUES3]
    rc = load_script("logit_lens").main(
        [str(a) for a in [*common, "--out", tmp_path / "ll", "--k", 3]]
    )
    assert rc == 0
    assert "fitting them" in caplog.text
    caplog.clear()
    assert sorted(json.loads((vectors / "manifest.json").read_text())["values"]) == sorted(VALUES3)
    assert not list(vectors.glob("gate-*"))
    rc = load_script("value_structure").main(
        [str(a) for a in [*common, "--out", tmp_path / "vs", "--n-permutations", 50]]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "fitting them" not in caplog.text and "Most circumplex-like layers" in text
    assert (tmp_path / "vs" / "structure_by_layer.csv").is_file()
