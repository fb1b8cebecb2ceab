"""Pure math of the normalization layers: no parameters, no state of their own.

:mod:`.batch_norm` is the home of batch norm's formulas; the other modules call them. The opt-in fast
path, :mod:`.fast`, imports them too, never the other way round.
"""
from .batch_norm import (batch_norm, batch_norm_backward, channel_shape, inference_affine, input_gradient,
                         moving_average, stat_axes, update_moving_stats)
from .batch_renorm import RenormSchedule, batch_renorm, renorm_correction
from .group_norm import group_norm, instance_norm, layer_norm
from .lrn import lrn
from .sync_batch_norm import combine_moments, local_moments, sync_batch_norm, sync_batch_norm_backward

__all__ = ['batch_norm', 'batch_norm_backward', 'input_gradient', 'channel_shape', 'inference_affine',
           'moving_average', 'stat_axes', 'update_moving_stats',
           'sync_batch_norm', 'sync_batch_norm_backward', 'local_moments', 'combine_moments',
           'lrn', 'layer_norm', 'instance_norm', 'group_norm', 'batch_renorm', 'renorm_correction',
           'RenormSchedule']
