"""Synchronized batch normalization: one batch split across devices, normalized with the statistics of
the whole batch, as pure functions of NDArrays.

Ioffe and Szegedy, "Batch Normalization", ICML 2015, computes the statistics over the mini-batch. Under
data parallelism each of K devices sees only its slice of B examples; plain BN normalizes every slice
with its own statistics (a batch of B), synchronized BN with those of all K*B examples. Only small
per-channel vectors cross devices:

    forward   (count m_k, sum_k, centred sum of squares q_k) per device  ->  global mean and variance
    backward  (sum dY_k, sum dY_k * x_hat_k) per device                   ->  global sums for dX

so K devices with B examples each compute exactly what one device computes on the K*B examples.

Momentum convention (MXNet's): ``moving = momentum * moving + (1 - momentum) * batch``, momentum 0.9
(PyTorch's 0.1). Every device gets the same global statistics, so every device's moving statistics stay
equal.
"""
from mxnet import nd

from ._checks import check_array, check_axis
from .batch_norm import (as_rows, batch_moments, batch_norm, center, channel_shape, from_rows, input_gradient,
                         normalize, stat_axes, update_moving_stats, var_correction)


def local_moments(X, axis=1):
    """Per-channel ``(m, sum, q)`` of one device's slice: count, sum, and sum of squares about its mean.

    ``q`` is centred on the slice's own mean rather than being the raw sum of squares: the textbook
    ``E[x^2] - E[x]^2`` loses every digit in float32 when a channel's mean is large next to its spread.

    Parameters
    ----------
    X : NDArray
        This device's slice, (N_k, C, ...).
    axis : int
        The channel axis.
    """
    m = X.size // X.shape[axis]
    mean, var, _ = batch_moments(nd, as_rows(nd, X, axis))      # (N_k, C, H, W) -> (1, C) each
    return m, mean.reshape((-1,)) * m, var.reshape((-1,)) * m    # (C,) each


def combine_moments(moments):
    """Global ``(m, mean, var)`` of the union of the slices whose :func:`local_moments` are given.

    The parallel-variance formula (Chan, Golub and LeVeque, 1979): the spread of the whole batch is the
    spread inside each slice plus the spread of the slice means around the global mean::

        m = sum m_k,   mean = sum s_k / m,   var = sum (q_k + m_k * (s_k / m_k - mean)^2) / m

    All arrays must be on one context; ``var`` is biased (divides by m), as in the forward pass of BN.
    """
    m = sum(m_k for m_k, _, _ in moments)
    mean = sum(s_k for _, s_k, _ in moments) / m
    M2 = sum(q_k + m_k * (s_k / m_k - mean) ** 2 for m_k, s_k, q_k in moments)
    return m, mean, M2 / m


def sync_batch_norm(Xs, gammas, betas, moving_means, moving_vars, *, training, momentum=0.9, eps=1e-5, axis=1,
                    unbiased_var=False):
    """Batch norm of a batch held as slices on several devices, with the statistics of the whole batch.

    Each device combines the moments of all slices itself (copies of a few (C,) vectors), so the result,
    its gradient under autograd and the moving statistics are those of :func:`batch_norm` on the
    concatenated batch. In inference it is plain :func:`batch_norm` on each slice.

    Parameters
    ----------
    Xs : list of NDArray
        One slice per device, (N_k, C, ...); the N_k may differ.
    gammas, betas, moving_means, moving_vars : list of NDArray (C,) or None
        Each device's copy of the parameters and statistics (``None`` entries: scale 1 / shift 0).
    training, momentum, eps, axis, unbiased_var
        As in :func:`batch_norm`.

    Returns
    -------
    list of NDArray
        The normalized slices, each on its own device.
    """
    Xs = _check_slices(Xs, axis)
    if not len(Xs) == len(gammas) == len(betas) == len(moving_means) == len(moving_vars):
        raise ValueError(f"one gamma, beta, moving_mean and moving_var per slice: got {len(Xs)} slices and "
                         f"{len(gammas)}, {len(betas)}, {len(moving_means)}, {len(moving_vars)} of those.")
    if not training:
        return [batch_norm(X, g, b, mm, mv, training=False, eps=eps, axis=axis)
                for X, g, b, mm, mv in zip(Xs, gammas, betas, moving_means, moving_vars)]
    moments = [local_moments(X, axis) for X in Xs]
    Ys = []
    for X, g, b, mm, mv in zip(Xs, gammas, betas, moving_means, moving_vars):
        ctx = X.context
        m, mean, var = combine_moments([(m_k, s_k.as_in_context(ctx), q_k.as_in_context(ctx))
                                        for m_k, s_k, q_k in moments])
        update_moving_stats(mm, mv, mean, var, momentum, var_correction(m, unbiased_var))
        Ys.append(normalize_slice(X, mean, var, g, b, eps, axis))
    return Ys


