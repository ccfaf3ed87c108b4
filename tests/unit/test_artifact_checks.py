"""Artifacts are checked, not trusted: folders, value names and every JSON field
(issue 14, points 2 and 7)."""

import json
import shutil

import pytest
import torch

from conva_tl.artifacts import load_gates, load_vectors, save_gates, save_vectors
from conva_tl.errors import ArtifactError
from conva_tl.gate import ActivationGate
from conva_tl.probes import ValueVectors


def vectors(value: str, seed: int = 0) -> ValueVectors:
    g = torch.Generator().manual_seed(seed)
    return ValueVectors(
        value=value,
        w=torch.randn(4, 32, generator=g),
        b=torch.zeros(4),
        accuracy=torch.ones(4),
        train_accuracy=torch.ones(4),
        control_layers=(1, 2),
        mean_diff=torch.randn(4, 32, generator=g),
        metadata={"note": "hand-made"},
    )


def gate(value: str) -> ActivationGate:
    return ActivationGate(value, 1, torch.ones(32), 0.0, 0.5, {"heldout_auroc": 1.0})


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "vecs"
    save_vectors(out, [vectors("security"), vectors("power", seed=1)])
    save_gates(out, [gate("security"), gate("power")])
    return out


def edit_json(path, change):
    obj = json.loads(path.read_text())
    path.write_text(json.dumps(change(obj)))


def test_round_trip_still_works(folder, tiny):
    loaded = load_vectors(folder, model=tiny)
    assert loaded["security"] == vectors("security") and loaded["power"] == vectors("power", 1)
    gates = load_gates(folder, model=tiny)
    assert set(gates) == {"power", "security"} and gates["security"].block == 1


def test_missing_gate_folder_or_gates_is_an_error(tmp_path, folder):
    with pytest.raises(ArtifactError, match="not a folder"):
        load_gates(tmp_path / "a" / "missing" / "folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="holds no gates"):
        load_gates(tmp_path / "empty")
    with pytest.raises(ArtifactError, match="no gate for 'tradition'"):
        load_gates(folder, ["tradition"])
    with pytest.raises(ArtifactError, match="not a folder"):
        load_vectors(tmp_path / "missing")


def test_renamed_files_do_not_load_as_another_value(folder):
    for suffix in (".json", ".safetensors"):
        shutil.copy(folder / f"power{suffix}", folder / f"security{suffix}")
        shutil.copy(folder / f"gate-power{suffix}", folder / f"gate-security{suffix}")
    with pytest.raises(ArtifactError, match="holds 'power', not 'security'"):
        load_vectors(folder, ["security"])
    with pytest.raises(ArtifactError, match="holds 'power', not 'security'"):
        load_gates(folder, ["security"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda o: {k: v for k, v in o.items() if k != "control_layers"},
            "'control_layers' is missing",
        ),
        (
            lambda o: {
                **{k: v for k, v in o.items() if k != "control_layers"},
                "control_layer": [1],
            },
            "misspelt",
        ),
        (lambda o: {**o, "control_layers": "13"}, "must be a list"),
        (lambda o: {**o, "control_layers": ["a"]}, "must be an integer"),
        (lambda o: {**o, "control_layers": [1, 9]}, "expected 0..3"),
        (lambda o: {**o, "control_layers": [True]}, "must be an integer"),
        (lambda o: {**o, "metadata": "x"}, "'metadata' must be an object"),
        (lambda o: {**o, "value": "kindness"}, "unknown value"),
        (lambda o: [o], "expected a JSON object"),
    ],
)
def test_vectors_json_is_validated(folder, change, message):
    edit_json(folder / "security.json", change)
    with pytest.raises(ArtifactError, match=message) as err:
        load_vectors(folder, ["security"])
    assert "security.json" in str(err.value)


def test_control_layer_with_a_zero_probe_is_refused_at_load(folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "security.safetensors"))
    tensors["w"][2] = 0
    save_file(tensors, str(folder / "security.safetensors"))
    with pytest.raises(ArtifactError, match=r"no usable probe at control layer\(s\) \[2\]"):
        load_vectors(folder, ["security"])


@pytest.mark.parametrize("manifest", ['"security"', '["security"]', '{"values": "security"}'])
def test_manifest_must_be_an_object_with_a_list(folder, manifest):
    (folder / "manifest.json").write_text(manifest)
    with pytest.raises(ArtifactError, match="manifest.json"):
        load_vectors(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: {k: v for k, v in o.items() if k != "block"}, "'block' is missing"),
        (lambda o: {**o, "threshold": "high"}, "'threshold' must be a finite number"),
        (lambda o: {**o, "block": 0}, "'block' is 0"),
        (lambda o: {**o, "b": None}, "'b' must be a finite number"),
    ],
)
def test_gate_json_is_validated(folder, change, message):
    edit_json(folder / "gate-security.json", change)
    with pytest.raises(ArtifactError, match=message) as err:
        load_gates(folder, ["security"])
    assert "gate-security.json" in str(err.value)


def test_gate_block_beyond_the_model_is_refused(folder, tiny):
    edit_json(folder / "gate-security.json", lambda o: {**o, "block": 9})
    load_gates(folder, ["security"])  # no model: any block >= 1
    with pytest.raises(ArtifactError, match="'block' is 9, expected 1..3"):
        load_gates(folder, ["security"], model=tiny)


def test_non_utf8_json_names_the_file(folder):
    (folder / "security.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ArtifactError, match="security.json is not UTF-8"):
        load_vectors(folder, ["security"])
