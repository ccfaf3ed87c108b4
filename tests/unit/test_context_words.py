import pandas as pd
import pytest

from conva_tl.analysis import (
    STOPWORDS,
    context_word_report,
    context_word_table,
    context_word_text,
    context_words,
    index_matched_overlap,
    main_context_words,
    pair_overlap,
    pair_scores,
    text_overlap,
    tokenize,
    value_word_forms,
)
from conva_tl.datasets import load_pairs
from conva_tl.errors import DataError
from conva_tl.values import VALUES


def test_tokenize_strips_possessives_and_splits_contractions():
    assert tokenize("My Family\u2019s plan didn't change; the parents' house.") == [
        "my",
        "family",
        "plan",
        "didn",
        "t",
        "change",
        "the",
        "parents",
        "house",
    ]
    assert {"didn", "t", "s", "don"} <= STOPWORDS


def test_value_word_forms_are_name_and_plural_only():
    assert value_word_forms("Security") == {"security", "securities"}
    assert value_word_forms("self_direction") == {"self", "selfs", "direction", "directions"}
    assert "traditional" not in value_word_forms("tradition")


def test_stopwords_and_value_name_excluded_but_derived_forms_kept():
    pos = ["The security of a secure home is what security means to me."] * 3
    neg = ["Securities and the thrill of the unknown are what I want."] * 3
    r = context_words(pos, neg, value="security", top_k=50)
    listed = set(r.unique_positive) | set(r.unique_negative) | set(r.common)
    assert not listed & STOPWORDS
    assert "security" not in listed and "securities" not in listed
    assert "secure" in r.unique_positive and "home" in r.unique_positive
    assert "thrill" in r.unique_negative


def test_value_none_keeps_the_value_name():
    r = context_words(["security first"], ["security last"], value=None, top_k=5)
    assert r.common == ("security",) and r.value is None


def test_word_frequent_on_both_sides_is_common():
    pos = ["family dinner safe", "family safe", "family home"]
    neg = ["family dinner risky", "family gamble", "family risky"]
    r = context_words(pos, neg, value="security", top_k=3)
    assert r.common == ("family", "dinner")
    assert r.frequency("family") == (3, 3)
    assert r.unique_positive == ("safe",) and r.unique_negative == ("risky",)
    assert r.n_common + r.n_unique_positive == 3
    assert r.n_common + r.n_unique_negative == 3


def test_ties_are_broken_alphabetically_and_results_deterministic():
    pos = ["zebra apple mango", "mango"]
    neg = ["kiwi banana", "cherry"]
    r = context_words(pos, neg, value=None, top_k=2)
    # mango 2; apple and zebra tie at 1: apple wins alphabetically.
    assert r.unique_positive == ("mango", "apple")
    assert r.unique_negative == ("banana", "cherry")
    assert r.common == ()
    again = context_words(list(reversed(pos)), list(reversed(neg)), value=None, top_k=2)
    assert again == r


def test_common_words_ordered_by_total_count():
    pos = ["alpha alpha beta", "gamma"]
    neg = ["beta beta beta", "alpha gamma"]
    r = context_words(pos, neg, value=None, top_k=3)
    assert r.common == ("beta", "alpha", "gamma")  # 4, 3, 2


def test_extra_stopwords_are_excluded_case_insensitively():
    r = context_words(
        ["Family home"], ["family trip"], value=None, top_k=5, extra_stopwords=["FAMILY"]
    )
    assert "family" not in r.common + r.unique_positive + r.unique_negative


def test_report_to_dict_carries_counts():
    r = context_words(["safe safe home"], ["risky home"], value="security", top_k=5)
    d = r.to_dict()
    assert d["n_common"] == 1 and d["common"] == [{"word": "home", "positive": 1, "negative": 1}]
    assert d["unique_positive"][0] == {"word": "safe", "positive": 2, "negative": 0}


@pytest.mark.parametrize("bad", [0, -1, True])
def test_bad_top_k_raises(bad):
    with pytest.raises(DataError, match="top_k"):
        context_words(["a"], ["b"], value=None, top_k=bad)


def test_empty_side_and_unknown_value_raise():
    with pytest.raises(DataError, match="both sides"):
        context_words([], ["b"], value=None)
    with pytest.raises(DataError, match="unknown value"):
        context_words(["a"], ["b"], value="kindness")


def test_overlap_is_one_for_identical_and_lower_for_different_texts():
    same = "I kept the old locks on the door."
    assert text_overlap(same, same) == pytest.approx(1.0, abs=1e-12)
    close = text_overlap(same, "I changed the old locks on the door.")
    far = text_overlap(same, "We went hiking in the mountains.")
    assert 0.0 < far < close < 1.0
    # {i, kept, the x2, old, locks, on, door} vs changed for kept: 7 shared of 9.
    assert close == pytest.approx(7 / 9, abs=1e-12)
    assert text_overlap("apples pears", "kiwi plums") == 0.0


def test_pair_overlap_is_the_mean_of_pair_scores():
    pairs = [("a b c", "a b c"), ("a b", "c d")]
    assert pair_scores(pairs) == [1.0, 0.0]
    assert pair_overlap(pairs) == pytest.approx(0.5, abs=1e-12)
    assert pair_overlap(load_pairs("security")[:1]) == pytest.approx(
        text_overlap(load_pairs("security")[0].positive, load_pairs("security")[0].negative)
    )
    with pytest.raises(DataError):
        pair_overlap([])


def test_index_matched_overlap_ignores_extra_texts():
    assert index_matched_overlap(["a b", "x"], ["a b"]) == pytest.approx(1.0, abs=1e-12)


def test_table_and_format():
    df = context_word_table(["security"], ("pairs", "straightforward"), top_k=10)
    assert list(df["kind"]) == ["pairs", "straightforward"]
    assert list(df["overlap_basis"]) == ["pairs", "index-matched baseline"]
    assert (df["n_common"] + df["n_unique_pos"] == 10).all()
    text = context_word_text(df)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("value") and set(lines[1]) <= {"-", " "}
    assert isinstance(df, pd.DataFrame)


def test_cli_prints_table_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "cw.csv"
    assert (
        main_context_words(
            ["--value", "power", "--kind", "pairs", "--top-k", "5", "--csv", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "power" in printed and "straightforward" not in printed
    assert pd.read_csv(out)["value"].tolist() == ["power"]
    assert main_context_words(["--value", "kindness"]) == 2


@pytest.mark.parametrize("value", VALUES)
def test_context_controlled_pairs_share_more_context_words(value):
    """The paper's claim (Sec. 3.1, Tab. 2), on the minimal-edit pairs built for it.

    The default free-worded pairs trade this property for wording diversity
    (datasheet, "Known properties and limits"): their sides share fewer top words.
    """
    n_pairs = context_word_report(value, "pairs-minimal", top_k=25).n_common
    n_straight = context_word_report(value, "straightforward", top_k=25).n_common
    assert n_pairs > n_straight, (
        f"{value}: {n_pairs} common words in pairs vs {n_straight} straightforward"
    )


@pytest.mark.parametrize("value", VALUES)
def test_pairs_overlap_more_than_index_matched_baseline(value):
    df = context_word_table([value], top_k=25).set_index("kind")["overlap"]
    assert df["pairs-minimal"] > df["straightforward"] + 0.1
    # free-worded pairs still share their situation: about 3x the unrelated baseline
    assert df["pairs"] > 2 * df["straightforward"]
    assert df["pairs-minimal"] > df["pairs"] + 0.3
