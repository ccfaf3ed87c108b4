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


def test_unknown_method_is_reported(capsys, monkeypatch):
    from conva_tl.errors import ConvaError
    from conva_tl.pipeline import make_method

    with pytest.raises(ConvaError, match="unknown method"):
        make_method("sft", "security")
