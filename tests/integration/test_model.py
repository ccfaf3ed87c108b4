import pytest
import torch

from conva_tl.activations import cache_resid_post
from conva_tl.errors import ModelLoadError
from conva_tl.model import EMBEDDED_MODEL, _embedded_cache_folder, embedded_gguf_path, load_hf_model


def test_embedded_model_shape_and_cache(embedded):
    assert embedded.cfg.n_layers == 30 and embedded.cfg.d_model == 576
    assert embedded.cfg.model_name == EMBEDDED_MODEL
    assert (_embedded_cache_folder(embedded_gguf_path()) / "READY").is_file()


def test_bridge_logits_match_plain_hf(embedded):
    hf, tok, _ = load_hf_model()  # an unbridged copy from the warm cache
    ids = tok("The cat sat on the mat.", return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        ref = hf(ids).logits
        got = embedded(ids, return_type="logits")
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)


def test_batched_caching_equals_unbatched(embedded):
    texts = [
        "I double-checked the smoke alarms.",
        "Hi",
        "Kenji sold his flat to travel the world on a whim.",
    ]
    batched = cache_resid_post(embedded, texts, batch_size=3)
    single = torch.stack([cache_resid_post(embedded, [t])[:, 0] for t in texts], dim=1)
    # Relative to each vector's size: a few dimensions reach ~2e4, where one
    # float32 ulp is 2e-3, so an absolute 1e-4 would only test rounding.
    rel = (batched - single).norm(dim=-1) / single.norm(dim=-1)
    assert rel.max() < 1e-4
    torch.testing.assert_close(batched, single, rtol=1e-3, atol=1e-3)


def test_unknown_model_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not a local folder"):
        load_hf_model("no-such-org/no-such-model-xyz")
