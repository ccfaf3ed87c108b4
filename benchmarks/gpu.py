"""Generation benchmark on a GPU with random-weight models (no files, no network).

    python benchmarks/gpu.py                  # 7B-shape Llama (bf16) + embedded shape, batch 1 and 16
    python benchmarks/gpu.py --models 7b --new-tokens 128 --repeats 3
    python benchmarks/gpu.py --tiny           # CPU smoke test of the whole script

Builds each model from a ``LlamaConfig`` with random weights (the embedded
GGUF need not be present), plus an in-memory tokenizer, and times on the same
64-token prompts (random ids, no padding), greedy with the KV cache:

* ``hf_generate``: plain HF ``generate`` on the unbridged model (forced length);
* ``bridge_unsteered`` / ``bridge_conva``: the toolkit's loop on a
  ``TransformerBridge`` booted on a deep copy (booting rewires a model);
* ``fast_unsteered`` / ``fast_conva``: the same loop on :class:`conva_tl.fast.FastModel`.

ConVA runs per token on ``--n-control`` middle layers with random probes and
an always-open activation gate (the gate hook runs, every row is steered).
The special tokens' unembedding rows are zeroed so that random weights never
pick a stop token and every run decodes the full length. Writes
``benchmarks/results/gpu.json`` (``results/quick/gpu_tiny.json`` with ``--tiny``).
The DESIGN anchor (H200, 7B bf16, 64-token prompt, 128 new tokens): HF
generate 43.7 tok/s at batch 1 and 676 at batch 16; bridge 16.9 and 222.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import RESULTS, env_info, print_table, write_json  # noqa: E402
from benchmarks.genbench import conva_method, hf_run, interleaved, ratio, toolkit_run  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    "7b": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    ),
    "embedded": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    ),
}
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_CORPUS = [
    "Should I save my bonus or spend it on a holiday with my friends this summer?",
    "She helped her neighbour carry the boxes, then went back to finish her own work.",
    "The committee will decide next week whether the old bridge is safe enough to keep open.",
    "He quit a stable job to start a bakery, and his family worried about the risk.",
]


def make_tokenizer() -> Any:
    """A small byte-level BPE tokenizer with a chat template, saved to a temp folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

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
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    folder = tempfile.mkdtemp(prefix="conva-gpu-tok-")  # the bridge reloads tokenizers by path
    fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def build_model(shape: str, dtype: torch.dtype, device: str, tok: Any, seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **SHAPES[shape],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        attn_implementation="sdpa",
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    with torch.no_grad():  # random logits must never pick a stop token
        model.get_output_embeddings().weight[tok.all_special_ids] = 0
    return model.eval()


def random_vectors(n_layers: int, d_model: int, n_control: int, seed: int = 0) -> Any:
    from conva_tl.probes import ValueVectors

    g = torch.Generator().manual_seed(seed)
    start = max(0, (n_layers - n_control) // 2)
    layers = tuple(range(start, min(n_layers, start + n_control)))
    w = torch.randn(n_layers, d_model, generator=g) / d_model**0.5
    return ValueVectors(
        value="benevolence",
        w=w,
        b=torch.full((n_layers,), -2.0),
        accuracy=torch.ones(n_layers),
        train_accuracy=torch.ones(n_layers),
        control_layers=layers,
        mean_diff=torch.zeros(n_layers, d_model),
        metadata={"note": "random probes for timing"},
    )


def bench_model(shape: str, args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    from conva_tl.fast import FastModel
    from conva_tl.generate import GenerationConfig, generate_batch
    from conva_tl.model import boot_bridge
    from conva_tl.tokens import Batch

    dev = args.device
    tok = make_tokenizer()
    t0 = time.perf_counter()
    plain = build_model(shape, dtype, dev, tok)
    bridge = boot_bridge(copy.deepcopy(plain), tok, f"random-llama-{shape}", device=dev)
    fast = FastModel(plain, tok, f"random-llama-{shape}")
    build_s = time.perf_counter() - t0
    n_control = min(args.n_control, fast.cfg.n_layers)
    vv = random_vectors(fast.cfg.n_layers, fast.cfg.d_model, n_control)
    method = conva_method(vv, p0=0.9)
    g = torch.Generator().manual_seed(1)
    low = max(tok.all_special_ids) + 1
    out: dict[str, Any] = {
        "shape": shape,
        "dtype": str(dtype).replace("torch.", ""),
        "build_s": round(build_s, 1),
        "n_layers": fast.cfg.n_layers,
        "d_model": fast.cfg.d_model,
        "control_layers": list(method.control_layers),
        "batches": {},
    }
    for b in args.batches:
        ids = torch.randint(low, len(tok), (b, args.prompt_len), generator=g)
        batch = Batch(ids, torch.ones_like(ids))

        def runs(n: int, batch: Batch = batch, pad: int = tok.pad_token_id) -> dict[str, Any]:
            return {
                "hf_generate": lambda: hf_run(plain, batch, n, pad, dev),
                "bridge_unsteered": lambda: toolkit_run(bridge, batch, n, None, dev),
                "bridge_conva": lambda: toolkit_run(bridge, batch, n, method, dev),
                "fast_unsteered": lambda: toolkit_run(fast, batch, n, None, dev),
                "fast_conva": lambda: toolkit_run(fast, batch, n, method, dev),
            }

        interleaved(runs(4), 1, dev)  # warm-up: kernels, allocator, lazy inits
        res = interleaved(runs(args.new_tokens), args.repeats, dev)
        cfg = GenerationConfig(max_new_tokens=min(16, args.new_tokens), batch_size=b)
        same = generate_batch(bridge, batch, cfg) == generate_batch(fast, batch, cfg)
        out["batches"][b] = {
            "results": res,
            "fast_conva_over_hf": ratio(res["fast_conva"], res["hf_generate"]),
            "fast_conva_over_fast_unsteered": ratio(res["fast_conva"], res["fast_unsteered"]),
            "bridge_conva_over_bridge_unsteered": ratio(
                res["bridge_conva"], res["bridge_unsteered"]
            ),
            "fast_conva_over_bridge_conva": ratio(res["fast_conva"], res["bridge_conva"]),
            "bridge_unsteered_over_hf": ratio(res["bridge_unsteered"], res["hf_generate"]),
            "greedy_ids_equal_bridge_vs_fast_16_tokens": same,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--tiny", action="store_true", help="CPU smoke test: a 4-layer model, few tokens"
    )
    p.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    p.add_argument("--models", default="7b,embedded", help="comma-separated: 7b, embedded")
    p.add_argument("--dtype", default="bfloat16", choices=sorted(_DTYPES))
    p.add_argument("--batches", default="1,16")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-control", type=int, default=16, help="ConVA control layers")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.tiny:
        args.device = args.device or "cpu"
        models, args.new_tokens, args.repeats = ["tiny"], min(args.new_tokens, 8), 1
        args.prompt_len, args.n_control = min(args.prompt_len, 16), 2
        dtype = torch.float32 if args.device == "cpu" else _DTYPES[args.dtype]
    else:
        args.device = args.device or "cuda"
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        dtype = _DTYPES[args.dtype]
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            p.error("no CUDA device; use --tiny for a CPU smoke test or --device cpu")
    bad = [m for m in models if m not in SHAPES]
    if bad:
        p.error(f"unknown model shape(s) {bad}; choose from 7b, embedded")
    args.batches = [int(b) for b in args.batches.split(",")]
    env = env_info(args.device)
    print(
        f"gpu benchmark on {env.get('gpu', args.device)}, torch {env['torch']}, "
        f"transformers {env.get('transformers')}, {args.prompt_len}-token prompts, {args.new_tokens} new tokens"
    )
    results = []
    for shape in models:
        results.append(bench_model(shape, args, dtype))
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()  # the previous shape's models are unreachable by now
    rows = []
    for r in results:
        for b, br in r["batches"].items():
            res = br["results"]
            rows.append(
                {
                    "model": f"{r['shape']} {r['dtype']}",
                    "batch": b,
                    **{k: v["tokens_per_s"] for k, v in res.items()},
                    "fast_conva_over_hf": br["fast_conva_over_hf"],
                    "fast_conva_over_fast_unsteered": br["fast_conva_over_fast_unsteered"],
                    "fast_conva_over_bridge_conva": br["fast_conva_over_bridge_conva"],
                    "same": br["greedy_ids_equal_bridge_vs_fast_16_tokens"],
                    "mem": max(v.get("cuda_peak_mb", v["rss_peak_mb"]) for v in res.values()),
                }
            )
    print_table(
        "Generation tokens/s (greedy, KV cache, median)",
        rows,
        [
            ("model", "model", ""),
            ("batch", "batch", ""),
            ("hf_generate", "HF", ".1f"),
            ("bridge_unsteered", "bridge", ".1f"),
            ("bridge_conva", "bridge+ConVA", ".1f"),
            ("fast_unsteered", "fast", ".1f"),
            ("fast_conva", "fast+ConVA", ".1f"),
            ("fast_conva_over_hf", "fast+ConVA/HF", ".3f"),
            ("fast_conva_over_fast_unsteered", "ConVA/unsteered (fast)", ".3f"),
            ("fast_conva_over_bridge_conva", "fast/bridge (ConVA)", ".2f"),
            ("same", "same greedy ids", ""),
            ("mem", "peak MiB", ".0f"),
        ],
    )
    name = "gpu_tiny" if args.tiny else "gpu"
    path = write_json(
        name,
        {"env": env, "args": {k: v for k, v in vars(args).items()}, "models": results},
        Path(args.out) if args.out else (RESULTS / "quick" if args.tiny else RESULTS),
    )
    print(f"\nJSON written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
