"""bn_gluon.BatchNorm side by side with gluon.nn.BatchNorm: is the hand-written layer the same?

``python -m bn_gluon.compare`` answers with a report: lockstep training (:mod:`.lockstep`), full runs
(:mod:`.runs`), speed (:mod:`.speed`), gluoncv ResNets and parameter interchange (:mod:`.twins`), and
the running-statistics conventions of MXNet, cuDNN, PyTorch and the paper (:mod:`.semantics`).
"""
from .lockstep import copy_parameters, lenet_lockstep, lockstep
from .report import SECTIONS, run_comparison
from .runs import train_norms
from .semantics import CONVENTIONS, check
from .speed import measure_speed
from .twins import compare_resnet, interchange, resnet_twins

__all__ = ['SECTIONS', 'run_comparison', 'lockstep', 'lenet_lockstep', 'copy_parameters', 'train_norms',
           'measure_speed', 'compare_resnet', 'resnet_twins', 'interchange', 'CONVENTIONS', 'check']
