"""Pure math of the normalization layers: no parameters, no state of their own.

:mod:`.batch_norm` is the home of batch norm's formulas; the other modules call them. The opt-in fast
path, :mod:`.fast`, imports them too, never the other way round.
"""
import functools
import warnings

from .batch_norm import (batch_norm as _batch_norm, batch_norm_backward, channel_shape, inference_affine,
                         input_gradient, moving_average, stat_axes, update_moving_stats)
from . import fast
from .batch_renorm import RenormSchedule, batch_renorm, renorm_correction
from .group_norm import group_norm, instance_norm, layer_norm
from .lrn import lrn
from .sync_batch_norm import combine_moments, local_moments, sync_batch_norm, sync_batch_norm_backward

__all__ = ['batch_norm', 'batch_norm_backward', 'input_gradient', 'channel_shape', 'inference_affine',
           'moving_average', 'stat_axes', 'update_moving_stats',
           'sync_batch_norm', 'sync_batch_norm_backward', 'local_moments', 'combine_moments',
           'lrn', 'layer_norm', 'instance_norm', 'group_norm', 'batch_renorm', 'renorm_correction',
           'RenormSchedule']

IMPL_MOVED = ("batch_norm(..., impl=...) goes in the next release: call bn_gluon.functional.batch_norm(...) "
              "for the reference and bn_gluon.functional.fast.batch_norm(...) for the fast path "
              "(or BatchNorm(impl=...)).")


@functools.wraps(_batch_norm)
def batch_norm(*args, impl=None, **kwargs):
    # The reference, bn_gluon.functional.batch_norm.batch_norm; impl= is still taken, with a FutureWarning,
    # for one release (the fast path moved to bn_gluon.functional.fast).
    if impl is None:
        return _batch_norm(*args, **kwargs)
    if impl not in ('reference', 'fast'):
        raise ValueError(f"impl must be 'reference' or 'fast', got {impl!r}")
    warnings.warn(IMPL_MOVED, FutureWarning, stacklevel=2)
    return (fast.batch_norm if impl == 'fast' else _batch_norm)(*args, **kwargs)