def normalize_slice(X, mean, var, gamma, beta, eps, axis=1):
    """Batch norm's :func:`normalize` of one device's slice with the (C,) statistics of the whole batch.

    Under autograd the gradient reaches every device: ``mean`` and ``var`` depend on all slices through
    the copies that brought their moments here, and MXNet differentiates through those copies.
    """
    rows = as_rows(nd, X, axis)                                  # (N_k, C, H, W) -> (N_k*C, H*W)
    return from_rows(nd, normalize(nd, center(nd, rows, mean), var, gamma, beta, eps, rows), X, axis)


def sync_batch_norm_backward(dYs, Xs, gammas, mean, var, eps, axis=1):
    """Closed-form gradients of :func:`sync_batch_norm` in training: lists ``(dXs, dgammas, dbetas)``.

    With the global m, mean and sigma = sqrt(var + eps), x_hat_k = (X_k - mean) / sigma::

        S1 = sum_k sum(dY_k),   S2 = sum_k sum(dY_k * x_hat_k)         # the two sums that cross devices
        dX_k = gamma / (m * sigma) * (m * dY_k - S1 - x_hat_k * S2)

    ``dgammas[k]`` and ``dbetas[k]`` are the device's own share, ``sum(dY_k * x_hat_k)`` and
    ``sum(dY_k)``: adding them up across devices, as data parallelism does for every gradient, gives
    the gradient of the whole batch.

    Parameters
    ----------
    dYs, Xs : list of NDArray
        Output gradients and inputs, one slice per device.
    gammas : list of NDArray (C,) or None
    mean, var : NDArray (C,)
        The global statistics of the forward pass (any context).
    eps, axis
        As in the forward pass.
    """
    m = sum(X.size // X.shape[axis] for X in Xs)                      # values per channel, all devices
    axes, shape = stat_axes(Xs[0].ndim, axis), channel_shape(Xs[0].ndim, axis)
    X_hats, parts = [], []
    for dY, X in zip(dYs, Xs):                                         # on each device, its slice only
        inv_sigma = 1.0 / nd.sqrt(var.as_in_context(X.context).reshape(shape) + eps)
        X_hat = (X - mean.as_in_context(X.context).reshape(shape)) * inv_sigma
        X_hats.append((X_hat, inv_sigma))
        parts.append((dY.sum(axis=axes), (dY * X_hat).sum(axis=axes)))  # (N_k, C, H, W) -> (C,)
    dXs = []
    for dY, X, gamma, (X_hat, inv_sigma) in zip(dYs, Xs, gammas, X_hats):  # the exchange, then dX
        S1 = sum(s1.as_in_context(X.context) for s1, _ in parts)
        S2 = sum(s2.as_in_context(X.context) for _, s2 in parts)
        scale = inv_sigma if gamma is None else gamma.reshape(shape) * inv_sigma
        dXs.append(input_gradient(dY, X_hat, scale, S1.reshape(shape), S2.reshape(shape), m))
    return dXs, [s2 for _, s2 in parts], [s1 for s1, _ in parts]


def _check_slices(Xs, axis):
    if isinstance(Xs, nd.NDArray) or not isinstance(Xs, (list, tuple)) or not Xs:
        raise TypeError(f"Xs must be a non-empty list of NDArrays, one slice per device; got "
                        f"{type(Xs).__name__}. Split a batch with bn_gluon.parallel.split_batch.")
    for k, X in enumerate(Xs):
        check_array(X, f'Xs[{k}]')
    if check_axis(axis, Xs[0].ndim) == 0:
        raise ValueError("axis 0 is the batch axis that the slices split; the channel axis must be another.")
    tails = {X.shape[1:] for X in Xs}
    if len(tails) > 1:
        raise ValueError(f"the slices must differ only in their first (batch) axis; got shapes "
                         f"{[X.shape for X in Xs]}.")
    m = sum(X.size // X.shape[axis] for X in Xs)
    if m < 2:
        raise ValueError(f"the slices hold {m} value per channel in all, so the batch variance is undefined.")
    return list(Xs)
