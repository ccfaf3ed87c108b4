"""Your own data is used as given, checked against its value and its size, and
``conva fit --pairs`` takes it (issue 14, point 4)."""

import dataclasses
import json
import warnings

import pytest

from conva_tl.cli import main
from conva_tl.datasets import contrast_set, load_pairs
from conva_tl.errors import DataError
from conva_tl.identify import identify
from conva_tl.pipeline import contrast_sets_from_files
from conva_tl.probes import MIN_HELDOUT_GROUPS, fit_probes


def small_set(value="security", n_pairs=30):
    return contrast_set(value).subset(range(n_pairs))


def write_pairs(path, value="security", n_pairs=30):
    with path.open("w", encoding="utf-8") as fh:
        for pair in load_pairs(value)[:n_pairs]:
            fh.write(json.dumps(dataclasses.asdict(pair)) + "\n")
    return path


def test_custom_set_is_used_under_any_spelling_of_its_value(tiny):
    cs = small_set()
    vv = identify(tiny, ["security"], data={"Security": cs}, layers=[1, 2], progress=False)
    assert vv["security"].metadata["dataset"]["sha256"] == cs.sha256
    assert vv["security"].metadata["dataset"]["n_texts"] == 60


def test_set_of_another_value_is_refused(tiny):
    with pytest.raises(DataError, match="holds texts for 'power', not 'security'"):
        identify(tiny, ["security"], data={"security": small_set("power")}, progress=False)
    with pytest.raises(DataError, match="which values does not include"):
        identify(tiny, ["security"], data={"power": small_set("power")}, progress=False)


def _synthetic(n_pairs):
    import torch

    g = torch.Generator().manual_seed(0)
    acts = torch.randn(2, 2 * n_pairs, 8, generator=g)
    return acts, [1, 0] * n_pairs, [i for i in range(n_pairs) for _ in (0, 1)]


@pytest.mark.parametrize("n_pairs", [1, 2])
def test_too_few_pairs_for_a_held_out_split_is_an_error(n_pairs):
    acts, labels, groups = _synthetic(n_pairs)
    with pytest.raises(DataError, match=f"{n_pairs} groups"):
        fit_probes(acts, labels, groups, value="security")


def test_small_held_out_split_warns_with_the_number():
    acts, labels, groups = _synthetic(20)  # 20 pairs -> 4 held out
    with pytest.warns(UserWarning, match="only 4 groups"):
        fit_probes(acts, labels, groups, value="security")
    acts, labels, groups = _synthetic(5 * MIN_HELDOUT_GROUPS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_probes(acts, labels, groups, value="security")


def test_files_are_read_by_value_and_checked(tmp_path):
    sets = contrast_sets_from_files([write_pairs(tmp_path / "mine.jsonl")])
    assert list(sets) == ["security"] and len(sets["security"]) == 60
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "x", "value": "s\xe9curit\xe9"}\n')
    with pytest.raises(DataError, match="latin1.jsonl:1: not UTF-8"):
        contrast_sets_from_files([bad])
    mixed = write_pairs(tmp_path / "mixed.jsonl")
    with mixed.open("a") as fh:
        fh.write(json.dumps(dataclasses.asdict(load_pairs("power")[0])) + "\n")
    with pytest.raises(DataError, match="holds 2 values"):
        contrast_sets_from_files([mixed])


def test_conva_fit_pairs_fits_your_own_data(tmp_path, tiny, monkeypatch, capsys):
    import conva_tl.model

    monkeypatch.setattr(conva_tl.model, "load_model", lambda *a, **k: tiny)
    pairs = write_pairs(tmp_path / "mine.jsonl")
    out = tmp_path / "vecs"
    assert main(["fit", "--pairs", str(pairs), "--vectors", str(out)]) == 0
    meta = json.loads((out / "security.json").read_text())["metadata"]
    assert meta["dataset"]["sha256"] == contrast_sets_from_files([pairs])["security"].sha256
    assert json.loads((out / "manifest.json").read_text())["values"] == ["security"]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\n")
    assert main(["fit", "--pairs", str(bad), "--vectors", str(out)]) == 2
    assert "bad.jsonl" in capsys.readouterr().err
