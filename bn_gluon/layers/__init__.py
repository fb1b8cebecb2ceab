"""Gluon ``HybridBlock`` layers: parameters and running statistics around the functions of
:mod:`bn_gluon.functional`."""
from .batch_norm import BatchNorm
from .lrn import LRN

__all__ = ['BatchNorm', 'LRN']
