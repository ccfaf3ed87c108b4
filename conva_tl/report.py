"""Reporting, in one place: text tables, figures, JSON and the folder a run writes.

Every run that writes results (``conva evaluate``, the ablation and analysis
scripts, the capability measure) builds a :class:`Report` and calls
:meth:`Report.write`: the main table as CSV, further tables, figures (drawn
only when written), JSON documents, an optional text summary and ``run.json``.
Text tables come from :func:`columns_text` (chosen columns of a long table) or
:func:`pivot_text` (methods x values of one metric). The notices printed when no
judge is configured are here too. Figures use matplotlib ``Figure`` objects on
the Agg canvas (:func:`new_figure`): no pyplot, no global backend switch.
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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "JUDGE_FREE_NOTICE",
    "METRIC_LABELS",
    "FigureMaker",
    "Report",
    "columns_text",
    "judge_notice",
    "judge_status",
    "new_figure",
    "pivot_text",
    "run_record",
]

#: Axis and table labels of the measures an evaluation reports.
METRIC_LABELS = {
    "csr": "control success rate (CSR)",
    "fr": "fluency rate (FR)",
    "p_v": "mean probe reading P_V of the answer",
    "probe_logit": "mean probe logit w.e + b of the answer",
    "distinct": "distinct-word ratio (fluency proxy)",
}

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


def judge_status(judged: bool) -> str:
    """Where an ablation's CSR/FR came from, or what its judge-free measures are."""
    return "\nCSR/FR from the configured judge." if judged else "\n" + JUDGE_FREE_NOTICE


def judge_notice(kind: str, out_dir: str | Path) -> str:
    """What an evaluation run without a judge leaves out, and how to add it (same answers)."""
    return (
        "No judge configured: CSR (control success, paper Appx. D) and FR (fluency, Appx. E) "
        "need an LLM judge and are NOT in these results.\n"
        "Reported instead (judge-free): p_v (and probe_logit) = the value probe's reading of each answer, "
        "words = answer length, distinct = distinct-word ratio (repetition proxy for fluency).\n"
        "To add CSR and FR, rerun the same command with a judge added; every stored answer is "
        "reused (same --out, values, methods and generation options):\n"
        f"  conva evaluate {kind} ... --out {out_dir} --base-url URL --judge-model NAME [--api-key-env VAR]\n"
        "  (the key is read from $OPENAI_API_KEY unless --api-key-env names another variable; "
        "OPENAI_BASE_URL and CONVA_JUDGE_MODEL work as defaults; a local server with no key "
        "takes any placeholder, e.g. OPENAI_API_KEY=EMPTY)."
    )


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure on its own Agg canvas (nothing global is touched)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def columns_text(table: pd.DataFrame, columns: Sequence[str], *, title: str) -> str:
    """``title`` and the table's ``columns`` (those it has), floats to 3 decimals, after a blank line."""
    cols = [c for c in columns if c in table.columns]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 40, "display.float_format", "{:.3f}".format
    ):
        return f"\n{title}\n{table[cols].to_string(index=False)}"


def pivot_text(table: pd.DataFrame, metric: str, *, digits: int = 2) -> str:
    """A methods x values pivot of one metric with a ``mean`` column, under the metric's label."""
    pivot = table.pivot(index="method", columns="value", values=metric)
    pivot = pivot.reindex(
        index=list(dict.fromkeys(table["method"])), columns=list(dict.fromkeys(table["value"]))
    )
    pivot["mean"] = pivot.mean(axis=1)
    return f"{METRIC_LABELS.get(metric, metric)}:\n" + pivot.round(digits).to_string()


def run_record(
    args: Mapping[str, Any], model: Any, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """What ``run.json`` records: the command line, the parsed options, the model, the time."""
    from conva_tl.model import model_info  # the model stack loads only when a run is recorded

    return {
        "argv": list(sys.argv[1:] if argv is None else argv),
        "args": dict(args),
        "model": model_info(model).to_dict(),
        "time": time.ctime(),
    }


def _csv_ready(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with dict and list cells (e.g. an answer's ``settings``) as JSON text."""
    nested = [
        c
        for c in df.columns
        if df[c].dtype == object and df[c].map(lambda x: isinstance(x, (dict, list))).any()
    ]
    if not nested:
        return df
    return df.assign(
        **{
            c: df[c].map(lambda x: json.dumps(x, default=str) if isinstance(x, (dict, list)) else x)
            for c in nested
        }
    )


#: Draws a figure when called (figures are drawn only when written).
FigureMaker = Callable[[], Figure]


@dataclass(frozen=True)
class Report:
    """The output of one run: what it prints and what it writes.

    Attributes:
        name: the main table is written as ``<name>.csv``.
        table: the main table.
        text: the summary to print (tables with titles and notes).
        extra: further tables, written as ``<key>.csv``.
        figures: file name -> a function drawing it; drawn and saved (at ``dpi``) after the CSVs.
        documents: file name -> a JSON-serialisable object, written after the figures.
        text_file: also write :attr:`text` to this file name (e.g. ``table.txt``).
        dpi: resolution of the figures.
    """

    name: str
    table: pd.DataFrame
    text: str
    extra: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    figures: Mapping[str, FigureMaker] = field(default_factory=dict)
    documents: Mapping[str, Any] = field(default_factory=dict)
    text_file: str | None = None
    dpi: int = 120

    def write(self, out: Path, settings: Mapping[str, Any] | None = None) -> list[Path]:
        """Write the CSVs, figures, documents, text and ``run.json`` (``settings``, if given).

        Dict and list cells (an answer record's ``settings``) are written to the CSVs as JSON.

        Returns:
            The paths written, in that order.
        """
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{self.name}.csv"]
        _csv_ready(self.table).to_csv(paths[0], index=False)
        for extra_name, df in self.extra.items():
            _csv_ready(df).to_csv(out / f"{extra_name}.csv", index=False)
            paths.append(out / f"{extra_name}.csv")
        for fname, draw in self.figures.items():
            draw().savefig(out / fname, dpi=self.dpi)
            paths.append(out / fname)
        for fname, doc in self.documents.items():
            (out / fname).write_text(json.dumps(doc, indent=2))
            paths.append(out / fname)
        if self.text_file:
            (out / self.text_file).write_text(self.text.rstrip("\n") + "\n")
            paths.append(out / self.text_file)
        if settings is not None:
            (out / "run.json").write_text(json.dumps(dict(settings), indent=2, default=str))
            paths.append(out / "run.json")
        return paths
