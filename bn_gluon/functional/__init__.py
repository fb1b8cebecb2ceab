"""Pure ``mxnet.ndarray`` math of the normalization layers: no parameters, no state of their own."""
from .batch_norm import batch_norm, batch_norm_backward, stat_axes, update_moving_stats
from .batch_renorm import RenormSchedule, batch_renorm, renorm_correction
from .group_norm import group_norm, instance_norm, layer_norm
from .lrn import lrn

__all__ = ['batch_norm', 'batch_norm_backward', 'stat_axes', 'update_moving_stats', 'lrn',
           'layer_norm', 'instance_norm', 'group_norm',
           'batch_renorm', 'renorm_correction', 'RenormSchedule']
