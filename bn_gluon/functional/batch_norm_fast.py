"""Moved: the fast path is :mod:`bn_gluon.functional.fast` (this alias warns and goes in the next release)."""
import warnings

from .fast import batch_norm as batch_norm_fast
from .fast.kernels import backward, forward

warnings.warn("bn_gluon.functional.batch_norm_fast moved to bn_gluon.functional.fast: use fast.batch_norm(...) "
              "(or BatchNorm(impl='fast')), and fast.kernels.forward / backward.", FutureWarning, stacklevel=2)

__all__ = ['batch_norm_fast', 'forward', 'backward']
