"""Reports on fitted value vectors: the logit lens (paper Tab. 3) and the circumplex structure (Sec. 4.5).

:func:`logit_lens_report` decodes each value's vector through
:mod:`conva_tl.analysis.logit_lens` at its best layer and at chosen layers;
:func:`value_structure_report` compares the vectors with Schwartz's circumplex
layer by layer (:mod:`conva_tl.analysis.structure`) and draws the figures of
:mod:`conva_tl.plotting`. Both return an
:class:`~conva_tl.report.Report` for ``analyses/logit_lens.py``
and ``analyses/value_structure.py`` to print and write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from conva_tl.analysis.logit_lens import decode_vectors, format_logit_lens
from conva_tl.analysis.structure import (
    circumplex_order,
    circumplex_test,
    cosine_matrices,
    mds_embedding,
    procrustes_to_circle,
    structure_by_layer,
)
from conva_tl.errors import ConvaError
from conva_tl.model_protocol import HookedModel
from conva_tl.plotting import (
    plot_accuracy_curves,
    plot_cosine_grid,
    plot_cosine_heatmap,
    plot_mds,
    plot_structure_by_layer,
)
from conva_tl.probes import ValueVectors
from conva_tl.report import Report
from conva_tl.values import VALUES

__all__ = [
    "default_lens_layers",
    "logit_lens_report",
    "STRUCTURE_COLUMNS",
    "value_structure_report",
]


def default_lens_layers(n_layers: int) -> list[int]:
    """A quarter, half and three quarters of the way through the model."""
    return sorted({n_layers // 4, n_layers // 2, (3 * n_layers) // 4})


def _value_then_natural(col: pd.Series) -> pd.Series:
    if col.name == "value":
        return col.map({v: i for i, v in enumerate(VALUES)})
    if col.name == "side":
        return col.map({"top": 0, "bottom": 1})
    return col


def logit_lens_report(
    model: HookedModel,
    vectors: dict[str, ValueVectors],
    layers: Sequence[int] | None = None,
    *,
    k: int = 10,
    use: str = "v",
    apply_final_norm: bool = True,
) -> Report:
    """Top and bottom ``k`` tokens of each value at its best layer and at ``layers``.

    ``layers`` defaults to :func:`default_lens_layers`. The table (``logit_lens.csv``)
    has one row per value x layer x side x rank.
    """
    layers = list(layers or default_lens_layers(int(model.cfg.n_layers)))
    kw: dict[str, Any] = {"k": k, "apply_final_norm": apply_final_norm, "use": use}
    best = decode_vectors(model, vectors, layers="best", **kw)
    chosen = decode_vectors(model, vectors, layers=layers, **kw)
    norm = "final-norm gain, then W_U" if apply_final_norm else "W_U only"
    text = [
        f"Logit lens of value vectors ({use}; {norm}), top/bottom {k} tokens\n",
        "== each value at its best layer ==",
        format_logit_lens(best),
    ]
    for layer in sorted(set(layers)):
        text += [f"\n== layer {layer} ==", format_logit_lens(chosen[chosen["layer"] == layer])]
    df = pd.concat([best, chosen]).drop_duplicates(["value", "layer", "side", "rank"])
    df = df.sort_values(["value", "layer", "side", "rank"], key=_value_then_natural)
    return Report("logit_lens", df.reset_index(drop=True), "\n".join(text))


#: The per-layer statistics :func:`value_structure_report` prints.
STRUCTURE_COLUMNS = [
    "statistic",
    "p_value",
    "p_fdr",
    "within",
    "between",
    "group_gap",
    "group_p_value",
    "opposite_cos",
    "mean_accuracy",
    "rank",
]


def value_structure_report(
    vectors: Mapping[str, ValueVectors],
    *,
    layer: int | None = None,
    use: str = "v",
    n_permutations: int = 10000,
    seed: int = 0,
    top: int = 5,
) -> Report:
    """Circumplex structure of the value vectors at every layer, with heatmaps and MDS.

    Args:
        vectors: at least three values' vectors.
        layer: the layer of the single heatmap (default: the middle layer, as the paper's Fig. 5).
        use: ``"v"`` (probe normals) or ``"mean_diff"``.
        n_permutations / seed: label permutations of the tests.
        top: how many best layers the text lists.
    """
    names = circumplex_order(list(vectors))
    n_layers = next(iter(vectors.values())).n_layers if vectors else 0
    layer = n_layers // 2 if layer is None else layer
    if not 0 <= layer < n_layers:
        raise ConvaError(f"--layer must be in 0..{n_layers - 1}, got {layer}")
    vv = dict(vectors)
    cos = cosine_matrices(vv, use=use)
    df = structure_by_layer(vv, use=use, n_permutations=n_permutations, seed=seed)
    at_layer = circumplex_test(cos[layer], names, n_permutations=n_permutations, seed=seed)
    # Constant cosines (e.g. all-zero probes) give NaN statistics everywhere.
    best = int(df["statistic"].idxmin()) if df["statistic"].notna().any() else layer
    emb = mds_embedding(cos[best])
    fit = procrustes_to_circle(emb, names, n_permutations=min(n_permutations, 2000), seed=seed)

    ranked = df.sort_values(["rank", "p_value"])
    with pd.option_context("display.width", 160, "display.float_format", "{:.3g}".format):
        text = [
            f"Circumplex structure of {len(names)} value vectors ({use}), {n_layers} layers, "
            f"{n_permutations} label permutations\n",
            "Most circumplex-like layers (spearman r of cosine vs circumplex distance; lower = more):",
            ranked[STRUCTURE_COLUMNS].head(top).to_string(),
            "\nAll layers:",
            df[STRUCTURE_COLUMNS].to_string(),
        ]
    n_sig, n_fdr = int((df["p_value"] < 0.05).sum()), int((df["p_fdr"] < 0.05).sum())
    text += [
        f"\n{n_sig}/{len(df)} layers have p < 0.05; {n_fdr} survive Benjamini-Hochberg at 0.05.",
        f"Layer {layer}: r = {at_layer['statistic']:.3f} (p = {at_layer['p_value']:.4f}), "
        f"within-group {at_layer['within']:.3f} vs between {at_layer['between']:.3f}; opposites: "
        + ", ".join(f"{k} {v:+.3f}" for k, v in at_layer["opposites"].items()),
        f"MDS at layer {best}: Procrustes disparity to the circle {fit['disparity']:.3f} "
        f"(permutation p = {fit['p_value']:.4f})",
    ]
    long = pd.DataFrame(
        [
            {"layer": L, "value_a": a, "value_b": b, "cosine": float(cos[L, i, j])}
            for L in range(cos.shape[0])
            for i, a in enumerate(names)
            for j, b in enumerate(names)
        ]
    )
    mds = {
        "layer": best,
        "values": names,
        "embedding": emb.tolist(),
        "aligned": fit["aligned"].tolist(),
        "disparity": fit["disparity"],
        "p_value": fit["p_value"],
        "reflected": fit["reflected"],
    }
    return Report(
        "structure_by_layer",
        df.reset_index(),
        "\n".join(text),
        extra={"cosine_matrices": long},
        figures={
            f"cosine_layer{layer}.png": lambda: plot_cosine_heatmap(cos[layer], names, layer),
            f"cosine_layer{best}.png": lambda: plot_cosine_heatmap(cos[best], names, best),
            "cosine_grid.png": lambda: plot_cosine_grid(cos, names),
            "structure_by_layer.png": lambda: plot_structure_by_layer(df),
            "accuracy.png": lambda: plot_accuracy_curves(vv),
            f"mds_layer{best}.png": lambda: plot_mds(emb, names, fit=fit, layer=best),
        },
        documents={f"mds_layer{best}.json": mds},
        dpi=130,
    )
