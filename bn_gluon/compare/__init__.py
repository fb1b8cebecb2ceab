"""bn_gluon.BatchNorm side by side with gluon.nn.BatchNorm: is the hand-written layer the same?

``python -m bn_gluon.compare`` answers with a report: twin training (:mod:`.twin_training`), full runs
(:mod:`.runs`), speed (:mod:`.speed`), gluoncv ResNets and parameter interchange (:mod:`.twins`), and
the running-statistics conventions of MXNet, cuDNN, PyTorch and the paper (:mod:`.semantics`).
"""
import warnings

from ..models import copy_parameters
from .report import SECTIONS, run_comparison
from .runs import train_norms
from .semantics import CONVENTIONS, check
from .speed import measure_speed
from .twin_training import train_lenet_twins, train_twins
from .twins import compare_resnet, interchange, resnet_twins

__all__ = ['SECTIONS', 'run_comparison', 'train_twins', 'train_lenet_twins', 'copy_parameters', 'train_norms',
           'measure_speed', 'compare_resnet', 'resnet_twins', 'interchange', 'CONVENTIONS', 'check']

_RENAMED = {'lockstep': 'train_twins', 'lenet_lockstep': 'train_lenet_twins'}   # old name -> new, one release


def __getattr__(name):
    if name in _RENAMED:
        warnings.warn(f'bn_gluon.compare.{name} is now bn_gluon.compare.{_RENAMED[name]}; the old name goes in '
                      f'the next release.', FutureWarning, stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
