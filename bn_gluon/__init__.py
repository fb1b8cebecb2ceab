"""bn-gluon: Batch Normalization written by hand on MXNet Gluon, checked against ``gluon.nn.BatchNorm``."""
from . import compat  # first: numpy aliases and gluoncv beside PyTorch 2, before mxnet is imported
from . import functional
from .functional import RenormSchedule
from .layers import LRN, BatchNorm, BatchRenorm, GroupNorm, InstanceNorm, LayerNorm, SyncBatchNorm

__version__ = '0.1.0'
__all__ = ['BatchNorm', 'SyncBatchNorm', 'BatchRenorm', 'RenormSchedule', 'LayerNorm', 'InstanceNorm', 'GroupNorm',
           'LRN', 'functional', '__version__']
