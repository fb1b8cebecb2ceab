"""Batch Normalization as pure functions of NDArrays.

Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015. Algorithm 1 (training) and Algorithm 2 (inference).

Momentum convention (MXNet's, used everywhere in bn_gluon)::

    moving = momentum * moving + (1 - momentum) * batch        # momentum = 0.9

PyTorch and d2l master write the same average the other way round, ``moving = (1 - m) * moving + m * batch``
with ``m = 0.1``: their ``m`` is ``1 - momentum`` here.
"""
import numpy as np
from mxnet import autograd, nd

from ._checks import check_array, check_axis, check_channel_vector, check_eps, check_momentum
from .batch_norm_fast import batch_norm_fast

IMPLS = ('fast', 'reference')


def stat_axes(ndim, axis=1):
    """Axes that the statistics reduce over: every axis but the channel one.

    (N, C) -> (0,); (N, C, H, W) -> (0, 2, 3): one mean and variance per feature map, shared by all
    N*H*W positions, so one gamma/beta pair per channel instead of per activation.
    """
    return tuple(a for a in range(ndim) if a != axis)


def check_batch_norm(X, gamma, beta, moving_mean, moving_var, training, momentum, eps, axis=1):
    """Validate the arguments of :func:`batch_norm`; return (channel axis, C, m)."""
    check_array(X)
    axis = check_axis(axis, X.ndim)
    C = X.shape[axis]
    for name, v in (('gamma', gamma), ('beta', beta), ('moving_mean', moving_mean), ('moving_var', moving_var)):
        check_channel_vector(v, name, C)
    check_momentum(momentum)
    check_eps(eps)
    m = X.size // C if C else 0
    if training and m < 2:
        raise ValueError(f"a training batch of shape {X.shape} has {m} value per channel, so its variance "
                         f"is undefined (zero) and the output would be just beta. Use inference mode "
                         f"(training=False, or call outside autograd.record()) or a larger batch.")
    return axis, C, m


def batch_norm(X, gamma, beta, moving_mean, moving_var, *, training, momentum=0.9, eps=1e-5, axis=1,
               unbiased_var=False, impl='reference'):
    """Normalize ``X`` per channel, then scale by ``gamma`` and shift by ``beta``.

    In training the batch statistics are used and ``moving_mean`` / ``moving_var`` are updated in place,
    outside the autograd graph. In inference the moving statistics are used and nothing changes.

    Parameters
    ----------
    X : NDArray
        (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), floating point.
    gamma, beta : NDArray of shape (C,) or None
        Scale and shift; None means 1 and 0 (``scale=False`` / ``center=False``).
    moving_mean, moving_var : NDArray of shape (C,)
        Population estimates, updated in place when ``training``.
    training : bool
        Batch statistics (True) or moving statistics (False).
    momentum : float
        MXNet convention: ``moving = momentum * moving + (1 - momentum) * batch``.
    eps : float
        Added to the variance before the square root.
    axis : int
        The channel axis.
    unbiased_var : bool
        Store ``m / (m - 1)`` times the batch variance in ``moving_var`` (m = values per channel), the
        estimate of Algorithm 2 and PyTorch. Off by default: MXNet's CPU operator stores the biased one.
        The batch itself is always normalized with the biased variance.
    impl : {'fast', 'reference'}
        'reference' runs the body below, which reads like the paper, and lets autograd differentiate
        it; 'fast' (:mod:`.batch_norm_fast`) gives the same numbers through a few large kernels and
        the closed-form gradient, several times faster. Under autograd its backward is a Python
        callback, and in MXNet 1.9 with MKL-DNN a callback inside a branching graph (a ResNet) was
        sometimes handed gradients still being written: use 'fast' in chains such as the LeNet (tested)
        and keep 'reference', the default, elsewhere.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}; got {impl!r}.")
    axis, C, m = check_batch_norm(X, gamma, beta, moving_mean, moving_var, training, momentum, eps, axis)
    if impl == 'fast' and X.size:
        return batch_norm_fast(X, gamma, beta, moving_mean, moving_var, training=training, momentum=momentum,
                               eps=eps, axis=axis, unbiased_var=unbiased_var)
    dtype = X.dtype
    if dtype == np.float16:  # half precision overflows in the sum of squares: work in float32
        X = X.astype('float32')
    axes = stat_axes(X.ndim, axis)
    shape = tuple(C if a == axis else 1 for a in range(X.ndim))  # (1, C, 1, 1) for (N, C, H, W)

    if training:
        mean = X.mean(axis=axes, keepdims=True)                  # (N, C, H, W) -> (1, C, 1, 1)
        var = ((X - mean) ** 2).mean(axis=axes, keepdims=True)   # biased: divides by m = N*H*W
        with autograd.pause():
            update_moving_stats(moving_mean, moving_var, mean.reshape((C,)), var.reshape((C,)),
                                momentum, m / (m - 1) if unbiased_var else 1.0)
    else:
        mean = moving_mean.reshape(shape).astype(X.dtype, copy=False)
        var = moving_var.reshape(shape).astype(X.dtype, copy=False)

    X_hat = (X - mean) / nd.sqrt(var + eps)                      # zero mean, unit variance per channel
    return scale_shift(X_hat, gamma, beta, shape).astype(dtype, copy=False)


def scale_shift(X_hat, gamma, beta, shape):
    """``gamma * X_hat + beta`` with (C,) vectors reshaped to ``shape``; None means 1 or 0."""
    Y = X_hat
    if gamma is not None:
        Y = Y * gamma.reshape(shape).astype(X_hat.dtype, copy=False)
    if beta is not None:
        Y = Y + beta.reshape(shape).astype(X_hat.dtype, copy=False)
    return Y


def update_moving_stats(moving_mean, moving_var, mean, var, momentum, var_correction=1.0):
    """``moving = momentum * moving + (1 - momentum) * batch``, in place, outside autograd."""
    mean = mean.detach().astype(moving_mean.dtype, copy=False)
    var = var.detach().astype(moving_var.dtype, copy=False) * var_correction
    moving_mean[:] = momentum * moving_mean + (1 - momentum) * mean
    moving_var[:] = momentum * moving_var + (1 - momentum) * var


def batch_norm_backward(dY, X, gamma, mean, var, eps, axis=1):
    """Closed-form gradients of batch_norm in training mode: (dX, dgamma, dbeta).

    With x_hat = (x - mean) / sigma, sigma = sqrt(var + eps) and m values per channel::

        dX = gamma / (m * sigma) * (m * dY - sum(dY) - x_hat * sum(dY * x_hat))
        dgamma = sum(dY * x_hat),  dbeta = sum(dY)

    ``mean`` and ``var`` are the (C,) batch statistics of the forward pass; ``gamma`` None means 1.
    """
    axes = stat_axes(X.ndim, axis)
    C = X.shape[axis]
    m = X.size // C
    shape = tuple(C if a == axis else 1 for a in range(X.ndim))
    inv_sigma = 1.0 / nd.sqrt(var.reshape(shape) + eps)          # (1, C, 1, 1)
    X_hat = (X - mean.reshape(shape)) * inv_sigma
    dbeta = dY.sum(axis=axes)                                     # (N, C, H, W) -> (C,)
    dgamma = (dY * X_hat).sum(axis=axes)
    g = inv_sigma if gamma is None else gamma.reshape(shape) * inv_sigma
    dX = g / m * (m * dY - dbeta.reshape(shape) - X_hat * dgamma.reshape(shape))
    return dX, dgamma, dbeta
