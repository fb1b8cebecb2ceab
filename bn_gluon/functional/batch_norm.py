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
from collections import namedtuple

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


# X seen as one row per (example, channel), with a row of ones and an (N, C) grid to shape things by
Rows = namedtuple('Rows', 'data ones grid')


def as_rows(F, X, axis=1):
    """``X`` as rows, (N, C, H, W) -> (N*C, H*W): one per (example, channel), a channel's values in N rows.

    Also a (1, H*W) row of ones and an (N, C) grid, which the helpers below shape their results by. A
    channel axis other than 1 is first swapped into place. :func:`from_rows` turns results back.
    """
    if axis != 1:
        X = F.swapaxes(X, dim1=1, dim2=axis)
    data = F.reshape(X, shape=(-3, -1))                                     # (N*C, S)
    ones = F.ones_like(F.slice_axis(data, axis=0, begin=0, end=1))          # (1, S)
    grid = F.reshape_like(F.slice_axis(data, axis=1, begin=0, end=1), X,    # (N*C, 1) -> (N, C)
                          lhs_begin=0, lhs_end=2, rhs_begin=0, rhs_end=2)
    return Rows(data, ones, grid)


def from_rows(F, Y, X, axis=1):
    """Rows ``Y`` (N*C, S) back to the shape of ``X`` (the input :func:`as_rows` was given)."""
    if axis == 1:
        return F.reshape_like(Y, X)
    return F.swapaxes(F.reshape_like(Y, F.swapaxes(X, dim1=1, dim2=axis)), dim1=1, dim2=axis)


def channel_mean(F, Z, rows):
    """Per-channel mean of ``Z``, laid out as ``rows`` (N*C, S): a (1, C) vector.

    The row means are one matrix-vector product with a row of 1/S; the N rows of each channel are then
    averaged in the small (N, C) grid. MXNet's generic reductions (``Z.mean(axis=...)``) compute the
    same numbers, but on the CPU they and their gradients take tens of times longer than a matrix
    product (docs/performance.md).
    """
    row_means = F.dot(Z, F.broadcast_div(rows.ones, F.sum(rows.ones)), transpose_b=True)   # (N*C, 1)
    return F.mean(F.reshape_like(row_means, rows.grid), axis=0, keepdims=True)            # (N, C) -> (1, C)


def per_channel(F, v, rows):
    """A per-channel vector (any shape holding C values) laid along every row: (C,) -> (N*C, S).

    A matrix product of a column by the row of ones, so the gradient back to ``v`` is a matrix
    product too, not a slow reduction.
    """
    column = F.reshape(F.broadcast_like(F.reshape(v, shape=(1, -1)), rows.grid), shape=(-1, 1))  # (N*C, 1)
    return F.dot(column, rows.ones)


def center(F, rows, mean):
    """``x - mean`` on ``rows``, ``mean`` holding one value per channel."""
    return rows.data - per_channel(F, mean, rows)


def batch_moments(F, rows):
    """Equations 1 and 2: the batch mean and the biased batch variance of each channel, (1, C) each.

    Also ``x - mean``, on which the variance is computed and which :func:`normalize` scales.
    """
    mean = channel_mean(F, rows.data, rows)                                   # mu_B
    centered = center(F, rows, mean)                                          # x - mu_B
    var = channel_mean(F, F.square(centered), rows)                           # sigma_B^2, divides by m
    return mean, var, centered


def normalize(F, centered, var, gamma, beta, eps, rows):
    """Equations 3 and 4, ``gamma * (x - mean) / sqrt(var + eps) + beta``, from ``centered = x - mean``.

    Dividing by sigma and multiplying by gamma are one scale per channel, ``gamma / sqrt(var + eps)``;
    ``var``, ``gamma`` and ``beta`` hold one value per channel, ``gamma`` / ``beta`` None mean 1 / 0.
    """
    scale = 1 / F.sqrt(var + eps) if gamma is None else F.broadcast_div(F.reshape_like(gamma, var),
                                                                          F.sqrt(var + eps))
    Y = centered * per_channel(F, scale, rows)                                # gamma * x_hat
    return Y if beta is None else Y + per_channel(F, beta, rows)


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
    dtype, X = X.dtype, at_least_float32(X)
    rows = as_rows(nd, X, axis)                                  # (N, C, H, W) -> (N*C, H*W)
    if training:
        mean, var, centered = batch_moments(nd, rows)
        update_moving_stats(moving_mean, moving_var, mean, var, momentum, var_correction(m, unbiased_var))
    else:
        mean, var = moving_mean.astype(X.dtype, copy=False), moving_var.astype(X.dtype, copy=False)
        centered = center(nd, rows, mean)
    gamma, beta = (None if v is None else v.astype(X.dtype, copy=False) for v in (gamma, beta))
    Y = from_rows(nd, normalize(nd, centered, var, gamma, beta, eps, rows), X, axis).astype(dtype, copy=False)
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
