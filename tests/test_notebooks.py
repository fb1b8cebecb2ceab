"""Every course notebook runs top to bottom in a clean kernel, as committed."""
import shutil
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / 'notebooks'
sys.path.insert(0, str(NOTEBOOKS))
import execute  # noqa: E402  (notebooks/execute.py)

PATHS = execute.notebooks()


def test_the_course_has_its_notebooks():
    names = {p.name[:2] for p in PATHS}
    assert {'01', '02', '03', '04', '05', '06', '07', '08'} <= names


@pytest.mark.parametrize('path', PATHS, ids=[p.stem for p in PATHS])
def test_notebook_executes_without_error(path, tmp_path):
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = execute.execute(copy, save=False)  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    assert not [o for o in outputs if o.output_type == 'error']
    assert any('image/png' in o.get('data', {}) for o in outputs), 'every lesson shows at least one figure'


@pytest.mark.parametrize('path', PATHS, ids=[p.stem for p in PATHS])
def test_committed_notebook_holds_the_outputs_of_one_top_to_bottom_run(path):
    nb = execute.nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == 'code']
    assert counts == list(range(1, len(counts) + 1)), f'{path.name}: re-run with python notebooks/execute.py'
