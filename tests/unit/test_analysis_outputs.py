"""The activation cache, contrast-set limits, probe-layer choice and the report writer of the ablations."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from conva_tl.analysis import (
    ProbeData,
    Report,
    cached_activations,
    limit_contrast_set,
    probe_layers,
    transfer_summary,
)
from conva_tl.datasets import contrast_set
from conva_tl.errors import ConvaError
from conva_tl.probes import LayerRule
from conva_tl.report import new_figure

TEXTS = ["I keep my family safe.", "I take risks for fun.", "Order keeps us calm."]


def test_cached_activations_round_trip_and_recover_from_a_broken_file(tiny, tmp_path):
    acts = cached_activations(tiny, TEXTS, cache_dir=tmp_path, batch_size=2)
    assert acts.shape == (tiny.cfg.n_layers, 3, tiny.cfg.d_model)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and json.loads(files[0].with_suffix(".json").read_text())["n_texts"] == 3
    torch.testing.assert_close(cached_activations(tiny, TEXTS, cache_dir=tmp_path), acts)
    other = cached_activations(tiny, TEXTS, pooling="mean", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 and not torch.equal(other, acts)
    files[0].write_bytes(b"truncated")
    torch.testing.assert_close(cached_activations(tiny, TEXTS, cache_dir=tmp_path), acts)
    torch.testing.assert_close(cached_activations(tiny, TEXTS, cache_dir=None), acts)


def test_limit_contrast_set_keeps_whole_pairs_and_both_labels():
    pairs = limit_contrast_set(contrast_set("security"), 5)
    assert len(set(pairs.groups)) == 5 and len(pairs) == 10 and sum(pairs.labels) == 5
    sf = ProbeData(pairs=3).contrast_set("security", "straightforward")
    assert len(sf) == 6 and sum(sf.labels) == 3
    assert limit_contrast_set(pairs, None) is pairs
    with pytest.raises(ConvaError):
        limit_contrast_set(pairs, 1)
    with pytest.raises(ConvaError):
        ProbeData(pairs=1)


def test_probe_layers():
    assert probe_layers(30, step=3) == [*range(0, 30, 3), 29]
    assert probe_layers(30, [14, 6, 14]) == [6, 14]
    with pytest.raises(ConvaError):
        probe_layers(30, [30])
    with pytest.raises(ConvaError):
        probe_layers(30, step=0)


def test_transfer_summary_counts_layers_by_the_layer_rule():
    df = pd.DataFrame(
        {
            "value": "security",
            "train": ["a"] * 4 + ["a"] * 4,
            "test": ["a"] * 4 + ["b"] * 4,
            "layer": [0, 1, 2, 3] * 2,
            "accuracy": [0.95, 0.99, 0.92, 0.97, 0.5, 0.6, 0.95, 0.7],
        }
    )
    s = transfer_summary(df, 4, rule=LayerRule(0.9, 1)).set_index("test")
    assert s.loc["a", "best_layer"] == 1 and s.loc["b", "acc_best_layer"] == 0.6
    assert s.loc["a", "layers>0.9"] == 3 and s.loc["b", "layers>0.9"] == 1
    assert "layers>0.9" in transfer_summary(df, 4).columns  # LayerRule() by default


def test_report_writes_tables_figures_documents_and_run_json(tmp_path):
    def figure():
        fig = new_figure(2.0, 2.0)
        fig.add_subplot().plot([0, 1])
        return fig

    table = pd.DataFrame({"a": [1, 2]})
    report = Report(
        "demo",
        table,
        "text",
        extra={"more": table},
        figures={"demo.png": figure},
        documents={"doc.json": {"k": 1}},
    )
    paths = report.write(tmp_path / "out", {"args": {"x": 1}})
    assert [p.name for p in paths] == ["demo.csv", "more.csv", "demo.png", "doc.json", "run.json"]
    assert pd.read_csv(paths[0]).equals(table) and paths[2].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(paths[3].read_text()) == {"k": 1}
    assert [p.name for p in report.write(tmp_path / "bare")][-1] == "doc.json"
    with_text = dataclasses.replace(report, text="line one\n", text_file="table.txt")
    written = with_text.write(tmp_path / "text")
    assert [p.name for p in written][-1] == "table.txt"
    assert written[-1].read_text() == "line one\n"


def test_context_words_report_table_and_text():
    from conva_tl.analysis.context_word_report import context_words_report

    report = context_words_report(["Security", "power"], top_k=10)
    assert list(dict.fromkeys(report.table["value"])) == ["security", "power"]
    assert len(report.table) == 2 * 3 and "security" in report.text
    assert list(report.figures) == ["context_words.png"] and report.dpi == 150
