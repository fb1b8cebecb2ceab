"""Batch Normalization as pure functions: the one home of its formulas.

Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015. Algorithm 1 (training) and Algorithm 2 (inference).

The formulas take ``F``, ``mxnet.nd`` or ``mxnet.sym`` as in a HybridBlock's ``hybrid_forward``, so the
same lines run imperatively and inside a hybridized graph, and MXNet's autograd differentiates them.
:func:`batch_norm` is the whole layer on NDArrays, as the articles write it.

Momentum convention (MXNet's, used everywhere in bn_gluon)::

    moving = momentum * moving + (1 - momentum) * batch        # momentum = 0.9

PyTorch and d2l master write the same average the other way round, ``moving = (1 - m) * moving + m * batch``
with ``m = 0.1``: their ``m`` is ``1 - momentum`` here.
"""
import numpy as np
from mxnet import autograd, nd

from ._checks import check_batch_norm


def channel_shape(ndim, axis=1):
    """The shape that lines a (C,) vector up with the channel ``axis``: (1, -1, 1, 1) for (N, C, H, W)."""
    return tuple(-1 if a == axis % ndim else 1 for a in range(ndim))


def stat_axes(ndim, axis=1):
    """Axes that the statistics reduce over: every axis but the channel one.

    (N, C) -> (0,); (N, C, H, W) -> (0, 2, 3): one mean and variance per feature map, shared by all
    N*H*W positions, so one gamma/beta pair per channel instead of per activation.
    """
    return tuple(a for a in range(ndim) if a != axis % ndim)


def as_rows(F, X, axis=1):
    """``X`` with its channel ``axis`` 1 seen as rows, (N, C, H, W) -> (N, C, H*W); other axes: ``X`` itself.

    Each (example, channel) pair is then one contiguous row, which MXNet's CPU reduces and broadcasts
    over several times faster than over the original axes. ``F.reshape_like(Y, X)`` turns results back.
    """
    return F.reshape(X, shape=(0, 0, -1)) if axis == 1 else X


def channel_mean(F, X, axis=1):
    """Mean over every axis but the channel ``axis``, kept for broadcasting: (N, C, S) -> (1, C, 1).

    With channel axis 1, ``X`` is the rows view of :func:`as_rows`: each row is averaged by global
    average pooling, then the rows over the examples, the numbers of ``X.mean(axis=(0, 2),
    keepdims=True)`` about 10x faster on MXNet's CPU, whose generic reductions are slow.
    """
    if axis != 1:
        return F.mean(X, axis=axis, exclude=True, keepdims=True)
    row_means = F.Pooling(X, kernel=(1,), global_pool=True, pool_type='avg')  # (N, C, S) -> (N, C, 1)
    return F.mean(row_means, axis=0, keepdims=True)                           # -> (1, C, 1)


def batch_moments(F, X, axis=1):
    """Equations 1 and 2 on a rows view: the batch mean and the biased batch variance, kept to broadcast."""
    mean = channel_mean(F, X, axis)                                            # mu_B
    var = channel_mean(F, F.square(F.broadcast_sub(X, mean)), axis)            # sigma_B^2, divides by m
    return mean, var


def normalize(F, X, mean, var, gamma, beta, eps):
    """Equations 3 and 4: ``gamma * (X - mean) / sqrt(var + eps) + beta``; statistics shaped to broadcast.

    ``gamma`` / ``beta`` are (C,) vectors or None (scale 1 / shift 0).
    """
    X_hat = F.broadcast_div(F.broadcast_sub(X, mean), F.sqrt(var + eps))      # zero mean, unit variance
    if gamma is not None:
        X_hat = F.broadcast_mul(X_hat, F.reshape_like(gamma, mean))
    if beta is not None:
        X_hat = F.broadcast_add(X_hat, F.reshape_like(beta, mean))
    return X_hat


def moving_average(moving, batch, momentum):
    """MXNet's convention: ``momentum * moving + (1 - momentum) * batch``."""
    return momentum * moving + (1 - momentum) * batch


def update_moving_stats(moving_mean, moving_var, mean, var, momentum, var_correction=1.0):
    """The moving averages of the batch statistics, in place, outside autograd.

    ``var_correction`` is ``m / (m - 1)`` to store the unbiased variance, or 1.
    """
    with autograd.pause():
        mean = mean.reshape((-1,)).astype(moving_mean.dtype, copy=False)
        var = var.reshape((-1,)).astype(moving_var.dtype, copy=False) * var_correction
        moving_mean[:] = moving_average(moving_mean, mean, momentum)
        moving_var[:] = moving_average(moving_var, var, momentum)


