"""Every notebook in colab/ runs top to bottom with its smoke parameters (nbclient, CPU)."""

import glob
import os

import nbformat
import pytest

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "colab", "*.ipynb")))


def _with_smoke_parameters(notebook):
    """Insert `SMOKE = True` right after the cell tagged `parameters` (papermill's convention)."""
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.metadata.get("tags", []):
            notebook.cells.insert(index + 1, nbformat.v4.new_code_cell("SMOKE = True"))
            return notebook
    raise AssertionError("notebook has no cell tagged 'parameters'")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(path, tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "strip outputs"
    assert "colab-badge.svg" in notebook.cells[0].source
    client = NotebookClient(_with_smoke_parameters(notebook), timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()


def test_bad_notebook_parameter_gives_a_clear_message(tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    quickstart = [p for p in NOTEBOOKS if p.endswith("quickstart.ipynb")][0]
    notebook = _with_smoke_parameters(nbformat.read(quickstart, as_version=4))
    notebook.cells.insert(3, nbformat.v4.new_code_cell("N_SAMPLES = 0"))
    with pytest.raises(CellExecutionError, match="N_SAMPLES must be an integer >= 1, got 0"):
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
