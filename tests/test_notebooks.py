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


# The real (non-smoke) path of each notebook, the path Colab users run: the zoo models it accepts
# (None: it takes no zoo model) and small values of its own parameters, so that the run stays short.
def _families(*families):
    from vaezoo import registry

    return [name for name in registry.list_models(pretrained=True) if registry.info(name)["family"] in families]


REAL_PATHS = {
    "quickstart.ipynb": (lambda: _families("VAE", "BetaVAE", "CVAE", "VQVAE", "HierarchicalVAE"),
                         {"N_SAMPLES": 4, "STEPS": 3}),
    "finetune.ipynb": (lambda: _families("VAE", "BetaVAE", "VQVAE", "HierarchicalVAE"),  # not the conditional CVAE
                       {"MAX_IMAGES": 64, "EPOCHS": 1, "BATCH_SIZE": 32}),
    "export_and_serve.ipynb": (lambda: _families("VQVAE"), {"N_IMAGES": 4}),
    "disentanglement.ipynb": (lambda: [None], {"STEPS": 20, "NUM_POINTS": 200}),
}


def _real_path_notebook(notebook, models, parameters, data_dir):
    """The notebook's cells after its `parameters` cell, once per model, each time after a cell that
    sets MODEL, the small parameters and DATA_DIR (one kernel: TensorFlow is imported once)."""
    import copy

    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    head, body = notebook.cells[: index + 1], notebook.cells[index + 1:]
    cells = list(head)
    for model in models:
        setting = {**parameters, "DATA_DIR": os.path.abspath(data_dir), **({"MODEL": model} if model else {})}
        cells.append(nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in setting.items())))
        cells += [copy.deepcopy(c) for c in body]
    notebook.cells = cells
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_PATHS))
def test_notebook_real_path_runs_for_every_model_it_accepts(name, tmp_path, shared_data_dir):
    """Not smoke mode: pretrained weights and the model's own data set (MNIST, Fashion-MNIST, CIFAR-10
    from ../shared/data, dSprites rendered by vaezoo), with no network; every run ends by saving a
    preset and loading it back."""
    from nbclient import NotebookClient

    models, parameters = REAL_PATHS[name]
    models = models()
    assert models, f"{name} accepts no zoo model"
    notebook = _real_path_notebook(nbformat.read(os.path.join(os.path.dirname(NOTEBOOKS[0]), name), as_version=4),
                                   models, parameters, shared_data_dir)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "SMOKE=True" not in printed and printed.count("saved and loaded back:") == len(models)


def test_finetune_notebook_quotes_the_last_benchmark_run():
    """The before/after figures in colab/finetune.ipynb's text (in bold) are those of the last
    benchmarks/finetune.py run recorded in benchmarks/RESULTS.md, not typed ones that could drift."""
    import re

    from helpers import load_script

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tables = load_script("readme_tables")
    rows, _ = tables.finetune_rows()
    assert rows, "benchmarks/RESULTS.md has no run of benchmarks/finetune.py"
    before, last = next(r for r in rows if r["steps"] == "0"), rows[-1]
    notebook = nbformat.read(os.path.join(root, "colab", "finetune.ipynb"), as_version=4)
    text = next(c.source for c in notebook.cells if c.cell_type == "markdown" and "benchmarks/finetune.py" in c.source)
    assert re.findall(r"\*\*(.+?)\*\*", text) == [
        before["from vae-mnist (nats)"], f"{last['steps']} steps", last["from vae-mnist (nats)"],
        last["from scratch (nats)"], last["verdict"]]
