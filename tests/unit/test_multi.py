"""Exact multi-value control: the batched solver against independent solvers, and the hook."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, nnls

from conva_tl.errors import ConvaError
from conva_tl.gate import CallableGate
from conva_tl.generate import GenerationContext, generate
from conva_tl.hooks import hooked, resid_post_name
from conva_tl.methods import ConVA, steer
from conva_tl.multi import LeastNormSolver, min_norm_push
from conva_tl.multi_conva import MultiConVA, parse_requests
from conva_tl.probes import ValueVectors
from conva_tl.steering import conva_shift, logit
from conva_tl.tokens import tokenize_batch

PROMPTS = ["I locked the door.", "Should I save my bonus or spend it on a holiday?", "Hi"]


def ldp_reference(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Lawson & Hanson's least-distance programme via scipy's NNLS (float64, independent)."""
    d_model = a.shape[1]
    e = np.vstack([a.T, c[None]])
    f = np.zeros(d_model + 1)
    f[-1] = 1.0
    u, _ = nnls(e, f, maxiter=50 * e.shape[1])
    r = e @ u - f
    assert abs(r[-1]) > 1e-9, "reference says infeasible"
    return -r[:d_model] / r[-1]


def least_violation_reference(a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squared shortfall, then the smallest push reaching it, with SLSQP on d = A^T mu."""
    g = a @ a.T
    k = len(c)
    obj = minimize(
        lambda z: float(z[k:] @ z[k:]),
        np.zeros(2 * k),
        jac=lambda z: np.concatenate([np.zeros(k), 2 * z[k:]]),
        constraints=[{"type": "ineq", "fun": lambda z: g @ z[:k] + z[k:] - c}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    s = np.clip(c - g @ obj.x[:k], 0, None)
    push = minimize(
        lambda mu: float(mu @ g @ mu),
        obj.x[:k],
        jac=lambda mu: 2 * g @ mu,
        constraints=[{"type": "ineq", "fun": lambda mu: g @ mu - (c - s) + 1e-9}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    return a.T @ push.x, float(np.sqrt(s @ s))


def random_instance(seed: int, infeasible: bool = False, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, 11, (1,), generator=g))
    d_model = int(torch.randint(64, 577, (1,), generator=g))
    a = torch.randn(k, d_model, generator=g) * 0.2
    if infeasible:
        k = max(k, 2)
        base = torch.randn(max(1, k // 2), d_model, generator=g) * 0.2
        mix = torch.randn(k, base.shape[0], generator=g)
        mix[1] = -mix[0]  # two opposite normals: incompatible unless both are slack
        a = mix @ base
    c = torch.randn(n, k, generator=g) * 3
    if infeasible:
        c[:, :2] = c[:, :2].abs() + 0.5
    return a, c


@pytest.mark.parametrize("seed", range(12))
def test_feasible_random_instances_match_nnls_reference(seed):
    a, c = random_instance(seed)
    push = min_norm_push(a, c)
    assert push.d.dtype == torch.float32
    residual = c.double() - push.d.double() @ a.double().T
    assert residual.max() <= 1e-5, "every constraint is met to 1e-5"
    assert not push.infeasible.any()
    for j in range(c.shape[0]):
        ref = ldp_reference(a.double().numpy(), c[j].double().numpy())
        ref_norm = np.linalg.norm(ref)
        assert abs(push.d[j].norm().item() - ref_norm) <= 1e-4 * max(1.0, ref_norm)
        np.testing.assert_allclose(push.d[j].double().numpy(), ref, atol=1e-4 * max(1, ref_norm))


def test_satisfied_constraints_do_not_move():
    a, c = random_instance(3)
    push = min_norm_push(a, -c.abs())
    assert torch.equal(push.d, torch.zeros_like(push.d))


@pytest.mark.parametrize("seed", range(6))
def test_infeasible_instances_give_the_least_violation(seed):
    a, c = random_instance(100 + seed, infeasible=True, n=4)
    solver = LeastNormSolver(a)
    assert solver.rank < a.shape[0]
    push = solver.solve(c)
    assert torch.isfinite(push.d).all() and torch.isfinite(push.shortfall).all()
    assert push.infeasible.all()
    for j in range(c.shape[0]):
        ref_d, ref_violation = least_violation_reference(a.double().numpy(), c[j].double().numpy())
        assert abs(push.shortfall[j].norm().item() - ref_violation) <= 1e-4 * max(1, ref_violation)
        ref_norm = np.linalg.norm(ref_d)
        assert abs(push.d[j].norm().item() - ref_norm) <= 1e-3 * max(1.0, ref_norm)


def test_one_constraint_is_the_closed_form():
    g = torch.Generator().manual_seed(7)
    resid = torch.randn(3, 5, 96, generator=g) * 3
    w = torch.randn(96, generator=g)
    allowed = torch.ones(3, 5, dtype=torch.bool)
    out, eps, before = conva_shift(resid, w, 0.4, 0.9, allowed)
    push = min_norm_push(w[None], (logit(0.9) - before).reshape(-1, 1))
    torch.testing.assert_close(push.d.reshape(resid.shape), out - resid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(push.d.reshape(-1, 96).norm(dim=-1), eps.reshape(-1))


def test_degenerate_inputs_stay_finite():
    w = torch.randn(64, generator=torch.Generator().manual_seed(0))
    # raise and cap along one direction, incompatible: the push splits the difference
    push = min_norm_push(torch.stack([w, -w]), torch.tensor([[2.0, 1.0], [1.0, -3.0]]))
    assert torch.isfinite(push.d).all()
    torch.testing.assert_close(push.d @ w, torch.tensor([0.5, 1.0]), atol=1e-5, rtol=0)
    assert push.infeasible.tolist() == [True, False]
    # a duplicated constraint is rank-deficient but feasible: the larger offset wins
    dup = min_norm_push(torch.stack([w, w, 2 * w]), torch.tensor([[1.0, 3.0, 2.0]]))
    torch.testing.assert_close(dup.d[0], 3.0 * w / (w @ w), atol=1e-5, rtol=1e-5)
    assert not dup.infeasible.any()
    # a zero normal with a positive offset is an unmeetable request, not a NaN
    zero = min_norm_push(torch.stack([w, torch.zeros(64)]), torch.tensor([[1.0, 1.0]]))
    assert torch.isfinite(zero.d).all() and zero.shortfall[0, 1] == pytest.approx(1.0)
    with pytest.raises(ConvaError, match="zero"):
        LeastNormSolver(torch.zeros(2, 8))
    with pytest.raises(ConvaError, match="NaN"):
        min_norm_push(w[None], torch.tensor([[math.nan]]))
    with pytest.raises(ConvaError, match="between 1 and 10"):
        LeastNormSolver(torch.randn(11, 64))


def random_vectors(model, value, layers, seed) -> ValueVectors:
    g = torch.Generator().manual_seed(seed)
    n, d = model.cfg.n_layers, model.cfg.d_model
    return ValueVectors(
        value=value,
        w=torch.randn(n, d, generator=g),
        b=torch.randn(n, generator=g),
        accuracy=torch.ones(n),
        train_accuracy=torch.ones(n),
        control_layers=tuple(layers),
        mean_diff=torch.randn(n, d, generator=g),
        metadata={},
    )


def _vectors(model):
    return {
        "security": random_vectors(model, "security", (1, 2), 0),
        "benevolence": random_vectors(model, "benevolence", (2,), 1),
        "power": random_vectors(model, "power", (1, 2, 3), 2),
    }


def _run(model, method, texts=PROMPTS):
    batch = tokenize_batch(model.tokenizer, texts)
    real = batch.attention_mask.bool()
    ctx = GenerationContext(token_mask=real, managed=True, prompt_pass=True, texts=texts, trace=[])
    seen = {}
    readers = [
        (resid_post_name(layer), lambda x, hook, layer=layer: seen.__setitem__(layer, x.clone()))
        for layer in range(model.cfg.n_layers)
    ]
    with (
        torch.inference_mode(),
        hooked(model, method.fwd_hooks(model, ctx)) as calls,
        hooked(model, readers),
    ):
        model(batch.input_ids, attention_mask=batch.attention_mask, return_type=None)
    return seen, real, calls, ctx


def test_hook_lands_readings_on_the_requested_contours(tiny):
    vv = _vectors(tiny)
    method = MultiConVA.from_vectors(vv, {"security": 0.9, "benevolence": 0.8}, caps={"power": 0.3})
    seen, real, calls, _ = _run(tiny, method)
    assert dict(calls) == {resid_post_name(layer): 1 for layer in (1, 2, 3)}
    bounds = {"security": (0.9, 1), "benevolence": (0.8, 1), "power": (0.3, -1)}
    for layer in (1, 2, 3):
        here = [v for v in vv if layer in vv[v].control_layers]
        on_contour = torch.zeros_like(real)
        for value in here:
            p = torch.sigmoid(seen[layer] @ vv[value].w[layer] + vv[value].b[layer])[real]
            bound, sign = bounds[value]
            assert (sign * (p - bound) >= -1e-4).all(), (layer, value)
            on_contour[real] |= (p - bound).abs() < 1e-4
        # each token either had nothing to fix or now sits on some contour (the push is minimal)
        assert on_contour[real].float().mean() > 0.5
    # layer 2 has all three constraints; readings of values without layer 3 are free there
    assert method.constraint_set(3).labels == ("power<=0.3",)


def test_one_target_equals_conva(tiny):
    vv = _vectors(tiny)
    single, real, _, _ = _run(tiny, ConVA(vv["security"], p0=0.95))
    multi, _, _, _ = _run(tiny, MultiConVA(targets={"security": (vv["security"], 0.95)}))
    for layer in (1, 2):
        torch.testing.assert_close(multi[layer][real], single[layer][real], atol=1e-4, rtol=1e-4)


def test_trace_has_columns_per_constraint(tiny):
    vv = _vectors(tiny)
    method = MultiConVA.from_vectors(vv, {"security": 0.9}, caps={"power": 0.3})
    _, trace = generate(tiny, PROMPTS[:2], max_new_tokens=3, intervention=method, trace=True)
    for label in ("security>=0.9", "power<=0.3"):
        for col in ("p_before", "p_after", "active", "violation"):
            assert f"{col}[{label}]" in trace.columns
    assert set(trace.layer) == {1, 2, 3} and trace.step.max() >= 1
    assert (trace.filter(like="violation[").fillna(0) < 1e-3).all().all()
    assert (trace["p_after[security>=0.9]"].dropna() >= 0.9 - 1e-4).all()
    assert trace.loc[trace.layer == 3, "p_after[security>=0.9]"].isna().all()


def test_value_gate_drops_only_its_value(tiny):
    vv = _vectors(tiny)
    closed = CallableGate(lambda texts: [0.0] * len(texts), threshold=0.5)
    gated = MultiConVA.from_vectors(
        vv, {"security": 0.9}, caps={"power": 0.3}, gates={"power": closed}
    )
    without = MultiConVA.from_vectors(vv, {"security": 0.9}, layers=(1, 2))
    a, real, _, _ = _run(tiny, gated)
    b, _, _, _ = _run(tiny, without)
    for layer in (1, 2):
        torch.testing.assert_close(a[layer][real], b[layer][real])
    base = generate(tiny, PROMPTS, max_new_tokens=4)
    shut = MultiConVA.from_vectors(vv, {"security": 0.99}, gate=closed)
    assert generate(tiny, PROMPTS, max_new_tokens=4, intervention=shut) == base


def test_conflicting_band_warns_splits_the_difference_or_raises(tiny):
    vv = _vectors(tiny)
    sec = vv["security"]
    band = MultiConVA(targets={"security": (sec, 0.9)}, caps={"security": (sec, 0.5)})
    with pytest.warns(RuntimeWarning, match="conflict"):
        seen, real, _, ctx = _run(tiny, band)
    mid = (logit(0.9) + logit(0.5)) / 2
    reading = seen[1] @ sec.w[1] + sec.b[1]
    torch.testing.assert_close(
        reading[real], torch.full_like(reading[real], mid), atol=1e-4, rtol=0
    )
    assert all(math.isfinite(r["eps"]) for r in ctx.trace)
    strict = MultiConVA(
        targets={"security": (sec, 0.9)}, caps={"security": (sec, 0.5)}, on_infeasible="error"
    )
    with pytest.raises(ConvaError, match="cannot all be met"):
        _run(tiny, strict)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(tiny, MultiConVA(targets={"security": (sec, 0.9)}, caps={"power": (vv["power"], 0.3)}))


def test_steer_accepts_a_multi_intervention(tiny):
    vv = _vectors(tiny)
    method = MultiConVA.from_vectors(vv, {"benevolence": 0.9}, caps={"power": 0.3})
    ids = tiny.tokenizer("Should I save my bonus?", return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode(), steer(tiny, method, trace=True) as s:
        tiny(ids.input_ids, return_type="logits")
    assert s.calls[resid_post_name(2)] == 1 and s.method is method
    assert "p_after[benevolence>=0.9]" in s.trace_frame().columns


def test_bad_requests_are_rejected(tiny):
    vv = _vectors(tiny)
    with pytest.raises(ConvaError, match="at least one"):
        MultiConVA()
    with pytest.raises(ConvaError, match="vectors of"):
        MultiConVA(targets={"power": (vv["security"], 0.9)})
    with pytest.raises(ConvaError, match="P0"):
        MultiConVA.from_vectors(vv, {"security": 1.0})
    with pytest.raises(ConvaError, match="no vectors"):
        MultiConVA.from_vectors(vv, {"hedonism": 0.9})
    with pytest.raises(ConvaError, match="on_infeasible"):
        MultiConVA.from_vectors(vv, {"security": 0.9}, on_infeasible="maybe")
    with pytest.raises(ConvaError, match="neither"):
        MultiConVA.from_vectors(vv, {"security": 0.9}, gates={"power": None})


def test_parse_requests():
    targets, caps = parse_requests(["Benevolence=0.9", "power<=0.3", "security", "power>=0.1"], 0.8)
    assert targets == {"benevolence": 0.9, "security": 0.8, "power": 0.1}
    assert caps == {"power": 0.3}
    for bad in ("power<=", "power<=1.5", "power=>0.3", "notavalue=0.9"):
        with pytest.raises(ConvaError):
            parse_requests([bad], 0.9)


def test_cli_steers_several_values(tiny, monkeypatch, tmp_path, capsys):
    import conva_tl.model
    import conva_tl.store
    from conva_tl.cli import main

    vv = _vectors(tiny)
    monkeypatch.setattr(conva_tl.model, "load_model", lambda *a, **k: tiny)
    monkeypatch.setattr(
        conva_tl.store.ArtifactStore,
        "vectors",
        lambda self, model, values, **k: {v: vv[v] for v in values},
    )
    monkeypatch.setattr(conva_tl.store.ArtifactStore, "gates", lambda *a, **k: {})
    argv = ["steer", "Should I save?", "--vectors", str(tmp_path / "v"), "--max-new-tokens", "3"]
    argv += ["--value", "benevolence=0.9", "--value", "power<=0.3"]
    assert main(argv + ["--method", "base,conva"]) == 0
    out = capsys.readouterr().out
    assert "[base]" in out and "[conva]" in out
    assert main(argv + ["--method", "caa"]) == 2
    assert "several values" in capsys.readouterr().err
