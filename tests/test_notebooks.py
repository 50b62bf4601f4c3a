"""The walkthroughs in notebooks/: stored without outputs, and each one runs top to bottom on a fresh kernel.

The kernel is ipykernel's ``python3`` in this environment (the ``notebooks`` extra installs it), started in
``notebooks/`` as Jupyter would start it, with ``RLHF_NOTEBOOK_OUT`` pointing the notebook's outputs at a temporary
directory.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # the slowest cell (pretraining in 01) takes ~20 s on one core


def test_the_walkthroughs_are_all_there():
    assert len(NOTEBOOKS) >= 3, (
        f"expected at least 3 notebooks in notebooks/, found {[p.name for p in NOTEBOOKS]}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: cell {index} was saved with outputs; clear them before committing"
            )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_writes_its_plots(path, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_NOTEBOOK_OUT", str(tmp_path))  # inherited by the kernel
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # a failing cell raises CellExecutionError with the cell's source and traceback

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells)
    errors = [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    pngs = [p for p in tmp_path.rglob("*.png") if p.stat().st_size > 0]
    assert pngs, f"{path.name} wrote no PNG under RLHF_NOTEBOOK_OUT"
    shown = [o for cell in code_cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert shown, f"{path.name} displays no plot"
