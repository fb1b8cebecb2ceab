"""Gluon ``HybridBlock`` layers: parameters and running statistics around the functions of
:mod:`bn_gluon.functional`."""
from .batch_norm import BatchNorm
from .group_norm import GroupNorm, InstanceNorm, LayerNorm
from .lrn import LRN

__all__ = ['BatchNorm', 'LayerNorm', 'InstanceNorm', 'GroupNorm', 'LRN']
