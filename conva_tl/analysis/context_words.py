"""Frequent context word analysis and pair overlap (paper Sec. 3.1, Tab. 2).

The paper argues that straightforwardly generated value data is *contextually
biased*: the positive and negative sentences talk about different things
("digital", "financial" only on the positive side of "security"), so a probe
fitted on them learns the topic rather than the value. Its Tab. 2 shows this by
taking the 25 most frequent non-stop-words of the positive and of the negative
sentences and counting how many land in both lists (3 of 25 straightforward,
17 of 25 context-controlled).

This module reproduces that analysis on the data that
:mod:`conva_tl.datasets` loads:

* :func:`context_words` takes any two lists of texts and returns a
  :class:`ContextWordReport`;
* :func:`pair_overlap` scores how much of a context-controlled pair is shared
  (the pair-quality metric, see :func:`text_overlap`);
* :func:`context_word_table` and :func:`context_word_text` run both over the shipped
  data, one row per value and data kind; :func:`main_context_words` is the
  ``conva context-words`` command.

Choices, made explicit so the numbers can be read:

* Tokens are lower-case words ``[a-z]+(?:'[a-z]+)?``; typographic apostrophes
  are normalised, a possessive ``'s`` is stripped (``family's`` -> ``family``)
  and the remaining contractions are split at the apostrophe (``don't`` ->
  ``don``, ``t``) so their pieces meet the stop-word list.
* Excluded from context words: :data:`STOPWORDS`, the words of the value's own
  name (``self-direction`` is tokenised to ``self`` and ``direction``, so both
  go) and their plurals. Derived forms are *kept*: "secure" and "safe" are the
  paper's own examples of positive context words for "security", so
  "traditional", "powerful" or "achieve" are context too. Pass
  ``extra_stopwords`` to exclude more.
* Frequencies count every occurrence (not the number of texts containing a
  word); ties are broken alphabetically, so a report is deterministic.
* "Unique to the positive side" means *in the positive top-k and not in the
  negative top-k*, as in the paper; such a word may still occur on the negative
  side, less often. The report keeps both sides' counts of every listed word.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from conva_tl.datasets import ContrastPair, load_pairs, load_straightforward
from conva_tl.errors import ConvaError, DataError
from conva_tl.values import VALUES, canonical_value

__all__ = [
    "STOPWORDS",
    "KINDS",
    "ContextWordReport",
    "tokenize",
    "value_word_forms",
    "context_words",
    "text_overlap",
    "pair_scores",
    "pair_overlap",
    "index_matched_overlap",
    "load_sides",
    "context_word_report",
    "context_word_table",
    "context_word_text",
    "main_context_words",
]

#: A small English stop-word list. The rule is word class, not frequency in
#: the shipped data: closed-class function words (articles and determiners
#: including quantifiers such as "every", personal and indefinite pronouns such
#: as "someone", prepositions, conjunctions and subordinators such as "since",
#: auxiliaries and modals, conjunctive adverbs such as "however") plus a few
#: very frequent degree and place/time adverbs ("just", "very", "then", "here"),
#: and the pieces :func:`tokenize` leaves when it splits a contraction. Open-class
#: adverbs that can carry a stance ("never", "always", "still") are kept.
STOPWORDS: frozenset[str] = frozenset(
    """
    a an the this that these those each every either neither any some no all
    both few many much more most several another enough less least such own same
    other others
    i me my mine myself we us our ours ourselves you your yours yourself
    yourselves he him his himself she her hers herself it its itself they them
    their theirs themselves one who whom whose which what whatever
    anybody anyone anything anywhere everybody everyone everything everywhere
    nobody none nothing nowhere somebody someone something somewhere
    about above across after against along among around as at before behind
    below beside besides between beyond by despite down during except for from
    in inside into near of off on onto out outside over per since through
    throughout till to toward towards under unlike until up upon via with within
    without
    and but or nor so yet if than because although though unless whereas while
    whether when whenever where how why once lest
    however therefore thus hence instead moreover nevertheless otherwise
    am is are was were be been being do does did doing have has had having
    can cannot could may might must shall should will would
    not just very too also only again further then now here there quite rather
    s t d ll m re ve o
    ain aren couldn didn doesn don hadn hasn haven isn mightn mustn needn
    shan shouldn wasn weren won wouldn
    """.split()
)

#: The data kinds :func:`load_sides` understands.
KINDS: tuple[str, ...] = ("pairs", "pairs-minimal", "straightforward")

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of ``text``, possessives stripped, contractions split.

    Example:
        >>> tokenize("The family's plan didn't change.")
        ['the', 'family', 'plan', 'didn', 't', 'change']
    """
    tokens: list[str] = []
    for word in _WORD.findall(text.lower().translate(_APOSTROPHES)):
        word = word.removesuffix("'s")
        tokens.extend(piece for piece in word.split("'") if piece)
    return tokens


