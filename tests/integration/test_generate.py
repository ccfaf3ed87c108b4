"""Generation on the real embedded model.

The first test is the transformers-5.24 regression: there the bridge silently
skipped its KV-cache update and cached greedy decoding printed garbage, so
cached output must equal uncached output token for token.
"""

from conva_tl.generate import generate

QUESTIONS = [
    "Should I spend my bonus on a holiday or save it for emergencies?",
    "What is the capital of France?",
    "Should Maria move abroad for an exciting job even though her parents want her to stay?",
]


def test_cached_greedy_equals_uncached_greedy(embedded):
    cached = generate(embedded, QUESTIONS[:2], max_new_tokens=24, use_cache=True)
    uncached = generate(embedded, QUESTIONS[:2], max_new_tokens=24, use_cache=False)
    assert cached == uncached
    assert "Paris" in cached[1]


def test_batch_equals_one_at_a_time(embedded):
    batched = generate(embedded, QUESTIONS, max_new_tokens=24, batch_size=3)
    single = [generate(embedded, [q], max_new_tokens=24)[0] for q in QUESTIONS]
    assert batched == single
    assert all(len(a.split()) >= 5 for a in batched)


def test_sampling_is_seeded(embedded):
    a = generate(
        embedded, QUESTIONS[:1], max_new_tokens=16, do_sample=True, temperature=0.9, seed=3
    )
    b = generate(
        embedded, QUESTIONS[:1], max_new_tokens=16, do_sample=True, temperature=0.9, seed=3
    )
    assert a == b
