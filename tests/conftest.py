import os

import bn_gluon  # noqa: F401  (first: bn_gluon.compat must be in force before mxnet is imported)
import mxnet as mx
import numpy as np
import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    mx.random.seed(0)
    np.random.seed(0)
