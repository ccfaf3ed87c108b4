"""Cosine structure of value vectors vs the circumplex, on synthetic vectors."""

import numpy as np
import pytest
import torch

from conva_tl.analysis import (
    circumplex_order,
    circumplex_test,
    cosine_matrices,
    mds_embedding,
    procrustes_to_circle,
    structure_by_layer,
)
from conva_tl.errors import ConvaError
from conva_tl.probes import ValueVectors
from conva_tl.values import VALUES, circumplex_angle


def circle_directions(values=VALUES, d=24, seed=0, reverse=False):
    """Unit vectors on a circle in a random 2-D plane of R^d, in circumplex order."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))
    theta = torch.tensor([circumplex_angle(v) for v in values], dtype=torch.float64)
    theta = -theta if reverse else theta
    return (torch.stack([theta.cos(), theta.sin()], 1) @ basis.T).float()


def random_directions(n, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


def make_set(per_layer, values=VALUES, acc=0.95):
    """{value: ValueVectors} from a list of [value, d] direction matrices, one per layer."""
    w = torch.stack(per_layer, dim=1)  # value layer d
    n_layers = w.shape[1]
    return {
        v: ValueVectors(
            v,
            w[i] * 3.0,
            torch.zeros(n_layers),
            torch.full((n_layers,), acc),
            torch.ones(n_layers),
            (0,),
            -w[i],
            {},
        )
        for i, v in enumerate(values)
    }


def test_cosine_matrices_shape_symmetry_and_order():
    vectors = make_set([random_directions(10, seed=s) for s in range(3)])
    shuffled = {v: vectors[v] for v in reversed(VALUES)}
    cos = cosine_matrices(shuffled)
    assert cos.shape == (3, 10, 10)
    torch.testing.assert_close(cos, cos.transpose(1, 2))
    torch.testing.assert_close(torch.diagonal(cos, dim1=1, dim2=2), torch.ones(3, 10))
    assert cos.abs().max() <= 1.0
    w = vectors["security"].w[1], vectors["tradition"].w[1]
    i, j = VALUES.index("security"), VALUES.index("tradition")
    assert cos[1, i, j].item() == pytest.approx(float(torch.cosine_similarity(*w, dim=0)), abs=1e-6)
    # mean_diff was built as -w: cosines of negated vectors are unchanged.
    torch.testing.assert_close(cosine_matrices(vectors, use="mean_diff"), cos)
    assert circumplex_order(["Tradition", "power", "self_direction"]) == [
        "self-direction",
        "power",
        "tradition",
    ]
    assert circumplex_order(VALUES, start="benevolence")[:3] == [
        "benevolence",
        "universalism",
        "self-direction",
    ]


def test_perfect_circumplex_is_significant():
    dirs = circle_directions()
    cos = dirs @ dirs.T
    res = circumplex_test(cos, VALUES, n_permutations=2000, seed=0)
    assert res["statistic"] == pytest.approx(-1.0, abs=1e-9)
    # Only the circle's 20 symmetries reach -1: p is at its floor.
    assert res["p_value"] == pytest.approx(1 / 2001)
    assert res["opposite_cos"] == pytest.approx(-1.0, abs=1e-6)
    assert set(res["opposites"]) == {
        "self-direction/security",
        "stimulation/conformity",
        "hedonism/tradition",
        "achievement/benevolence",
        "power/universalism",
    }
    assert res["within"] > 0.5 > res["between"]
    assert res["group_gap"] == pytest.approx(res["within"] - res["between"])
    assert res["group_p_value"] < 0.01
    assert res["n_pairs"] == 45 and res["n_values"] == 10
    pearson = circumplex_test(cos, VALUES, n_permutations=500, method="pearson")
    assert pearson["statistic"] < -0.95 and pearson["p_value"] < 0.01
    # Labels given in another order: same answer once rows follow the labels.
    perm = np.random.default_rng(3).permutation(10)
    again = circumplex_test(
        cos[perm][:, perm], [VALUES[k] for k in perm], n_permutations=2000, seed=0
    )
    assert again["statistic"] == pytest.approx(res["statistic"])


def test_random_vectors_are_not_significant():
    """Under the null the p-value is roughly uniform: large on average, rarely < 0.05."""
    pvals = []
    for seed in range(20):
        d = random_directions(10, seed=seed)
        d = d / d.norm(dim=-1, keepdim=True)
        pvals.append(circumplex_test(d @ d.T, VALUES, n_permutations=500, seed=seed)["p_value"])
    pvals = np.array(pvals)
    assert 0.3 < pvals.mean() < 0.7
    assert (pvals < 0.05).sum() <= 3


def test_permutation_p_value_is_seeded_and_valid():
    d = random_directions(10, seed=11)
    cos = torch.nn.functional.normalize(d, dim=-1) @ torch.nn.functional.normalize(d, dim=-1).T
    a = circumplex_test(cos, VALUES, n_permutations=300, seed=4)
    b = circumplex_test(cos, VALUES, n_permutations=300, seed=4)
    assert a == b
    assert 1 / 301 <= a["p_value"] <= 1.0
    with pytest.raises(ConvaError, match="at least three"):
        circumplex_test(cos[:2, :2], VALUES[:2])
    with pytest.raises(ConvaError, match="shape"):
        circumplex_test(cos, VALUES[:9])
    with pytest.raises(ConvaError, match="method"):
        circumplex_test(cos, VALUES, method="kendall")


def test_structure_by_layer_ranks_the_circumplex_layer_first():
    layers = [
        random_directions(10, d=24, seed=0),
        circle_directions(seed=1),
        random_directions(10, d=24, seed=2),
    ]
    vectors = make_set(layers)
    df = structure_by_layer(vectors, n_permutations=500)
    assert list(df.index) == [0, 1, 2]
    assert int(df["rank"].idxmin()) == 1 and df.loc[1, "rank"] == 1
    assert df.loc[1, "p_value"] < 0.01
    assert (df["p_fdr"] >= df["p_value"] - 1e-12).all()
    for col in ("statistic", "within", "between", "group_gap", "opposite_cos", "mean_accuracy"):
        assert col in df
    assert df["mean_accuracy"].tolist() == pytest.approx([0.95] * 3)
    only = structure_by_layer(vectors, layers=[2, 1], n_permutations=100)
    assert list(only.index) == [1, 2]
    with pytest.raises(ConvaError, match="subset"):
        structure_by_layer(vectors, layers=[3])


def test_subset_of_values():
    values = ["self-direction", "power", "security", "benevolence"]
    vectors = make_set([circle_directions(values)], values=values)
    df = structure_by_layer(vectors, n_permutations=200)
    assert df.loc[0, "n_values"] == 4 and df.loc[0, "n_pairs"] == 6
    assert df.loc[0, "statistic"] < -0.9


@pytest.mark.parametrize("reverse", [False, True])
def test_mds_recovers_the_circle_up_to_rotation(reverse):
    dirs = circle_directions(d=48, seed=5, reverse=reverse)
    cos = dirs @ dirs.T
    emb = mds_embedding(cos)
    assert emb.shape == (10, 2)
    # Classical MDS on chord distances is exact for points on a plane.
    chord = np.sqrt(np.clip(2 - 2 * cos.double().numpy(), 0, None))
    np.fill_diagonal(chord, 0.0)  # float32 cos(v, v) is 1 - 6e-8, whose chord is 3e-4
    got = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.testing.assert_allclose(got, chord, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    fit = procrustes_to_circle(emb, VALUES, n_permutations=200)
    assert fit["disparity"] == pytest.approx(0.0, abs=1e-8)
    assert fit["p_value"] == pytest.approx(1 / 201, rel=0.5)
    np.testing.assert_allclose(fit["aligned"], fit["target"], atol=1e-5)
    mirrored = procrustes_to_circle(emb * np.array([1.0, -1.0]), VALUES, n_permutations=0)
    assert mirrored["reflected"] != fit["reflected"]
    assert mirrored["disparity"] == pytest.approx(0.0, abs=1e-8)


def test_mds_on_noise_fits_the_circle_poorly():
    d = torch.nn.functional.normalize(random_directions(10, seed=9), dim=-1)
    fit = procrustes_to_circle(mds_embedding(d @ d.T), VALUES, n_permutations=300, seed=1)
    assert fit["disparity"] > 0.3 and fit["p_value"] > 0.05
    assert np.isnan(
        procrustes_to_circle(mds_embedding(d @ d.T), VALUES, n_permutations=0)["p_value"]
    )
    with pytest.raises(ConvaError, match="chord"):
        mds_embedding(d @ d.T, distance="euclid")
    with pytest.raises(ConvaError, match="expected"):
        procrustes_to_circle(np.zeros((3, 2)), VALUES)


def test_degenerate_layers_give_nan_not_significance():
    cos = torch.zeros(10, 10)
    cos.fill_diagonal_(1.0)
    res = circumplex_test(cos, VALUES, n_permutations=50)
    assert np.isnan(res["statistic"]) and np.isnan(res["p_value"])
    layers = [torch.zeros(10, 24), circle_directions(seed=1)]
    df = structure_by_layer(make_set(layers), n_permutations=50)
    assert np.isnan(df.loc[0, "p_fdr"]) and df.loc[1, "p_fdr"] == pytest.approx(
        df.loc[1, "p_value"]
    )
    assert df["rank"].tolist() == [2, 1]
