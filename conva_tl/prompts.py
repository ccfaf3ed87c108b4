"""Turning questions and sentences into model input text.

There are two input formats and the toolkit always says which one it uses:

* ``"raw"``: the text as it is. The paper fits its probes on raw sentences
  (the authors' code feeds each sentence with no chat template).
* ``"chat"``: the tokenizer's chat template with the generation prompt, the way
  an instruction model is asked a question at steering time.

The authors' code trains on ``raw`` and steers ``chat`` prompts: a train/apply
mismatch that their hand-tuned P0 values absorb.
Here the probe's input format is a recorded setting of every
:class:`~conva_tl.probes.ValueVectors` artifact, so the mismatch is explicit and
can be ablated (``analyses/ablate_input_format.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from conva_tl.errors import ConvaError

__all__ = ["InputFormat", "format_chat", "format_inputs"]

InputFormat = Literal["raw", "chat", "answer"]

#: The user turn in front of each text in the ``answer`` format: the text is then
#: read where the model's own answers are steered, inside the assistant turn.
ANSWER_PROMPT = "What would you do, and why?"


def format_chat(
    tokenizer: Any,
    question: str,
    *,
    system: str | None = None,
) -> str:
    """Render one user turn with the tokenizer's chat template.

    Args:
        tokenizer: a Hugging Face tokenizer with a ``chat_template``.
        question: the user's message.
        system: optional system prompt, placed before the user turn.

    Returns:
        The prompt text, ending with the assistant-turn header so that the
        model's next token starts its answer.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ConvaError(
            "this tokenizer has no chat template; use input_format='raw' "
            "or give the tokenizer a chat_template"
        )
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def format_inputs(
    tokenizer: Any,
    texts: Sequence[str],
    input_format: str,
    *,
    system: str | None = None,
) -> list[str]:
    """Format a batch of texts as ``raw`` or ``chat`` model input."""
    if isinstance(texts, str):
        raise ConvaError("texts must be a list of strings, not one string: wrap it as [text]")
    if input_format == "raw":
        if system:
            raise ConvaError("a system prompt needs input_format='chat'")
        return list(texts)
    if input_format == "chat":
        return [format_chat(tokenizer, t, system=system) for t in texts]
    if input_format == "answer":
        head = format_chat(tokenizer, ANSWER_PROMPT, system=system)
        return [head + t for t in texts]
    raise ConvaError(f"input_format must be 'raw', 'chat' or 'answer', got {input_format!r}")