def inference_affine(gamma, beta, mean, var, eps):
    """Batch norm with fixed statistics as ``y = scale * x + shift``: the (C,) vectors ``(scale, shift)``.

    ``scale = gamma / sqrt(var + eps)``, ``shift = beta - scale * mean``; ``gamma`` / ``beta`` None mean
    1 / 0. Works on NDArrays, symbols and numpy arrays (folding uses it in float64).
    """
    scale = 1 / (var + eps) ** 0.5
    if gamma is not None:
        scale = gamma * scale
    shift = -scale * mean
    if beta is not None:
        shift = beta + shift
    return scale, shift


def at_least_float32(X):
    """``X`` in float32 when it is float16: the sum of squares overflows in half precision."""
    return X.astype('float32') if X.dtype == np.float16 else X


def var_correction(m, unbiased_var):
    """``m / (m - 1)`` when the unbiased variance is stored (the paper's Algorithm 2, PyTorch), else 1."""
    return m / (m - 1) if unbiased_var else 1.0


def batch_norm(X, gamma, beta, moving_mean, moving_var, *, training, momentum=0.9, eps=1e-5, axis=1,
               unbiased_var=False, return_stats=False):
    """Normalize ``X`` per channel, then scale by ``gamma`` and shift by ``beta``.

    In training the batch statistics are used and ``moving_mean`` / ``moving_var`` are updated in place,
    outside the autograd graph. In inference the moving statistics are used and nothing changes.

    Parameters
    ----------
    X : NDArray
        (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), floating point.
    gamma, beta : NDArray of shape (C,) or None
        Scale and shift; None means 1 and 0.
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
    return_stats : bool
        Also return the (C,) mean and variance the output was normalized with: ``(Y, mean, var)``.
    """
    axis, C, m = check_batch_norm(X, gamma, beta, moving_mean, moving_var, training, momentum, eps, axis)
    dtype, X_in = X.dtype, X
    X = as_rows(nd, at_least_float32(X), axis)                   # (N, C, H, W) -> (N, C, H*W)
    if training:
        mean, var = batch_moments(nd, X, axis)                   # -> (1, C, 1) each
        update_moving_stats(moving_mean, moving_var, mean, var, momentum, var_correction(m, unbiased_var))
    else:
        shape = channel_shape(X.ndim, axis)
        mean = moving_mean.reshape(shape).astype(X.dtype, copy=False)
        var = moving_var.reshape(shape).astype(X.dtype, copy=False)
    gamma, beta = (None if v is None else v.astype(X.dtype, copy=False) for v in (gamma, beta))
    Y = normalize(nd, X, mean, var, gamma, beta, eps).reshape(X_in.shape).astype(dtype, copy=False)
    return (Y, mean.reshape((C,)), var.reshape((C,))) if return_stats else Y


def input_gradient(dY, X_hat, scale, sum_dY, sum_dY_x_hat, m):
    """The closed-form input gradient of batch norm in training, per channel::

        dX = scale / m * (m * dY - sum(dY) - x_hat * sum(dY * x_hat)),   scale = gamma / sigma

    and ``dgamma = sum(dY * x_hat)``, ``dbeta = sum(dY)``. The two sums run over the m values of a channel;
    synchronized batch norm passes sums over every device. Arguments broadcast against ``dY``.
    """
    return scale / m * (m * dY - sum_dY - X_hat * sum_dY_x_hat)


def batch_norm_backward(dY, X, gamma, mean, var, eps, axis=1):
    """Closed-form gradients of :func:`batch_norm` in training mode: (dX, dgamma, dbeta).

    ``mean`` and ``var`` are the (C,) batch statistics of the forward pass; ``gamma`` None means 1.
    """
    shape, axes = channel_shape(X.ndim, axis), stat_axes(X.ndim, axis)
    inv_sigma = 1 / nd.sqrt(var.reshape(shape) + eps)                        # (1, C, 1, 1)
    X_hat = (X - mean.reshape(shape)) * inv_sigma
    dbeta, dgamma = dY.sum(axis=axes), (dY * X_hat).sum(axis=axes)           # (N, C, H, W) -> (C,)
    scale = inv_sigma if gamma is None else gamma.reshape(shape) * inv_sigma
    m = X.size // X.shape[axis]
    dX = input_gradient(dY, X_hat, scale, dbeta.reshape(shape), dgamma.reshape(shape), m)
    return dX, dgamma, dbeta
