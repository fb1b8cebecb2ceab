"""Twin training: two networks with the same parameters, the same batches and the same SGD, step by step.

The networks differ only in their normalization layer (``bn_gluon.BatchNorm`` or ``gluon.nn.BatchNorm``).
After every step the largest absolute difference of the outputs, the loss, every learned parameter and
every running statistic is recorded. Identical math gives differences at the level of float32 rounding
(about 1e-7 of the values), which then grows slowly as SGD feeds the rounding back into the weights; a
wrong formula shows up as a jump in the very first step.
"""
import itertools

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from ..models import copy_parameters, is_running_stat, lenet, named_parameters
from ..optim import SGD

QUANTITIES = ('output', 'loss', 'parameters', 'running_stats')


def parameter_differences(net_a, net_b):
    """name -> max |a - b| over every parameter, running statistics included."""
    a, b = named_parameters(net_a), named_parameters(net_b)
    names = sorted(a)
    diffs = nd.stack(*[max_abs_diff(a[n].data(), b[n].data()) for n in names]).asnumpy().ravel()
    return dict(zip(names, diffs.astype(float)))


def max_abs_diff(a, b):
    if a.dtype != b.dtype:                                  # a float64 twin: compare in float64
        a, b = a.astype('float64'), b.astype('float64')
    return nd.abs(a - b).max()


def dtype_of(net):
    return next(iter(named_parameters(net).values())).dtype


def sgd_step(net, optimizer, X, y, input_grad=False):
    """One training step of ``net`` on ``(X, y)`` (given in any dtype): ``(outputs, mean loss)``.

    ``input_grad``: ask for the gradient of the input too (see :func:`train_twins`).
    """
    X, y = X.astype(dtype_of(net)), y.astype(dtype_of(net))        # copies: input gradients stay apart
    if input_grad:
        X.attach_grad()
    with autograd.record():
        y_hat = net(X)                                              # (B, classes)
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(y_hat, y)       # (B,)
    loss.backward()
    optimizer.step(X.shape[0])
    return y_hat, loss.mean()


def train_twins(net_a, net_b, batches, lr, momentum=0.0, weight_decay=0.0, input_grad=False):
    """Train both networks on ``batches`` with the hand-written SGD, one step each in turn.

    Parameters
    ----------
    net_a, net_b : Block
        Networks of the same structure holding the same parameter values (see :func:`copy_parameters`).
        Their dtypes may differ (a float64 twin measures float32's own rounding); each gets the batches
        in its own dtype.
    batches : iterable of (X, y)
        The training batches, fed to both networks in the same order.
    lr, momentum, weight_decay : float
        The SGD settings (:class:`bn_gluon.optim.SGD`), the same for both.
    input_grad : bool
        Ask for the gradient of the input too. MXNet's CPU batch norm updates its running statistics in
        backward, and backward never reaches a batch norm applied straight to the input when nothing
        before it needs a gradient (gluoncv's v2 ResNets start so); this makes backward reach it.

    Returns
    -------
    dict
        One list per quantity of ``QUANTITIES`` (max |a - b| after each step, the output and loss of
        that step's forward pass) and ``'final'``: name -> max |a - b| of each parameter at the end.
    """
    optimizers = [SGD(named_parameters(net), lr, momentum, weight_decay) for net in (net_a, net_b)]
    history = {q: [] for q in QUANTITIES}
    for X, y in batches:
        (out_a, loss_a), (out_b, loss_b) = (sgd_step(net, optimizer, X, y, input_grad)
                                            for net, optimizer in zip((net_a, net_b), optimizers))
        diffs = parameter_differences(net_a, net_b)
        history['output'].append(float(max_abs_diff(out_a, out_b).asscalar()))
        history['loss'].append(float(max_abs_diff(loss_a, loss_b).asscalar()))
        history['parameters'].append(max([d for n, d in diffs.items() if not is_running_stat(n)], default=0.0))
        history['running_stats'].append(max([d for n, d in diffs.items() if is_running_stat(n)], default=0.0))
    if not history['output']:
        raise ValueError('train_twins got no batches; give at least one (X, y) pair.')
    history['final'] = parameter_differences(net_a, net_b)
    return history


def batches_from(data_iter, steps):
    """The first ``steps`` batches of ``data_iter``, epoch after epoch (``DataIter.epoch(e)``)."""
    if steps < 1:
        raise ValueError(f'steps must be >= 1; got {steps}.')
    every_epoch = itertools.chain.from_iterable(data_iter.epoch(e) for e in itertools.count())
    return itertools.islice(every_epoch, steps)


def train_lenet_twins(config, train_iter, steps, ctx=None, hybridize=False, float64=False):
    """Twin training of the LeNet with ``bn_gluon.BatchNorm`` against its twin with ``gluon.nn.BatchNorm``.

    Uses ``config``'s seed, dense_norm, lr, momentum and weight_decay (a constant learning rate, so
    the differences are not scaled down by a schedule). With ``float64`` the pair is instead the gluon
    LeNet and its float64 copy: how far float32 rounding alone moves the same training. Returns
    :func:`train_twins`' history.
    """
    ctx = ctx or mx.cpu()
    mx.random.seed(config.seed)
    np.random.seed(config.seed)
    ours = lenet('gluon' if float64 else 'scratch', config.dense_norm, ctx=ctx)
    if float64:
        ours.cast('float64')
    ref = copy_parameters(ours, lenet('gluon', config.dense_norm, ctx=ctx))
    if hybridize:
        ours.hybridize()
        ref.hybridize()
    batches = ((X.as_in_context(ctx), y.as_in_context(ctx)) for X, y in batches_from(train_iter, steps))
    return train_twins(ours, ref, batches, config.lr, config.momentum, config.weight_decay)
