import json

import numpy as np
import pytest
import torch

from conva_tl.artifacts import load_vectors, save_vectors
from conva_tl.errors import ArtifactError, ConvaError
from conva_tl.identify import identify
from conva_tl.probes import LayerRule, LinearProbe, fit_probes


def synthetic(n_pairs=60, d=12, n_layers=6, signal_layers=(2, 3), seed=0):
    """Pairs that differ along one direction only at the signal layers."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g)
    context = torch.randn(n_pairs, d, generator=g) * 0.5
    acts = torch.zeros(n_layers, 2 * n_pairs, d)
    for layer in range(n_layers):
        noise = torch.randn(2 * n_pairs, d, generator=g) * 0.3
        shift = direction if layer in signal_layers else torch.zeros(d)
        acts[layer, 0::2] = context + shift
        acts[layer, 1::2] = context - shift
        acts[layer] += noise
    labels = [1, 0] * n_pairs
    groups = [i for i in range(n_pairs) for _ in (0, 1)]
    return acts, labels, groups, direction


def test_linear_probe_is_an_estimator_and_standardize_maps_back():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) * 30 + 7
    y = (X[:, 0] + X[:, 1] > 14).astype(int)
    for standardize in (False, True):
        p = LinearProbe(C=10.0, standardize=standardize).fit(X, y)
        assert p.score(X, y) > 0.95
        np.testing.assert_allclose(p.decision_function(X), X @ p.coef_ + p.intercept_)
        assert p.get_params()["standardize"] is standardize
    with pytest.raises(ConvaError, match="both labels"):
        LinearProbe().fit(X, np.ones(200, dtype=int))


def test_standardize_rescales_C_and_keeps_the_geometry():
    # One shared scale s: fitting on (X - mu)/s with C equals fitting on X with C/s^2.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 6)) * 40 + 5
    y = (X @ rng.normal(size=6) + rng.normal(size=300) * 40 > 0).astype(int)
    s = np.sqrt(((X - X.mean(0)) ** 2).mean())
    scaled = LinearProbe(C=0.05, standardize=True, max_iter=10_000).fit(X, y)
    raw = LinearProbe(C=0.05 / s**2, standardize=False, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(scaled.coef_, raw.coef_, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(scaled.intercept_, raw.intercept_, rtol=1e-3, atol=1e-4)


def test_fit_probes_finds_the_signal_layers_and_direction():
    acts, labels, groups, direction = synthetic()
    vv = fit_probes(
        acts, labels, groups, value="security", rule=LayerRule(threshold=0.9, exclude_last=1)
    )
    assert vv.accuracy[2] > 0.95 and vv.accuracy[3] > 0.95
    assert vv.accuracy[0] < 0.8
    assert vv.control_layers == (2, 3)
    cos = torch.nn.functional.cosine_similarity(vv.v[2], direction, dim=0)
    assert cos > 0.9
    torch.testing.assert_close(vv.v.norm(dim=-1), torch.ones(6))
    # mean_diff is the mean paired difference = 2 * direction at signal layers
    torch.testing.assert_close(vv.mean_diff[2], 2 * direction, atol=0.2, rtol=0.1)
    frame = vv.to_frame()
    assert list(frame.index) == list(range(6)) and frame.control.sum() == 2


def test_layer_rule_excludes_last_layers_and_caps():
    acc = [0.95] * 10
    assert LayerRule(exclude_last=5).select(acc) == (0, 1, 2, 3, 4)
    weak = [0.5, 0.8, 0.85, 0.7, 0.99, 0.99]
    assert LayerRule(exclude_last=2, fallback_top=2).select(weak) == (1, 2)
    assert LayerRule(exclude_last=2, fallback_top=0).select(weak) == ()
    assert LayerRule(threshold=0.9, exclude_last=0, max_layers=2).select(
        [0.5, 0.99, 0.95, 0.97]
    ) == (1, 3)
    with pytest.raises(ConvaError):
        LayerRule(threshold=1.5)


@pytest.mark.parametrize("k_folds", [None, 5])
def test_group_split_keeps_pairs_together(monkeypatch, k_folds):
    import conva_tl.probes as probes

    acts, labels, groups, _ = synthetic(n_pairs=50)
    # shuffle the texts so a pair's two texts are not neighbours: a split by position leaks
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    acts, labels = acts[:, order], [labels[i] for i in order]
    groups = [groups[i] for i in order]
    used: list[tuple[np.ndarray, np.ndarray]] = []

    def recording_splits(*args, **kwargs):
        splits = real_splits(*args, **kwargs)
        used.extend(splits)
        return splits

    real_splits = probes._splits
    monkeypatch.setattr(probes, "_splits", recording_splits)
    vv = fit_probes(acts, labels, groups, value="security", k_folds=k_folds)
    assert len(used) == (k_folds or 1) and vv.metadata["k_folds"] == k_folds
    g = np.asarray(groups)
    for train, test in used:
        assert len(test) > 0 and len(set(train) | set(test)) == len(g)
        assert set(g[train]).isdisjoint(g[test]), "a pair straddles the split"
    if k_folds:  # every pair is held out exactly once over the folds
        held_out = np.concatenate([g[test] for _, test in used])
        assert sorted(held_out.tolist()) == sorted(g.tolist())


def test_negation_and_with_layers():
    acts, labels, groups, _ = synthetic()
    vv = fit_probes(acts, labels, groups, value="power")
    neg = -vv
    torch.testing.assert_close(neg.w, -vv.w)
    assert (-neg) == vv and neg != vv
    assert vv.with_layers([4, 1]).control_layers == (1, 4)
    with pytest.raises(ConvaError):
        vv.with_layers([99])


def test_save_load_round_trip_and_corruption(tmp_path, tiny):
    vectors = identify(tiny, ["security", "power"], test_size=0.25, progress=False)
    folder = save_vectors(tmp_path / "vecs", vectors.values())
    loaded = load_vectors(folder, model=tiny)
    assert loaded == vectors
    meta = json.loads((folder / "security.json").read_text())["metadata"]
    assert meta["model"]["d_model"] == tiny.cfg.d_model and meta["pooling"] == "last"
    assert meta["input_format"] == "raw" and len(meta["dataset"]["sha256"]) == 64
    # corrupt tensor file
    (folder / "power.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_vectors(folder, ["power"])
    with pytest.raises(ArtifactError, match="no vectors for 'tradition'"):
        load_vectors(folder, ["tradition"])
    with pytest.raises(ArtifactError, match="manifest"):
        load_vectors(tmp_path)


def test_mismatched_model_is_rejected(tmp_path, tiny):
    from tiny import tiny_bridge

    vectors = identify(tiny, ["security"], progress=False)
    save_vectors(tmp_path, vectors.values())
    other = tiny_bridge(n_layers=3, d_model=48)
    with pytest.raises(ArtifactError, match="do not match this model"):
        load_vectors(tmp_path, model=other)


def test_grouped_split_is_the_one_split_of_fit_and_sweeps():
    import numpy as np

    from conva_tl.analysis.probe_sweeps import heldout_split
    from conva_tl.probes import grouped_split, layer_ranges

    groups = np.repeat(np.arange(25), 2)
    train, test = grouped_split(groups, test_size=0.2, seed=3)
    assert not set(groups[train]) & set(groups[test]) and len(set(groups[test])) == 5
    assert sorted([*train, *test]) == list(range(50))
    same = heldout_split(groups, test_size=0.2, seed=3)
    assert (same[0] == train).all() and (same[1] == test).all()
    assert layer_ranges((3, 4, 5, 9)) == "3-5,9" and layer_ranges(()) == "-"
