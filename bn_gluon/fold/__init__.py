"""Folding batch norm into the layer before it: at inference BN is a per-channel affine map.

Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015, Algorithm 2: at inference the statistics are fixed, so per channel c ::

    y = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c = s_c * x + t_c
    s_c = gamma_c / sqrt(var_c + eps),   t_c = beta_c - s_c * mean_c

When ``x = W x_in + b`` comes straight from a convolution or dense layer, the two maps compose into one
layer of the same kind, and the BN disappears::

    W'_c = s_c * W_c   (filter / row c: the output channel)      b'_c = s_c * (b_c - mean_c) + beta_c

A layer without bias gains one.

What is folded: a BN (``bn_gluon.BatchNorm`` and its subclasses, ``gluon.nn.BatchNorm``, or
``gluon.nn.BatchNormReLU``, whose ReLU stays as an Activation) that directly follows, in the same
HybridSequential or Sequential, a Conv1D/2D/3D with a channel-first layout (NCW, NCHW, NCDHW) and BN
axis 1, or a Dense layer with BN on its units axis (axis 1 or -1 with ``flatten=True``; -1 with
``flatten=False``, whose units are the last axis). The LeNet of :mod:`bn_gluon.models` folds into the
LeNet with ``norm='none'``, and its raw parameter dict into the raw dict without ``bn*`` entries.

What is not: any other BN (first in its container, after a pooling layer, on another axis, after a
layer with a fused ``activation=`` -- a nonlinearity cannot be folded through -- or after an NHWC
convolution). Such a BN is kept exactly, as a :class:`ScaleShift` layer ``s * x + t`` (its inference
output, with no BatchNorm operator left), and a :class:`FoldWarning` names it and says why;
``strict=True`` raises a ValueError instead. With ``scale=False`` gamma counts as 1; with
``center=False`` beta is still added (it is only not learned), in ``bn_gluon.BatchNorm`` as in
``gluon.nn.BatchNorm``.

Command line, for a run of train.py (its run folder, checkpoint folder, or a .params file beside
config.json / state.json)::

    python -m bn_gluon.fold runs/RUN exported/    # folded-symbol.json, folded-0000.params, fold.json
"""
from .export import (NORM_OPS, export_network, find_run, fold_for_export, fold_run, graph_ops, load_exported,
                     load_run)
from .affine import ScaleShift, bn_scale_shift, fold_layer, fold_weights, scale_shift_from, why_not_foldable
from .folding import FoldWarning, fold_batch_norm, fold_raw_params

__all__ = ['fold_batch_norm', 'fold_raw_params', 'fold_layer', 'fold_weights', 'bn_scale_shift', 'why_not_foldable',
           'ScaleShift', 'scale_shift_from', 'FoldWarning', 'export_network', 'load_exported', 'graph_ops',
           'NORM_OPS', 'find_run', 'load_run', 'fold_for_export', 'fold_run']
