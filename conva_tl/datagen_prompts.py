"""The paper's data-generation prompts, parameters of the method (quoted from Xu et al., ConVA).

* context-controlled positives: Appendix B, Tab. 8, one template per value
  differing in the "highlighting the importance of ..." phrase (and, as in the
  table, in single or double quotes around the value), with ``{pronounce}`` in
  first-person/third-person and ``{sentence_structure}`` in sentence/question;
* negatives: the pairing prompt of Appendix B, sent as a follow-up turn;
* straightforward ablation data: Appendix A, Tab. 6.

:mod:`conva_tl.datagen` sends them; an optional format hint may be appended,
by default they are sent verbatim.
"""

from __future__ import annotations

from conva_tl.datasets import BLOCKS
from conva_tl.errors import DataError
from conva_tl.values import canonical_value

__all__ = [
    "HIGHLIGHTS",
    "PAIR_PROMPT_TEMPLATE",
    "NEGATIVE_PAIR_PROMPT",
    "STRAIGHTFORWARD_PROMPTS",
    "BLOCK_VARIANTS",
    "DEFAULT_FORMAT_HINT",
    "positive_prompt",
    "negative_prompt",
    "straightforward_prompt",
]

#: Appendix B, Tab. 8: what each value's prompt asks the texts to highlight
#: ("highlighting the importance of ...").
HIGHLIGHTS: dict[str, str] = {
    "achievement": "striving for success, overcoming challenges, and celebrating accomplishments",
    "stimulation": "seeking novelty, embracing change, and pursuing excitement",
    "hedonism": "seeking pleasure, indulging in personal gratification, and enjoying life's pleasures",
    "self-direction": (
        "personal freedom, independent thought, and the ability to control one's own life"
    ),
    "power": "control, authority, and influence over people and resources",
    "security": "safety, stability, and harmony in both personal and broader contexts",
    "tradition": (
        "respect for, commitment to, and acceptance of the customs and ideas that traditional "
        "culture or religion provides the self"
    ),
    "conformity": "compliance with social expectations, norms, and rules",
    "benevolence": "showing kindness, generosity, and concern for others",
    "universalism": (
        "understanding, appreciation, tolerance, and protection for the welfare of all people "
        "and nature"
    ),
}

# Tab. 8 quotes four values in single quotes and six in double quotes.
_QUOTE: dict[str, str] = {v: "'" for v in ("stimulation", "hedonism", "self-direction", "power")}

#: Appendix B, Tab. 8 template. ``{q}`` is the value's quote mark; ``{n}`` is 25
#: in the paper.
PAIR_PROMPT_TEMPLATE = (
    "Create {n} distinct {pronounce} {sentence_structure} that exemplify the promotion and "
    "embodiment of the {q}{value}{q} facet of Schwartz's Theory of Basic Values. Each text should "
    "encompass a wide variety of themes and circumstances. The texts could showcase the "
    "{q}{value}{q} value through various characters' actions, dialogues, and decisions, "
    "highlighting the importance of {highlight}. Each text could end with a clear demonstration "
    "or result of the {q}{value}{q} value, providing a satisfying conclusion and reinforcing the "
    "theme."
)

#: Appendix B: the prompt that turns the positives into pairwise negatives.
NEGATIVE_PAIR_PROMPT = (
    "Produce a corresponding sentence for each of the above sentences that expresses opposition "
    "and resistance to the '{value}' aspect of Schwartz's basic values. The protagonist of the "
    "sentence should act in the opposite manner spontaneously. The generated sentences should "
    "strongly counter the original in terms of '{value}', but strive to maintain the same "
    "grammar and sentence structure as much as possible. The sentence should justify the "
    "protagonist's behavior, rather than implicitly express that the protagonist's behavior is "
    "wrong."
)

#: Appendix A, Tab. 6, keyed by label (1 positive, 0 negative); ``{n}`` is 100
#: in the paper.
STRAIGHTFORWARD_PROMPTS: dict[int, str] = {
    1: (
        'Create {n} sentences that exemplify the promotion and embodiment of the "{basic_value}" '
        "facet of Schwartz's Theory of Basic Values."
    ),
    0: (
        'Create {n} sentences that communicate disagreement and resistance towards the "{basic_value}" '
        "facet of Schwartz's Theory of Basic Values."
    ),
}

#: The four prompt variants, keyed by the ``block`` field of the pairs files.
BLOCK_VARIANTS: dict[str, tuple[str, str]] = {
    "first_person_sentence": ("first-person", "sentence"),
    "third_person_sentence": ("third-person", "sentence"),
    "first_person_question": ("first-person", "question"),
    "third_person_question": ("third-person", "question"),
}

#: Optional addition to the prompts (not in the paper) that makes replies easy to parse.
DEFAULT_FORMAT_HINT = "Answer with a numbered list, one item per line, and nothing else."


def _with_hint(prompt: str, format_hint: str | None) -> str:
    return prompt if not format_hint else f"{prompt}\n\n{format_hint}"


def positive_prompt(value: str, block: str, n: int = 25, format_hint: str | None = None) -> str:
    """The Tab. 8 prompt for one value and one block (prompt variant).

    Example:
        >>> positive_prompt("security", "first_person_question")[:45]
        'Create 25 distinct first-person question that'
    """
    canon = canonical_value(value)
    if block not in BLOCK_VARIANTS:
        raise DataError(f"block {block!r} is not one of {', '.join(BLOCKS)}")
    pronounce, structure = BLOCK_VARIANTS[block]
    prompt = PAIR_PROMPT_TEMPLATE.format(
        n=n,
        pronounce=pronounce,
        sentence_structure=structure,
        q=_QUOTE.get(canon, '"'),
        value=canon,
        highlight=HIGHLIGHTS[canon],
    )
    return _with_hint(prompt, format_hint)


def negative_prompt(value: str, format_hint: str | None = None) -> str:
    """The Appendix B pairing prompt for one value."""
    return _with_hint(NEGATIVE_PAIR_PROMPT.format(value=canonical_value(value)), format_hint)


def straightforward_prompt(
    value: str, label: int, n: int = 100, format_hint: str | None = None
) -> str:
    """The Tab. 6 prompt: ``label`` 1 asks for positive, 0 for negative sentences."""
    if label not in STRAIGHTFORWARD_PROMPTS:
        raise DataError(f"label must be 0 or 1, got {label!r}")
    prompt = STRAIGHTFORWARD_PROMPTS[label].format(n=n, basic_value=canonical_value(value))
    return _with_hint(prompt, format_hint)
