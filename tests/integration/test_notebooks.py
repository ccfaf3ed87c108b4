"""The teaching notebooks run top to bottom on the embedded model (STYLE.md: notebooks run in CI).

Each notebook is executed in memory with nbclient on the ``python3`` kernel of
the interpreter running the tests (jupyter_client launches a kernelspec whose
command is ``python`` with ``sys.executable``, i.e. ``.venv/bin/python`` under
``make test``); the first test checks that this is so. The executed copy is
discarded: the committed notebooks keep their outputs cleared, which the
last test checks. Notebook 03 fits all ten values into ``out/vectors`` on its
first run (a few minutes on 2 CPU cores) and reuses them afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = (
    "01_value_vectors.ipynb",
    "02_gated_control.ipynb",
    "03_value_structure.ipynb",
    "04_multi_value.ipynb",
)
KERNEL = "python3"
CELL_TIMEOUT_S = 1800  # per cell; the slowest (fitting ten values) takes minutes on a loaded CPU


def _execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    km = KernelManager(kernel_name=KERNEL)
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def test_kernel_is_this_interpreter():
    nb = new_notebook(cells=[new_code_cell("import sys, conva_tl\nprint(sys.prefix)")])
    out = _execute(nb, NOTEBOOKS)
    printed = "".join(
        o.get("text", "")
        for o in out.cells[0].outputs
        if o.output_type == "stream" and o.get("name") == "stdout"
    ).strip()
    assert Path(printed).resolve() == Path(sys.prefix).resolve(), (
        f"kernel {KERNEL!r} runs in {printed!r}, not in this venv ({sys.prefix}); "
        "check `.venv/bin/jupyter kernelspec list`"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    executed = _execute(nb, NOTEBOOKS)  # raises CellExecutionError on the first failing cell
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean_and_laid_out(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), (
        "commit notebooks with outputs cleared"
    )
    assert nb.cells[0].cell_type == "code" and "Set-up" in nb.cells[0].source
    assert nb.cells[1].cell_type == "code" and "DEVICE" in nb.cells[1].source
    assert "Learning objectives" in nb.cells[2].source
    assert any("Check cell" in c.source for c in code), (
        "each notebook has an exercise with a check cell"
    )
