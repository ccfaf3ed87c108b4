import math

import numpy as np
import pytest
import torch

from conva_tl.analysis.calibration import best_C, calibration_table
from conva_tl.errors import ConvaError


def noisy_pairs(n_pairs=40, d=16, n_layers=2, seed=0):
    """Pairs whose labels follow one direction weakly: a weak L2 penalty overfits them."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g)
    context = torch.randn(n_pairs, d, generator=g) * 3
    acts = torch.zeros(n_layers, 2 * n_pairs, d)
    for layer in range(n_layers):
        acts[layer, 0::2] = context + 0.3 * direction + torch.randn(n_pairs, d, generator=g)
        acts[layer, 1::2] = context - 0.3 * direction + torch.randn(n_pairs, d, generator=g)
    return acts, [1, 0] * n_pairs, [i for i in range(n_pairs) for _ in (0, 1)]


def test_calibration_table_rows_and_margin():
    acts, y, g = noisy_pairs()
    df = calibration_table(acts, y, g, [100.0, 0.1], folds=4, p0=0.9)
    assert len(df) == 2 * 2 and set(df.layer) == {0, 1}
    np.testing.assert_allclose(df.margin, math.log(9) / df.w_norm)
    np.testing.assert_allclose(df.margin_rel, df.margin / df.resid_norm)
    assert df.accuracy.between(0, 1).all() and (df.logloss > 0).all()
    # weaker L2 -> larger |w| -> overconfident on held-out pairs -> worse log-loss
    per_c = df.groupby("C")[["w_norm", "logloss"]].mean()
    assert per_c.w_norm[100.0] > per_c.w_norm[0.1]
    assert per_c.logloss[100.0] > per_c.logloss[0.1]
    assert best_C(df) == 0.1


def test_calibration_table_rejects_bad_input():
    acts, y, g = noisy_pairs(n_pairs=3)
    with pytest.raises(ConvaError, match="at least 5 pairs"):
        calibration_table(acts, y, g, [1.0])
    acts, y, g = noisy_pairs()
    with pytest.raises(ConvaError, match="positive"):
        calibration_table(acts, y, g, [0.0])
