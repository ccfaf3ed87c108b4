"""Analyses of the shipped data and of fitted value vectors.

:mod:`~conva_tl.analysis.context_words` reproduces the paper's frequent context
word analysis (Sec. 3.1, Tab. 2) and scores how much a contrast pair shares.
"""

from conva_tl.analysis.context_words import (
    KINDS,
    STOPWORDS,
    ContextWordReport,
    context_word_report,
    context_word_table,
    context_words,
    format_table,
    index_matched_overlap,
    load_sides,
    main_context_words,
    pair_overlap,
    pair_scores,
    text_overlap,
    tokenize,
    value_word_forms,
)

__all__ = [
    "KINDS",
    "STOPWORDS",
    "ContextWordReport",
    "context_word_report",
    "context_word_table",
    "context_words",
    "format_table",
    "index_matched_overlap",
    "load_sides",
    "main_context_words",
    "pair_overlap",
    "pair_scores",
    "text_overlap",
    "tokenize",
    "value_word_forms",
]
