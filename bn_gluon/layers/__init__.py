"""Gluon ``HybridBlock`` layers: parameters and running statistics around the functions of
:mod:`bn_gluon.functional`."""
from .batch_norm import BatchNorm
from .batch_renorm import BatchRenorm
from .group_norm import GroupNorm, InstanceNorm, LayerNorm
from .lrn import LRN
from .sync_batch_norm import SyncBatchNorm

__all__ = ['BatchNorm', 'SyncBatchNorm', 'BatchRenorm', 'LayerNorm', 'InstanceNorm', 'GroupNorm', 'LRN']
