"""Building blocks of the judged development loop (``analyses/control_quality.py``).

* :func:`spread_questions` - N eval questions of a value spread over its
  scenario types (the first N would all share one or two types).
* :class:`Variant` - a candidate method under test, parsed from
  ``NAME=DIR[,method=conva|caa|instruct][,p0=X][,p0@VALUE=X][,coef=Y][,gate=on|off][,layers=A-B][,from=L]``
  (``from=L``/``max=K``: re-select the layers with the paper's rule from layer L
  on, keeping at most the K most accurate; ``method=instruct``: a prompt that asks
  outright for the value's side, :data:`INSTRUCT_TEMPLATE`, the model's capacity check).
* :func:`answer_jobs` - the ``(value, method, questions)`` jobs that
  :func:`conva_tl.evaluation.runner.generate_answers` answers and stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conva_tl.datasets import ContrastSet, DilemmaQuestion, _make_set, contrast_set, load_questions
from conva_tl.errors import ConvaError
from conva_tl.methods import CAA, ICA, ConVA
from conva_tl.pipeline import DEFAULT_CAA_COEF, DEFAULT_P0, make_method
from conva_tl.probes import LayerRule
from conva_tl.values import canonical_value

__all__ = ["spread_questions", "pairs_set", "Variant", "answer_jobs", "INSTRUCT_TEMPLATE"]

#: A direct instruction to take the value's side (not the paper's ICA, which only says the
#: model "has a high level" of the value): if answers do not move even under it, the model
#: cannot express the value on these questions and no steering can be expected to.
INSTRUCT_TEMPLATE = (
    "{question} In your answer, recommend the option that best serves {value} ({definition})."
)


def pairs_set(value: str, folders: Sequence[str | Path]) -> ContrastSet:
    """The context-controlled pairs of ``value`` from several folders, as one set.

    Pair groups stay distinct across folders, so a held-out split never
    separates a pair.
    """
    sets = [contrast_set(value, "pairs", path=Path(f) / f"{value}.jsonl") for f in folders]
    if len(sets) == 1:
        return sets[0]
    texts: list[str] = []
    labels: list[int] = []
    groups: list[int] = []
    offset = 0
    for cs in sets:
        texts += cs.texts
        labels += cs.labels
        groups += [g + offset for g in cs.groups]
        offset += max(cs.groups) + 1
    return _make_set(sets[0].value, "pairs", texts, labels, groups)


def spread_questions(
    value: str, n: int, split: str = "eval", *, offset: float = 0.0
) -> list[DilemmaQuestion]:
    """``n`` questions of ``split`` at evenly spaced positions (all scenario types covered).

    ``offset`` (in units of the spacing, 0 <= offset < 1) shifts every position, so
    ``offset=0.5`` gives a second set disjoint from the first (a confirmation set).
    """
    qs = load_questions(value, split=split)
    if not 1 <= n <= len(qs):
        raise ConvaError(f"questions per value must be in 1..{len(qs)}, got {n}")
    if not 0.0 <= offset < 1.0:
        raise ConvaError(f"offset must be in [0, 1), got {offset}")
    step = len(qs) / n
    return [qs[int((i + offset) * step)] for i in range(n)]


def _layers(spec: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in spec.split("+"):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class Variant:
    """A candidate method: its name, artifact folder and settings."""

    name: str
    vectors: str
    method: str = "conva"
    p0: float = DEFAULT_P0
    coef: float = DEFAULT_CAA_COEF
    gate: bool = True
    layers: tuple[int, ...] | None = None
    min_layer: int = 0
    max_layers: int | None = None
    mode: str = "per_token"
    p0_by_value: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """``NAME=DIR[,key=value...]`` with keys method, p0, coef, gate, layers."""
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            raise ConvaError(f"variant {spec!r}: expected NAME=DIR[,p0=X][,coef=Y]...")
        folder, *opts = rest.split(",")
        kw: dict[str, Any] = {}
        for opt in opts:
            key, _, val = opt.partition("=")
            if key == "method" and val in ("conva", "caa", "instruct"):
                kw["method"] = val
            elif key in ("p0", "coef"):
                kw[key] = float(val)
            elif key.startswith("p0@"):
                kw.setdefault("p0_by_value", []).append((canonical_value(key[3:]), float(val)))
            elif key == "gate" and val in ("on", "off"):
                kw["gate"] = val == "on"
            elif key == "layers":
                kw["layers"] = _layers(val)
            elif key == "from":
                kw["min_layer"] = int(val)
            elif key == "max":
                kw["max_layers"] = int(val)
            elif key == "mode":
                kw["mode"] = val
            else:
                raise ConvaError(
                    f"variant {spec!r}: unknown option {opt!r} "
                    "(method=conva|caa|instruct, p0=X, p0@VALUE=X, coef=Y, gate=on|off, layers=A-B+C, "
                    "from=L, max=K, mode=M)"
                )
        if "p0_by_value" in kw:
            kw["p0_by_value"] = tuple(kw["p0_by_value"])
        return cls(name, folder, **kw)

    def build(self, vectors: Any, gate: Any) -> Any:
        layers = self.layers
        if self.min_layer or self.max_layers:
            depth = self.min_layer / len(vectors.accuracy)
            rule = LayerRule(min_depth=depth, max_layers=self.max_layers)
            layers = rule.select(vectors.accuracy.tolist(), candidates=layers)
        if self.method == "caa":
            return CAA(vectors, coef=self.coef, layers=layers, name=self.name)
        if self.method == "instruct":
            return ICA(vectors.value, template=INSTRUCT_TEMPLATE, name=self.name)
        return ConVA(
            vectors,
            p0=dict(self.p0_by_value).get(vectors.value, self.p0),
            gate=gate if self.gate else None,
            layers=layers,
            mode=self.mode,
            name=self.name,
        )


def answer_jobs(
    values: Sequence[str],
    methods: Sequence[str],
    variants: Sequence[Variant],
    questions: Mapping[str, list[DilemmaQuestion]],
    artifacts: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
    *,
    default_folder: str,
) -> list[tuple[str, Any, list[DilemmaQuestion]]]:
    """One job per value x (named method, then variant), in that order."""
    jobs = []
    for v in values:
        vecs, gates = artifacts[default_folder]
        for m in methods:
            jobs.append((v, make_method(m, v, vecs.get(v), gates.get(v)), questions[v]))
        for var in variants:
            vv, gg = artifacts[var.vectors]
            jobs.append((v, var.build(vv[v], gg.get(v)), questions[v]))
    return jobs