def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def value_word_forms(value: str) -> frozenset[str]:
    """Words of a value's name and their plurals, excluded from context words.

    Example:
        >>> sorted(value_word_forms("security"))
        ['securities', 'security']
    """
    words = tokenize(canonical_value(value).replace("-", " "))
    return frozenset(words) | frozenset(_plural(w) for w in words)


@dataclass(frozen=True)
class ContextWordReport:
    """The top-k context words of two sides of a dataset, split three ways.

    Attributes:
        value: the canonical value name, or ``None`` when none was given.
        top_k: how many of each side's most frequent words were compared.
        n_positive_texts: how many positive texts were counted.
        n_negative_texts: how many negative texts were counted.
        unique_positive: words in the positive top-k only, most frequent first.
        unique_negative: words in the negative top-k only, most frequent first.
        common: words in both top-k lists, by total count, most frequent first.
        positive_counts: occurrences on the positive side of every listed word.
        negative_counts: occurrences on the negative side of every listed word.
    """

    value: str | None
    top_k: int
    n_positive_texts: int
    n_negative_texts: int
    unique_positive: tuple[str, ...]
    unique_negative: tuple[str, ...]
    common: tuple[str, ...]
    positive_counts: dict[str, int] = field(hash=False)
    negative_counts: dict[str, int] = field(hash=False)

    @property
    def n_unique_positive(self) -> int:
        """How many words are in the positive top-k only."""
        return len(self.unique_positive)

    @property
    def n_unique_negative(self) -> int:
        """How many words are in the negative top-k only."""
        return len(self.unique_negative)

    @property
    def n_common(self) -> int:
        """How many words are in both top-k lists (the paper's "common words")."""
        return len(self.common)

    def frequency(self, word: str) -> tuple[int, int]:
        """``(positive count, negative count)`` of a listed word (0 if absent)."""
        return self.positive_counts.get(word, 0), self.negative_counts.get(word, 0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary, with counts next to each word."""

        def listed(words: tuple[str, ...]) -> list[dict[str, Any]]:
            return [
                {"word": w, "positive": self.frequency(w)[0], "negative": self.frequency(w)[1]}
                for w in words
            ]

        return {
            "value": self.value,
            "top_k": self.top_k,
            "n_positive_texts": self.n_positive_texts,
            "n_negative_texts": self.n_negative_texts,
            "n_unique_positive": self.n_unique_positive,
            "n_unique_negative": self.n_unique_negative,
            "n_common": self.n_common,
            "unique_positive": listed(self.unique_positive),
            "unique_negative": listed(self.unique_negative),
            "common": listed(self.common),
        }


def _count(texts: Sequence[str], excluded: frozenset[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(t for t in tokenize(text) if t not in excluded)
    return counts


def _ranked(counts: Counter[str] | dict[str, int]) -> list[str]:
    return sorted(counts, key=lambda w: (-counts[w], w))


def context_words(
    positives: Sequence[str],
    negatives: Sequence[str],
    *,
    value: str | None,
    top_k: int = 25,
    extra_stopwords: Iterable[str] = (),
) -> ContextWordReport:
    """Compare the ``top_k`` most frequent context words of two sets of texts.

    Args:
        positives: texts that promote the value.
        negatives: texts with the opposite stance.
        value: the value the texts are about; its name and plural are excluded.
            ``None`` excludes only stop words.
        top_k: how many of each side's most frequent words to compare.
        extra_stopwords: more words to exclude (matched after lower-casing).

    Returns:
        The words split into unique-to-positive, unique-to-negative and common.

    Raises:
        DataError: a side is empty, ``top_k`` is not a positive integer, or
            ``value`` is not one of the ten values.

    Example:
        >>> r = context_words(["a safe home"], ["a risky home"], value="security", top_k=2)
        >>> r.common, r.unique_positive, r.unique_negative
        (('home',), ('safe',), ('risky',))
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise DataError(f"top_k must be a positive integer, got {top_k!r}")
    if isinstance(positives, str) or isinstance(negatives, str):
        raise DataError("positives and negatives must be sequences of texts, not single strings")
    if not positives or not negatives:
        raise DataError(
            f"context_words needs texts on both sides, got {len(positives)} positive "
            f"and {len(negatives)} negative"
        )
    canon = canonical_value(value) if value is not None else None
    excluded = STOPWORDS | frozenset(w.lower() for w in extra_stopwords)
    if canon is not None:
        excluded |= value_word_forms(canon)

    pos_counts, neg_counts = _count(positives, excluded), _count(negatives, excluded)
    pos_top, neg_top = _ranked(pos_counts)[:top_k], _ranked(neg_counts)[:top_k]
    pos_set, neg_set = set(pos_top), set(neg_top)
    both = {w: pos_counts[w] + neg_counts[w] for w in pos_set & neg_set}
    listed = pos_set | neg_set
    return ContextWordReport(
        value=canon,
        top_k=top_k,
        n_positive_texts=len(positives),
        n_negative_texts=len(negatives),
        unique_positive=tuple(w for w in pos_top if w not in neg_set),
        unique_negative=tuple(w for w in neg_top if w not in pos_set),
        common=tuple(_ranked(both)),
        positive_counts={w: pos_counts[w] for w in sorted(listed)},
        negative_counts={w: neg_counts[w] for w in sorted(listed)},
    )


def text_overlap(a: str, b: str) -> float:
    """Multiset Jaccard overlap of two texts' tokens, in [0, 1].

    ``|A & B| / |A | B|`` over the token multisets of :func:`tokenize`, stop
    words included: a context-controlled pair is meant to keep pronouns,
    sentence structure and scenario, and function words are part of that
    structure. Identical token sequences score 1.0; texts sharing no word 0.0.
    Word order is ignored, so a reordered sentence also scores 1.0.
    """
    ca, cb = Counter(tokenize(a)), Counter(tokenize(b))
    union = sum((ca | cb).values())
    if union == 0:
        return 1.0
    return sum((ca & cb).values()) / union


def _pair_texts(pair: ContrastPair | tuple[str, str]) -> tuple[str, str]:
    if isinstance(pair, ContrastPair):
        return pair.positive, pair.negative
    if isinstance(pair, tuple) and len(pair) == 2:
        return pair
    raise DataError(f"expected a ContrastPair or a (positive, negative) tuple, got {pair!r}")


def pair_scores(pairs: Iterable[ContrastPair | tuple[str, str]]) -> list[float]:
    """:func:`text_overlap` of each pair's positive and negative text."""
    return [text_overlap(*_pair_texts(p)) for p in pairs]


def pair_overlap(pairs: Iterable[ContrastPair | tuple[str, str]]) -> float:
    """Mean :func:`text_overlap` over pairs: the pair-quality metric.

    Raises:
        DataError: ``pairs`` is empty.
    """
    scores = pair_scores(pairs)
    if not scores:
        raise DataError("pair_overlap needs at least one pair")
    return sum(scores) / len(scores)


def index_matched_overlap(positives: Sequence[str], negatives: Sequence[str]) -> float:
    """Index-matched baseline: mean overlap of ``positives[i]`` with ``negatives[i]``.

    Straightforward data has no pairs; matching by position (no search for the
    most similar partner) shows how little two unrelated sentences of the same
    value share. Extra texts on the longer side are ignored.
    """
    return pair_overlap(list(zip(positives, negatives, strict=False)))


def load_sides(value: str, kind: str = "pairs") -> tuple[list[str], list[str]]:
    """``(positives, negatives)`` of a value's shipped pairs or straightforward data."""
    if kind in ("pairs", "pairs-minimal"):
        pairs = load_pairs(value, kind=kind)
        return [p.positive for p in pairs], [p.negative for p in pairs]
    if kind == "straightforward":
        sents = load_straightforward(value)
        return [s.text for s in sents if s.label == 1], [s.text for s in sents if s.label == 0]
    raise DataError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def context_word_report(value: str, kind: str = "pairs", *, top_k: int = 25) -> ContextWordReport:
    """:func:`context_words` on a value's shipped data of one kind."""
    positives, negatives = load_sides(value, kind)
    return context_words(positives, negatives, value=value, top_k=top_k)


_OVERLAP_BASIS = {
    "pairs": "pairs",
    "pairs-minimal": "pairs",
    "straightforward": "index-matched baseline",
}


def context_word_table(
    values: Sequence[str] = VALUES,
    kinds: Sequence[str] = KINDS,
    *,
    top_k: int = 25,
    n_examples: int = 3,
) -> pd.DataFrame:
    """One row per (value, kind): word counts, example words and overlap.

    Columns: ``value``, ``kind``, ``n_pos_texts``, ``n_neg_texts``,
    ``n_unique_pos``, ``n_unique_neg``, ``n_common``, ``top_unique_pos``,
    ``top_unique_neg``, ``top_common`` (the ``n_examples`` most frequent words
    of each list, comma-separated), ``overlap`` (mean :func:`text_overlap`) and
    ``overlap_basis`` (``pairs``, or ``index-matched baseline`` for
    straightforward data, see :func:`index_matched_overlap`).
    """
    rows = []
    for value in values:
        canon = canonical_value(value)
        for kind in kinds:
            positives, negatives = load_sides(canon, kind)
            report = context_words(positives, negatives, value=canon, top_k=top_k)
            if kind == "pairs":
                overlap = pair_overlap(zip(positives, negatives, strict=True))
            else:
                overlap = index_matched_overlap(positives, negatives)
            rows.append(
                {
                    "value": canon,
                    "kind": kind,
                    "n_pos_texts": report.n_positive_texts,
                    "n_neg_texts": report.n_negative_texts,
                    "n_unique_pos": report.n_unique_positive,
                    "n_unique_neg": report.n_unique_negative,
                    "n_common": report.n_common,
                    "top_unique_pos": ", ".join(report.unique_positive[:n_examples]),
                    "top_unique_neg": ", ".join(report.unique_negative[:n_examples]),
                    "top_common": ", ".join(report.common[:n_examples]),
                    "overlap": overlap,
                    "overlap_basis": _OVERLAP_BASIS[kind],
                }
            )
    return pd.DataFrame(rows)


_HEADERS = {
    "value": "value",
    "kind": "kind",
    "n_pos_texts": "#pos",
    "n_neg_texts": "#neg",
    "n_unique_pos": "uniq+",
    "n_unique_neg": "uniq-",
    "n_common": "common",
    "top_unique_pos": "top unique positive",
    "top_unique_neg": "top unique negative",
    "top_common": "top common",
    "overlap": "overlap",
    "overlap_basis": "overlap basis",
}


def context_word_text(df: pd.DataFrame) -> str:
    """Fixed-width text of a :func:`context_word_table` frame, numbers right-aligned."""
    columns = list(df.columns)
    cells: list[list[str]] = [[_HEADERS.get(c, c) for c in columns]]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in columns]
    for _, row in df.iterrows():
        cells.append(
            [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]

    def line(r: list[str]) -> str:
        return "  ".join(
            s.rjust(w) if num else s.ljust(w) for s, w, num in zip(r, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def main_context_words(argv: list[str] | None = None) -> int:
    """``conva context-words``: print the context word table; 0 on success, 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="conva context-words",
        description="Frequent context word analysis (ConVA paper Tab. 2) of the shipped data.",
    )
    parser.add_argument(
        "--value",
        action="extend",
        nargs="+",
        metavar="V",
        help="values to analyse (default: all ten)",
    )
    parser.add_argument(
        "--kind",
        choices=(*KINDS, "both"),
        default="both",
        help="which data to analyse (default: both)",
    )
    parser.add_argument("--top-k", type=int, default=25, help="top words per side (default: 25)")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="also write the table as CSV")
    args = parser.parse_args(argv)
    kinds = KINDS if args.kind == "both" else (args.kind,)
    try:
        df = context_word_table(args.value or VALUES, kinds, top_k=args.top_k)
    except ConvaError as exc:
        print(f"conva context-words: error: {exc}", file=sys.stderr)
        return 2
    print(context_word_text(df))
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0
