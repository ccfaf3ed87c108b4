from importlib.metadata import entry_points

import pytest

from conva_tl.cli import main


def test_context_words_command_prints_the_table(capsys):
    assert main(["context-words", "--value", "security", "--kind", "both"]) == 0
    out = capsys.readouterr().out
    assert "security" in out and "pairs" in out and "straightforward" in out


def test_unknown_value_is_a_clear_error(capsys):
    code = main(["context-words", "--value", "kindness"])
    assert code != 0
    assert "kindness" in capsys.readouterr().err


def test_bad_option_is_rejected_by_argparse():
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--pooling", "max"])
    assert exc.value.code == 2


def conva_entry_point():
    """The function the installed ``conva`` command runs (pyproject's [project.scripts])."""
    (ep,) = entry_points(group="console_scripts", name="conva")
    return ep.load()


def test_conva_entry_point_is_the_cli_main():
    assert conva_entry_point() is main


def test_unknown_method_is_reported(capsys, monkeypatch):
    import conva_tl.model

    def no_model(*a, **k):
        raise AssertionError("the method is checked before the model is loaded")

    monkeypatch.setattr(conva_tl.model, "load_model", no_model)
    argv = ["steer", "Should I save?", "--value", "security", "--method", "base,sft"]
    assert conva_entry_point()(argv) == 2
    err = capsys.readouterr().err
    assert "unknown method(s) ['sft']" in err and "conva-per-prompt" in err


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if "security" in p.name}


def test_steer_and_fit_never_refit_over_vectors_fitted_otherwise(
    tiny, tmp_path, monkeypatch, capsys
):
    import json

    import conva_tl.model
    import conva_tl.store
    from conva_tl.pipeline import FitSettings, fit_all
    from conva_tl.probes import DEFAULT_C

    folder = tmp_path / "vecs"
    # what `conva fit --C 1 --raw-scale` leaves behind (a rule the random tiny model passes)
    rule = {"threshold": 0.0, "exclude_last": 1, "min_depth": 0.5}
    fitted = FitSettings(C=1.0, standardize=False, **rule)
    fit_all(tiny, folder, ["security"], settings=fitted, progress=False)
    before = _snapshot(folder)
    assert {"security.json", "security.safetensors", "gate-security.json"} <= set(before)
    monkeypatch.setattr(conva_tl.model, "load_model", lambda *a, **k: tiny)
    common = ["--values", "security", "--vectors", str(folder)]
    common += ["--threshold", "0", "--exclude-last", "1", "--min-depth", "0.5"]

    with monkeypatch.context() as m:
        m.setattr(
            conva_tl.store.ArtifactStore, "fit", lambda *a, **k: pytest.fail("steer refitted")
        )
        argv = ["steer", "Should I save?", "--value", "security", "--vectors", str(folder)]
        assert main([*argv, "--method", "base,conva,caa", "--max-new-tokens", "2"]) == 0
    assert "[conva]" in capsys.readouterr().out and _snapshot(folder) == before

    assert main(["fit", *common]) == 2  # default settings differ: refused, nothing touched
    err = capsys.readouterr().err
    assert "--overwrite" in err and "C=1.0" in err and "standardize=False" in err
    assert _snapshot(folder) == before

    assert main(["fit", *common, "--C", "1", "--raw-scale"]) == 0  # same settings: resumed
    assert _snapshot(folder) == before

    assert main(["fit", *common, "--overwrite"]) == 0
    settings = json.loads((folder / "security.json").read_text())["metadata"]["fit_settings"]
    assert settings["C"] == DEFAULT_C and settings["standardize"] is True


def test_a_partial_fit_keeps_the_folder_summary_of_every_value(tiny, tmp_path):
    import json

    import pandas as pd

    from conva_tl.pipeline import FitSettings, fit_all

    rule = {"threshold": 0.0, "exclude_last": 1, "min_depth": 0.5}
    folder = tmp_path / "vecs"
    fit_all(tiny, folder, ["security"], settings=FitSettings(C=1.0, **rule), progress=False)
    fit_all(tiny, folder, ["power"], settings=FitSettings(C=0.5, **rule), progress=False)
    summary = pd.read_csv(folder / "summary.csv", index_col=0)
    assert list(summary.index) == ["power", "security"]  # circumplex order, both kept
    assert summary["gate_block"].notna().all()
    settings = json.loads((folder / "fit_settings.json").read_text())
    assert {v: s["C"] for v, s in settings.items()} == {"power": 0.5, "security": 1.0}


def test_store_require_refuses_vectors_fitted_otherwise(tiny, tmp_path):
    from conva_tl.errors import ArtifactError
    from conva_tl.pipeline import FitSettings, fit_all
    from conva_tl.store import ArtifactStore

    rule = {"threshold": 0.0, "exclude_last": 1, "min_depth": 0.5}
    folder = tmp_path / "vecs"
    fit_all(tiny, folder, ["security"], settings=FitSettings(C=1.0, **rule), progress=False)
    before = (folder / "security.safetensors").read_bytes()
    store = ArtifactStore(folder)
    trusted = store.vectors(tiny, ["security"])  # require=None: used as it is
    assert trusted["security"].metadata["fit_settings"]["C"] == 1.0
    with pytest.raises(ArtifactError, match="--overwrite") as err:
        store.vectors(tiny, ["security"], require=FitSettings(**rule))
    assert "C=1.0" in str(err.value)
    assert (folder / "security.safetensors").read_bytes() == before  # nothing refitted
    same = store.vectors(tiny, ["security", "power"], require=FitSettings(C=1.0, **rule))
    assert same["power"].metadata["fit_settings"]["C"] == 1.0  # missing ones fitted with require
