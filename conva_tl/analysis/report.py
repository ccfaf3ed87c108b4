"""An ablation's output: tables, figures and a text summary, written the same way by every run.

Each function of :mod:`conva_tl.analysis.steering_reports` and
:mod:`conva_tl.analysis.probe_reports` returns an :class:`AblationReport`;
:meth:`AblationReport.write` puts ``<name>.csv``, the extra CSVs, the figures
and ``run.json`` in a folder. The report's :attr:`~AblationReport.text` is for
the caller to print (library code never prints). The column lists and notes of
the judge-free steering measures are here too, shared by every steering report.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from conva_tl.model import model_info

__all__ = [
    "JUDGE_FREE_NOTICE",
    "STEERING_COLUMNS",
    "STEERING_METRICS",
    "JUDGE_METRICS",
    "EPS_COLUMNS",
    "EPS_NOTE",
    "AblationReport",
    "format_table",
    "judge_status",
    "run_record",
    "steering_metrics",
]

JUDGE_FREE_NOTICE = (
    "No judge configured: CSR/FR (paper Appx. D/E) are NOT reported. Judge-free measures instead:\n"
    "  logit_v, p_v  probe reading of each answer (re-encoded as raw text, value's best layer, the same\n"
    "                reference probe for every setting): mean logit w.e+b and mean P_V = sigmoid;\n"
    "                higher = more value-aligned (P_V saturates near 1 on this model: read the logit)\n"
    "  p_v_pos       share of answers with P_V > 0.5\n"
    "  kl_unrelated  KL(base || steered) of the first answer token on value-unrelated prompts (nats):\n"
    "                the cost to unrelated behaviour (0 = untouched)\n"
    "  kl_value      the same on the value questions: how strongly control acts where it should\n"
    "  ppl           perplexity of the answers under the unsteered model (fluency proxy; lower = more fluent)\n"
    "  distinct2     distinct word-bigram ratio of the answers (repetition proxy; 1 = no repeats)\n"
    "For CSR/FR add --judge-model NAME [--base-url URL] [--api-key-env VAR]."
)
STEERING_COLUMNS = (
    "value",
    "setting",
    "csr",
    "fr",
    "logit_v",
    "p_v",
    "p_v_pos",
    "kl_value",
    "kl_unrelated",
    "kl_unrelated_max",
    "ppl",
    "distinct2",
    "words",
)
STEERING_METRICS = (
    ("logit_v", "probe logit of answers (higher = aligned)"),
    ("kl_unrelated", "KL(base||steered), unrelated prompts"),
    ("ppl", "answer perplexity under base (lower = fluent)"),
    ("distinct2", "distinct-2 ratio (1 = no repeats)"),
)
JUDGE_METRICS = (("csr", "control success rate (CSR)"), ("fr", "fluency rate (FR)"))
EPS_COLUMNS = ("moved", "eps_abs", "eps_abs_generated", "p_before", "saturated")
EPS_NOTE = (
    "control applied (from the generation trace): moved = share of (token, layer) cells shifted; "
    "eps_abs = mean |eps| over all cells; eps_abs_generated = over generated tokens; "
    "p_before = mean P_V before control; saturated = share of cells with P_V < 0.01 or > 0.99 before control"
)


def steering_metrics(judged: bool) -> list[tuple[str, str]]:
    """The panels of a steering figure: CSR/FR and two judge-free measures, or all four judge-free."""
    return [*JUDGE_METRICS, *STEERING_METRICS[:2]] if judged else list(STEERING_METRICS)


def judge_status(judged: bool) -> str:
    """Where CSR/FR came from, or what the judge-free measures are."""
    return "\nCSR/FR from the configured judge." if judged else "\n" + JUDGE_FREE_NOTICE


def format_table(table: pd.DataFrame, columns: Sequence[str], *, title: str) -> str:
    """``title`` and the table's ``columns`` (those it has), floats to 3 decimals, after a blank line."""
    cols = [c for c in columns if c in table.columns]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 40, "display.float_format", "{:.3f}".format
    ):
        return f"\n{title}\n{table[cols].to_string(index=False)}"


def run_record(
    args: Mapping[str, Any], model: Any, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """What ``run.json`` records: the command line, the parsed options, the model, the time."""
    return {
        "argv": list(sys.argv[1:] if argv is None else argv),
        "args": dict(args),
        "model": model_info(model).to_dict(),
        "time": time.ctime(),
    }


#: Draws a figure when called (figures are drawn only when written).
FigureMaker = Callable[[], Figure]


@dataclass(frozen=True)
class AblationReport:
    """The output of one ablation run.

    Attributes:
        name: the main table is written as ``<name>.csv`` and the first figure as ``<name>.png``.
        table: the main table.
        text: the summary to print (tables with titles and notes).
        extra: further tables, written as ``<key>.csv``.
        figures: file name -> a function drawing it; drawn and saved (at ``dpi``) after the CSVs.
        documents: file name -> a JSON-serialisable object, written after the figures.
        dpi: resolution of the figures.
    """

    name: str
    table: pd.DataFrame
    text: str
    extra: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    figures: Mapping[str, FigureMaker] = field(default_factory=dict)
    documents: Mapping[str, Any] = field(default_factory=dict)
    dpi: int = 120

    def write(self, out: Path, settings: Mapping[str, Any] | None = None) -> list[Path]:
        """Write the CSVs, figures, documents and ``run.json`` (``settings``, if given) to ``out``.

        Returns:
            The paths written, in that order.
        """
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{self.name}.csv"]
        self.table.to_csv(paths[0], index=False)
        for extra_name, df in self.extra.items():
            df.to_csv(out / f"{extra_name}.csv", index=False)
            paths.append(out / f"{extra_name}.csv")
        for fname, draw in self.figures.items():
            draw().savefig(out / fname, dpi=self.dpi)
            paths.append(out / fname)
        for fname, doc in self.documents.items():
            (out / fname).write_text(json.dumps(doc, indent=2))
            paths.append(out / fname)
        if settings is not None:
            (out / "run.json").write_text(json.dumps(dict(settings), indent=2, default=str))
            paths.append(out / "run.json")
        return paths
