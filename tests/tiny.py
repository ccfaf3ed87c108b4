"""A tiny random-weight Llama with an in-memory tokenizer, booted into a bridge.

Unit tests run on it in seconds and need no files or network.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from conva_tl.model import boot_bridge

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "I locked the door so my family could sleep safely.",
    "She quit her stable job to sail around the world.",
    "What is the capital of France? Paris is the capital.",
    "Should I save my bonus or spend it on a holiday?",
    "He helped his neighbour carry the heavy boxes upstairs.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    # The bridge re-loads tokenizers by name_or_path, so give it a real folder,
    # removed when the test process exits (a folder per call used to pile up in /tmp).
    folder = tempfile.mkdtemp(prefix="conva-tiny-tok-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def tiny_bridge(n_layers: int = 4, d_model: int = 32, seed: int = 0):
    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(config).eval()
    return boot_bridge(hf, tok, "tiny-llama", device="cpu")
