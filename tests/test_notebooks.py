"""Every chapter notebook is stored without outputs, opens without a kernel prompt, and runs top to bottom."""

import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))  # the chapters, and the demo dashboards
IDS = [str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOKS]
CHAPTERS = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]


def test_there_are_chapters():
    assert NOTEBOOKS, "notebooks/ holds no chapter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; nbstripout (make install sets it up) strips them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_names_its_kernel_so_jupyterlab_does_not_ask(path):
    kernelspec = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3" and kernelspec.get("language") == "python"


def test_git_strips_outputs_from_notebooks():
    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes
    if (ROOT / ".git").exists():
        attr = subprocess.run(["git", "check-attr", "filter", "notebooks/x.ipynb"], cwd=ROOT,
                              capture_output=True, text=True).stdout
        assert attr.strip().endswith("nbstripout")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_top_to_bottom_in_a_fresh_kernel(path):
    notebook = nbformat.read(path, as_version=4)
    # The notebooks run from their own folder, as JupyterLab runs them.
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [out for cell in notebook.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors
    streams = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for out in cell.outputs if out.output_type == "stream" and out.name == "stderr")
    assert "Traceback" not in streams, streams


def test_the_start_page_links_every_chapter():
    start = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4)
    text = "".join(cell.source for cell in start.cells if cell.cell_type == "markdown")
    missing = [p.name for p in CHAPTERS if p.name != "00_start_here.ipynb" and f"]({p.name})" not in text]
    assert not missing, f"00_start_here.ipynb does not link {missing}"
