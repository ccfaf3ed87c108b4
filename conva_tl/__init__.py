"""ConVA (Controlled Value Vector Activation) on TransformerLens.

Importing the package loads no model and patches nothing; ``load_model`` boots
a ``TransformerBridge`` when called.
"""

from conva_tl._version import __version__
from conva_tl.activations import cache_resid_post
from conva_tl.artifacts import load_gates, load_vectors, save_gates, save_vectors
from conva_tl.datasets import (
    contrast_set,
    load_mc,
    load_pairs,
    load_questions,
    load_straightforward,
    load_unrelated,
)
from conva_tl.errors import ArtifactError, ConvaError, DataError, HookError, ModelLoadError
from conva_tl.gate import ActivationGate, CallableGate, fit_gate, fit_gates, gate_opening_matrix
from conva_tl.generate import GenerationConfig, generate
from conva_tl.hooks import hook_name, hooked, resid_post_name
from conva_tl.identify import identify, identify_one
from conva_tl.methods import CAA, ICA, Base, ConVA, SummedCAA, steer
from conva_tl.model import load_hf_model, load_model
from conva_tl.model_protocol import HookedModel
from conva_tl.multi import LeastNormSolver, min_norm_push
from conva_tl.multi_conva import MultiConVA
from conva_tl.pipeline import FitSettings, fit_all, make_method, summary_table
from conva_tl.probes import LayerRule, LinearProbe, ValueVectors, fit_probes
from conva_tl.store import ArtifactStore
from conva_tl.values import VALUES, canonical_value, get_value

__all__ = [
    "__version__",
    "VALUES",
    "canonical_value",
    "get_value",
    "load_model",
    "load_hf_model",
    "HookedModel",
    "cache_resid_post",
    "hook_name",
    "resid_post_name",
    "hooked",
    "contrast_set",
    "load_pairs",
    "load_straightforward",
    "load_questions",
    "load_unrelated",
    "load_mc",
    "LinearProbe",
    "LayerRule",
    "ValueVectors",
    "fit_probes",
    "identify",
    "identify_one",
    "save_vectors",
    "load_vectors",
    "save_gates",
    "load_gates",
    "ActivationGate",
    "CallableGate",
    "fit_gate",
    "fit_gates",
    "gate_opening_matrix",
    "GenerationConfig",
    "generate",
    "Base",
    "ICA",
    "CAA",
    "SummedCAA",
    "ConVA",
    "steer",
    "MultiConVA",
    "LeastNormSolver",
    "min_norm_push",
    "ArtifactStore",
    "FitSettings",
    "fit_all",
    "make_method",
    "summary_table",
    "ConvaError",
    "DataError",
    "ModelLoadError",
    "ArtifactError",
    "HookError",
]
