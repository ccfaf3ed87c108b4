"""Every ``analyses/ablate_*.py`` script end to end on the embedded model, smallest settings.

The scripts run in-process (``main(argv)``) on the fast path of the embedded
model, loaded once for the module: ``analyses/_common.subject`` returns it. Artifacts are
small but real: probes for one value from 12 pairs (6 per label for the
straightforward data) on four layers, three of them controlled, and a gate
from 10 + 20 prompts, all in a temporary ``--vectors`` folder that the scripts
reuse with ``--trust-vectors``. Each script answers 2 questions with 8 new
tokens (or fits probes on 8-12 pairs at two layers) and must write its CSV and
PNG.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from conva_tl.artifacts import save_gates, save_vectors
from conva_tl.datasets import contrast_set, load_questions, load_unrelated
from conva_tl.gate import fit_gate
from conva_tl.identify import identify

ROOT = Path(__file__).resolve().parents[2]
VALUE = "security"
FIT_LAYERS = [2, 6, 10, 14]
CONTROL = [6, 10, 14]
STEER = ["--questions", "2", "--max-new-tokens", "8", "--unrelated", "2", "--batch-size", "4"]


def load_script(name: str):
    if str(ROOT / "analyses") not in sys.path:
        sys.path.insert(0, str(ROOT / "analyses"))  # the scripts import their shared `_common`
    spec = importlib.util.spec_from_file_location(
        f"analyses_ablate_{name}", ROOT / "analyses" / f"ablate_{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fast():
    import torch

    from conva_tl.analysis import load_subject

    threads = torch.get_num_threads()  # the scripts may lower it on a busy CPU
    yield load_subject(backend="fast", device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def scripts_use_fast(fast, monkeypatch):
    load_script("p0")  # puts analyses/ on sys.path
    import _common

    monkeypatch.setattr(_common, "subject", lambda args: fast)


@pytest.fixture(scope="module")
def vectors_dir(fast, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vectors")
    pairs = contrast_set(VALUE).subset(range(12))
    vv = identify(fast, [VALUE], data={VALUE: pairs}, layers=FIT_LAYERS, batch_size=16)[
        VALUE
    ].with_layers(CONTROL)
    save_vectors(folder, vv)
    sf_full = contrast_set(VALUE, "straightforward")
    keep = [g for g, y in zip(sf_full.groups, sf_full.labels, strict=True) if y == 1][:6] + [
        g for g, y in zip(sf_full.groups, sf_full.labels, strict=True) if y == 0
    ][:6]
    sf = identify(
        fast, [VALUE], data={VALUE: sf_full.subset(keep)}, layers=FIT_LAYERS, batch_size=16
    )[VALUE]
    save_vectors(folder / "straightforward", sf.with_layers(CONTROL))
    gate = fit_gate(
        fast,
        VALUE,
        vectors=vv,
        positives=[q.question for q in load_questions(VALUE, split="gate")[:10]],
        negatives=[p.prompt for p in load_unrelated()[:20]],
    )
    save_gates(folder, [gate])
    return folder


def run(name, argv, tmp_path, vectors_dir, capsys):
    out = tmp_path / name
    common = [
        "--values",
        VALUE,
        "--out",
        out,
        "--vectors",
        vectors_dir,
        "--trust-vectors",
        "--device",
        "cpu",
    ]
    rc = load_script(name).main([str(a) for a in [*common, *argv]])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert (out / "run.json").is_file()
    return out, text


def assert_figure(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"


def test_ablate_p0(vectors_dir, tmp_path, capsys):
    out, text = run("p0", [*STEER, "--p0", "0.6", "0.99"], tmp_path, vectors_dir, capsys)
    df = pd.read_csv(out / "p0.csv")
    assert list(df.setting) == ["base", "p0=0.6", "p0=0.99"]
    assert df.loc[0, "kl_unrelated"] == 0.0 and (df.kl_unrelated.iloc[1:] >= 0).all()
    assert df.p_v.between(0, 1).all() and (df.ppl > 1).all() and df.logit_v.notna().all()
    answers = pd.read_csv(out / "answers.csv")
    assert (
        len(answers) == 6
        and ((1 / (1 + (-answers.logit_v).map(math.exp)) - answers.p_v).abs() < 1e-6).all()
    )
    assert df.loc[2, "kl_value"] >= df.loc[1, "kl_value"]  # a higher target moves more
    assert "No judge configured" in text and "kl_unrelated" in text
    assert_figure(out / "p0.png")


def test_ablate_layers(vectors_dir, tmp_path, capsys):
    out, _ = run(
        "layers",
        [*STEER, "--thresholds", "0.5", "--exclude-last", "5"],
        tmp_path,
        vectors_dir,
        capsys,
    )
    df = pd.read_csv(out / "layers.csv")
    assert (
        df.setting.iloc[0] == "base"
        and "best" in set(df.setting)
        and "acc>0.9 incl. last 5" in set(df.setting)
    )
    assert (df[df.setting == "best"].n_layers == 1).all()
    assert_figure(out / "layers.png")
    assert_figure(out / "accuracy.png")


def test_ablate_g0(vectors_dir, tmp_path, capsys):
    out, text = run(
        "g0",
        ["--questions", "2", "--unrelated", "2", "--mc", "2", "--g0", "0.1", "0.5", "0.9"],
        tmp_path,
        vectors_dir,
        capsys,
    )
    df = pd.read_csv(out / "g0.csv")
    assert list(df.g0) == [0.1, 0.5, 0.9]
    for col in ("open_value", "open_unrelated", "open_mc", "kl_value", "kl_unrelated", "kl_mc"):
        assert df[col].is_monotonic_decreasing
    assert len(pd.read_csv(out / "gate_scores.csv")) == 6
    assert set(pd.read_csv(out / "auroc.csv").negatives) == {"unrelated", "mc"}
    assert_figure(out / "g0.png")


def test_ablate_train_size(vectors_dir, tmp_path, capsys):
    out, _ = run(
        "train_size",
        [
            "--pairs",
            "12",
            "--layers",
            "6",
            "14",
            "--fractions",
            "0.5",
            "1.0",
            "--repeats",
            "1",
            "--cache",
            tmp_path / "cache",
        ],
        tmp_path,
        vectors_dir,
        capsys,
    )
    df = pd.read_csv(out / "train_size.csv")
    assert set(df.layer) == {6, 14} and set(df.fraction) == {0.5, 1.0}
    assert (df[df.fraction == 1.0].cos_ref > 0.9999).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.n_pairs) == [5, 9]  # 12 pairs: 9 train, 3 held out; half of 9 rounds up
    assert_figure(out / "train_size.png")


@pytest.mark.parametrize(
    ("name", "views"), [("pooling", {"last", "mean"}), ("input_format", {"raw", "chat"})]
)
def test_ablate_transfer_scripts(name, views, vectors_dir, tmp_path, capsys):
    out, text = run(
        name,
        ["--pairs", "8", "--layers", "6", "14", "--cache", tmp_path / "cache"],
        tmp_path,
        vectors_dir,
        capsys,
    )
    df = pd.read_csv(out / f"{name}.csv")
    assert set(df.train) == views and set(df.test) == views and len(df) == 4 * 2
    assert df.accuracy.between(0, 1).all()
    assert len(pd.read_csv(out / "summary.csv")) == 4
    assert_figure(out / f"{name}.png")
    assert any((tmp_path / "cache").glob("*.safetensors"))


def test_ablate_data(vectors_dir, tmp_path, capsys):
    out, _ = run(
        "data",
        [*STEER, "--pairs", "8", "--layers", "6", "14", "--cache", tmp_path / "cache"],
        tmp_path,
        vectors_dir,
        capsys,
    )
    df = pd.read_csv(out / "data.csv")
    assert list(df.setting) == ["base", "pairs", "straightforward"]
    transfer = pd.read_csv(out / "transfer.csv")
    assert {("straightforward", "pairs"), ("pairs", "straightforward")} <= set(
        zip(transfer.train, transfer.test, strict=True)
    )
    assert_figure(out / "data.png")
    assert_figure(out / "transfer.png")


def test_ablate_control_mode(vectors_dir, tmp_path, capsys):
    out, text = run("control_mode", [*STEER, "--p0", "0.99"], tmp_path, vectors_dir, capsys)
    df = pd.read_csv(out / "control_mode.csv").set_index("setting")
    assert list(df.index) == ["base", "per_token", "per_prompt"]
    assert (df.loc[["per_token", "per_prompt"], "eps_abs_prompt"] > 0).all()
    assert (df.loc[["per_token", "per_prompt"], "moved"] > 0).all()
    assert "eps_abs" in text
    assert_figure(out / "control_mode.png")


def test_ablate_calibration(vectors_dir, tmp_path, capsys):
    out, text = run(
        "calibration",
        [
            "--pairs",
            "12",
            "--layers",
            "6",
            "14",
            "--Cs",
            "1",
            "0.03",
            "--folds",
            "3",
            "--cache",
            tmp_path / "cache",
        ],
        tmp_path,
        vectors_dir,
        capsys,
    )
    df = pd.read_csv(out / "calibration.csv")
    assert len(df) == 2 * 2 and set(df.C) == {1.0, 0.03}
    # L2 shrinks the probe: the weaker penalty has the larger |w| at every layer
    wide = df.pivot(index="layer", columns="C", values="w_norm")
    assert (wide[1.0] > wide[0.03]).all()
    assert "best-calibrated C" in text
    assert_figure(out / "calibration.png")
