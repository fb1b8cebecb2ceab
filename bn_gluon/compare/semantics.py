"""Where batch-norm implementations disagree about the running statistics, and which bn_gluon setting matches.

Three things differ between MXNet's CPU operator, MXNet's cuDNN operator, PyTorch and the paper (Ioffe and
Szegedy 2015, Algorithm 2): how the momentum is written, whether the stored variance is the biased batch
variance (divide by m) or the unbiased one (m / (m - 1) times that), and whether the statistics move in
the forward or the backward pass. Each system is given here as a reference that produces its running
statistics over a few batches, and :func:`check` runs bn_gluon's matching setting beside it:

- MXNet CPU: ``gluon.nn.BatchNorm`` itself, run on this machine.
- MXNet cuDNN: the behaviour reported in apache/mxnet issues 14357, 18751 and 21111 (unbiased variance,
  updated in forward), written in NumPy: there is no GPU here to run it.
- PyTorch: its documented update, ``running = (1 - m) * running + m * batch`` with ``m = 0.1`` and the
  unbiased variance, in NumPy (PyTorch is not a dependency).
- The paper: the average of the batch means and ``m / (m - 1)`` times the average of the batch variances
  over the training batches, in NumPy. A cumulative average is a moving average whose momentum is
  ``1 - 1/k`` at the k-th batch, so ``bn_gluon.functional.batch_norm`` reproduces it.
"""
from collections import namedtuple

import numpy as np
from mxnet import autograd, gluon, nd

from .. import BatchNorm
from ..functional.batch_norm import batch_norm

Convention = namedtuple('Convention', 'system momentum variance moves setting checked_against')

CONVENTIONS = {
    'mxnet_cpu': Convention(
        'MXNet CPU (`gluon.nn.BatchNorm`)', '`r = 0.9 r + 0.1 b` (momentum=0.9)', 'biased (sum / m)',
        'backward', '`BatchNorm()` (moves in forward)', '`gluon.nn.BatchNorm` run here'),
    'mxnet_cudnn': Convention(
        'MXNet cuDNN (as reported)', '`r = 0.9 r + 0.1 b` (momentum=0.9)', 'unbiased (m/(m-1))', 'forward',
        '`BatchNorm(unbiased_var=True)`', 'the reported update in NumPy (no GPU here)'),
    'pytorch': Convention(
        'PyTorch `BatchNorm2d`', '`r = (1 - 0.1) r + 0.1 b` (momentum=0.1)', 'unbiased (m/(m-1))', 'forward',
        '`BatchNorm(momentum=0.9, unbiased_var=True)`', 'the documented update in NumPy'),
    'paper': Convention(
        'Ioffe & Szegedy 2015, Alg. 2', 'none: plain average over batches', 'unbiased (m/(m-1))',
        'after training', '`functional.batch_norm(..., momentum=1 - 1/k, unbiased_var=True)`',
        'Algorithm 2 in NumPy'),
}
TOLERANCE = 1e-5


def make_batches(k=3, shape=(4, 3, 2, 2), seed=0):
    """``k`` batches whose channels have different means and spreads; m = N*H*W = 16 keeps m/(m-1) visible."""
    rng = np.random.RandomState(seed)
    C = shape[1]
    return [rng.normal(rng.uniform(-3, 3, (1, C, 1, 1)), rng.uniform(0.5, 2, (1, C, 1, 1)), size=shape)
            .astype(np.float32) for _ in range(k)]


def _moments(X, unbiased):
    axes = (0,) + tuple(range(2, X.ndim))                          # every axis but the channel one
    m = X.size // X.shape[1]
    return X.mean(axis=axes), X.var(axis=axes) * (m / (m - 1) if unbiased else 1.0)


def _numpy_reference(system, batches):
    """(mean, var) after each batch, as the system's formulas give them; they all move in forward."""
    mean, var, out = np.zeros(batches[0].shape[1]), np.ones(batches[0].shape[1]), []
    for k, X in enumerate(batches, 1):
        mu, v = _moments(X.astype(np.float64), unbiased=True)
        keep = {'mxnet_cudnn': 0.9, 'pytorch': 1 - 0.1, 'paper': 1 - 1 / k}[system]
        mean, var = keep * mean + (1 - keep) * mu, keep * var + (1 - keep) * v
        out.append((mean, var))
    return out, 'forward'


def _layer_stats(layer, batches):
    """Run forward + backward per batch; return ((mean, var) after each step, where the stats moved)."""
    layer.initialize()
    rng = np.random.RandomState(1)
    out, moved_in = [], None
    for X in batches:
        before = layer.running_mean.data().asnumpy()
        with autograd.record():
            Y = layer(nd.array(X))
        after_forward = layer.running_mean.data().asnumpy()
        Y.backward(nd.array(rng.normal(size=X.shape)))
        after_backward = layer.running_mean.data().asnumpy()
        if moved_in is None:
            moved_in = ('forward' if not np.array_equal(before, after_forward)
                        else 'backward' if not np.array_equal(before, after_backward) else 'never')
        out.append((after_backward, layer.running_var.data().asnumpy()))
    return out, moved_in


def reference_stats(system, batches):
    """The running statistics of ``system`` (a key of ``CONVENTIONS``) after each batch, and when they move."""
    if system not in CONVENTIONS:
        raise ValueError(f'unknown system {system!r}; expected one of {", ".join(CONVENTIONS)}.')
    if system == 'mxnet_cpu':
        return _layer_stats(gluon.nn.BatchNorm(in_channels=batches[0].shape[1]), batches)
    return _numpy_reference(system, batches)


def bn_gluon_stats(system, batches):
    """The same from bn_gluon's setting for ``system`` (the ``setting`` column of ``CONVENTIONS``)."""
    if system == 'paper':
        C = batches[0].shape[1]
        mean, var, out = nd.zeros(C), nd.ones(C), []
        for k, X in enumerate(batches, 1):
            batch_norm(nd.array(X), None, None, mean, var, training=True, momentum=1 - 1 / k, unbiased_var=True)
            out.append((mean.asnumpy(), var.asnumpy()))
        return out, 'forward'
    kwargs = {'mxnet_cpu': {}, 'mxnet_cudnn': {'unbiased_var': True},
              'pytorch': {'momentum': 1 - 0.1, 'unbiased_var': True}}[system]
    return _layer_stats(BatchNorm(in_channels=batches[0].shape[1], **kwargs), batches)


def check(system, batches=None):
    """Run ``system``'s reference and bn_gluon's setting on the same batches and compare.

    Returns a dict: ``max_difference`` of the running statistics after each step, where each moves
    them (``reference_moves``, ``bn_gluon_moves``), and ``same_values`` (difference under TOLERANCE).
    """
    batches = make_batches() if batches is None else batches
    ref, ref_moves = reference_stats(system, batches)
    ours, our_moves = bn_gluon_stats(system, batches)
    diff = max(float(np.abs(np.asarray(a, np.float64) - b).max()) for r, o in zip(ref, ours) for a, b in zip(r, o))
    return {'system': system, 'max_difference': diff, 'same_values': diff < TOLERANCE,
            'reference_moves': ref_moves, 'bn_gluon_moves': our_moves}


def check_all(batches=None):
    return [check(system, batches) for system in CONVENTIONS]
