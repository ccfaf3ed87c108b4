"""Plotting functions return figures / circuitsvis views and draw what they promise."""

import io

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from conva_tl.activations import cache_resid_post
from conva_tl.analysis import (
    cosine_matrices,
    mds_embedding,
    procrustes_to_circle,
    structure_by_layer,
)
from conva_tl.errors import ConvaError
from conva_tl.generate import generate
from conva_tl.methods import ConVA
from conva_tl.plotting import (
    plot_accuracy_curves,
    plot_cosine_grid,
    plot_cosine_heatmap,
    plot_mds,
    plot_structure_by_layer,
)
from conva_tl.probes import ValueVectors
from conva_tl.token_views import chat_tokens, pv_per_token, pv_token_view, steering_token_view
from conva_tl.values import VALUES, circumplex_angle


def vectors_for(values=VALUES, n_layers=4, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for v in values:
        w = torch.randn(n_layers, d, generator=g)
        acc = torch.rand(n_layers, generator=g) * 0.5 + 0.5
        out[v] = ValueVectors(
            v,
            w,
            torch.randn(n_layers, generator=g),
            acc,
            acc,
            (1, 2),
            w.clone(),
            {"layer_rule": {"threshold": 0.8, "exclude_last": 1, "max_layers": None}},
        )
    return out


def png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def dashed_boxes(ax, color):
    from matplotlib.colors import to_rgba

    return [
        p
        for p in ax.patches
        if isinstance(p, Rectangle)
        and p.get_linestyle() == "--"
        and p.get_edgecolor() == to_rgba(color)
    ]


def test_accuracy_curves():
    vectors = vectors_for(VALUES[:3])
    fig = plot_accuracy_curves(vectors)
    assert isinstance(fig, Figure) and png_bytes(fig)[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # 3 values + threshold
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(0.8)  # threshold from the layer rule
    assert len(ax.patches) == 1  # excluded band


def test_cosine_heatmap_outlines_groups_in_circumplex_order():
    vectors = vectors_for()
    cos = cosine_matrices(vectors)[2]
    shuffled = list(reversed(VALUES))
    perm = [VALUES.index(v) for v in shuffled]
    fig = plot_cosine_heatmap(cos[perm][:, perm], shuffled, layer=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(VALUES)
    np.testing.assert_allclose(ax.images[0].get_array(), cos.double().numpy(), atol=1e-6)
    assert len(dashed_boxes(ax, "red")) == 4
    assert "layer 2" in ax.get_title()
    fig = plot_cosine_heatmap(cos, VALUES, start="benevolence", growth=True)
    assert (
        len(dashed_boxes(fig.axes[0], "gold")) == 1
    )  # growth values are one block from benevolence
    png_bytes(fig)
    # Drawing into a caller's axes returns the caller's figure.
    host = Figure()
    ax = host.add_subplot()
    assert plot_cosine_heatmap(cos, VALUES, ax=ax) is host


def test_cosine_grid_and_structure_and_mds():
    vectors = vectors_for(n_layers=5)
    cube = cosine_matrices(vectors)
    fig = plot_cosine_grid(cube, VALUES, ncols=3)
    assert sum(1 for ax in fig.axes if ax.images) == 5
    png_bytes(fig)
    df = structure_by_layer(vectors, n_permutations=50)
    fig = plot_structure_by_layer(df)
    assert isinstance(fig, Figure)
    png_bytes(fig)
    theta = np.array([circumplex_angle(v) for v in VALUES])
    circle = np.stack([np.cos(theta), np.sin(theta)], 1)
    emb = mds_embedding(circle @ circle.T)
    fig = plot_mds(emb, VALUES, fit=procrustes_to_circle(emb, VALUES, n_permutations=20), layer=3)
    assert fig.get_suptitle().startswith("Layer 3: Procrustes disparity")
    png_bytes(plot_mds(emb, VALUES))


def test_pv_per_token_matches_pooled_activations(tiny):
    vectors = vectors_for(["security", "power"])
    text = "I locked the door so my family could sleep safely."
    tokens, probs, labels = pv_per_token(tiny, text, vectors, layer=2)
    assert probs.shape == (len(tokens), 2)
    assert labels == ["security L2", "power L2"]
    assert "".join(tokens).replace("\\n", "\n") == text
    last = cache_resid_post(tiny, [text], layers=[2], pooling="last")[0, 0]
    expected = torch.sigmoid(last @ vectors["power"].w[2] + vectors["power"].b[2])
    assert probs[-1, 1].item() == pytest.approx(expected.item(), abs=1e-5)
    view = pv_token_view(tiny, text, vectors, layer=2)
    assert "ColoredTokensMulti" in str(view)
    single = pv_token_view(tiny, text, vectors["security"])  # best layer
    assert "ColoredTokens" in str(single)
    with pytest.raises(ConvaError, match="layer"):
        pv_per_token(tiny, text, vectors, layer=9)


def test_steering_token_view_from_a_real_trace(tiny):
    vv = vectors_for(["security"])["security"]
    method = ConVA(vv, p0=0.99, gate=None)
    question = "Should I save my bonus?"
    answers, trace = generate(tiny, [question], intervention=method, trace=True, max_new_tokens=3)
    tokens = chat_tokens(tiny, question, answers[0])
    view = steering_token_view(tokens, trace, layer=1)
    html = str(view)
    assert "ColoredTokensMulti" in html and "P_V after" in html
    with pytest.raises(ConvaError, match="traced layers: \\[1, 2\\]"):
        steering_token_view(tokens, trace, layer=3)
    with pytest.raises(ConvaError, match="lacks columns"):
        steering_token_view(tokens, pd.DataFrame({"row": [0]}), layer=1)


def test_steering_token_view_values():
    trace = pd.DataFrame(
        {
            "row": [0, 0, 0, 1],
            "step": [0, 0, 1, 0],
            "position": [0, 1, 2, 0],
            "layer": [5, 5, 5, 5],
            "gate_score": [np.nan] * 4,
            "p_before": [0.2, 0.95, 0.5, 0.1],
            "p_after": [0.9, 0.95, 0.9, 0.9],
            "eps": [3.0, 0.0, 1.0, 9.0],
        }
    )
    html = str(steering_token_view(["a", "b", "c", "d"], trace, layer=5))
    assert "P_V change" in html
    assert "9.0" not in html  # row 1 is not shown
