"""Deprecated: the comparison's twin training is :mod:`bn_gluon.compare.twin_training` now.

"lockstep" names the device-thread scheduler (:func:`bn_gluon.parallel.lockstep`) only. This module
keeps the old names working, each with a FutureWarning, for one release.
"""
import warnings

from ..models import copy_parameters  # noqa: F401  (the old home of the name)
from .twin_training import (QUANTITIES, batches_from, dtype_of, max_abs_diff,  # noqa: F401
                            parameter_differences, train_lenet_twins, train_twins)

warnings.warn('bn_gluon.compare.lockstep is now bn_gluon.compare.twin_training (lockstep -> train_twins, '
              'lenet_lockstep -> train_lenet_twins); the old names go in the next release.', FutureWarning,
              stacklevel=2)


def _renamed(new, old):
    """``new`` under its old name ``old``, warning at every call."""
    def alias(*args, **kwargs):
        warnings.warn(f'bn_gluon.compare.{old} is now bn_gluon.compare.{new.__name__}; the old name goes in the '
                      f'next release.', FutureWarning, stacklevel=2)
        return new(*args, **kwargs)
    alias.__name__, alias.__doc__ = old, f'Deprecated name of :func:`{new.__name__}`.'
    return alias


lockstep = _renamed(train_twins, 'lockstep')
lenet_lockstep = _renamed(train_lenet_twins, 'lenet_lockstep')
