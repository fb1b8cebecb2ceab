import os

import bn_gluon  # noqa: F401  (first: bn_gluon.compat must be in force before mxnet is imported)
import mxnet as mx
import numpy as np
import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')

# Tiers (setup.cfg): `python -m pytest` runs the quick tier, -m "not slow and not notebooks and not browser
# and not distributed"; `python -m pytest -m ""` runs everything; naming files or tests without -m
# (`python -m pytest tests/test_notebooks.py -k 02`) runs all that is named. Most slow tests say so where
# they are written; these fixtures and names mark the tests that use them wherever they are: each starts a
# process, a browser or a notebook kernel.
MARKED_BY_FIXTURE = {
    'first_run': 'slow',          # tests/test_train_cli.py: python train.py in a subprocess, 2 epochs
    'site': 'slow',               # tests/test_site.py: builds the course site from the notebooks
    'browser': 'browser',         # tests/test_site.py: headless Chromium
    'visit': 'browser',
}
MARKED_BY_NAME = {
    'test_notebook_executes_without_error': 'notebooks',                    # a kernel runs a whole lesson
    'test_a_bad_flag_in_a_real_process_exits_2_and_writes_nothing': 'slow',  # python train.py, a process
}


def pytest_configure(config):
    """Files or tests named on the command line without -m run whole: the quick tier is for the bare command."""
    given = config.invocation_params.args
    chose_markers = any(a == '-m' or (a.startswith('-m') and not a.startswith('--')) for a in given)
    if config.args_source == pytest.Config.ArgsSource.ARGS and not chose_markers:
        config.option.markexpr = ''


def pytest_report_header(config):
    if config.option.markexpr:
        return f'tier: -m "{config.option.markexpr}" (every test: python -m pytest -m "")'
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = {MARKED_BY_FIXTURE.get(f) for f in getattr(item, 'fixturenames', ())}
        names.add(MARKED_BY_NAME.get(getattr(item, 'originalname', item.name)))
        for name in sorted(filter(None, names)):
            item.add_marker(name)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    mx.random.seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _engine_idle_after():
    """Every test leaves MXNet's engine idle, so no work of one test runs into the next.

    A custom operator still running on MXNet's thread when a later test starts a process deadlocked
    Python 3.8's fork (MXNet's fork handler waits for the operator, which waits for the interpreter).
    """
    yield
    mx.nd.waitall()
