"""Gluon ``HybridBlock`` layers: parameters and running statistics around the functions of
:mod:`bn_gluon.functional`."""
from .batch_norm import BatchNorm

__all__ = ['BatchNorm']
