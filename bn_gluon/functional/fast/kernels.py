"""The kernels of ``impl='fast'``: batch norm through a few large MXNet kernels and its closed-form gradient.

Same numbers as :func:`bn_gluon.functional.batch_norm` (Ioffe and Szegedy 2015, Algorithms 1 and 2):
``tests/test_batch_norm_fast.py`` checks outputs, gradients and running statistics against the reference
and finite differences, in float32 and float64, and with channel means 1e4 times their spread. The
formulas come from the reference module (the affine map, the moving average, the backward's sums); what
differs is how each pass runs (``docs/performance.md`` has the measurements):

1. Per-channel means are matrix-vector products (``FullyConnected`` with a row of ``1/S``), not MXNet's
   reductions.
2. The variance is shifted: ``var = E[(x - K)^2] - E[x - K]^2``, K being the first example's channel
   mean, so the mean and the variance come from one pass over ``x - K``. In float32 this keeps the digits
   of ``x - mean`` even where the mean is 1e4 times the standard deviation (``E[x^2] - E[x]^2`` loses
   them all); a mean computed first loses some to its own rounding.
3. A per-channel ``scale * x + shift`` takes one pass where rows hold at least ``CONV_MIN_S`` values (the
   LeNet's first batch norm): a 1x1 convolution with one group per channel, whose output channel c is
   ``w[c] * x[:, c] + b[c]``. On shorter rows, where the convolution's cost per group dominates, it is a
   broadcast multiply and a broadcast add over the rows.
4. Each pass's dozen small ``nd`` calls run as one compiled graph (``mx.nd.CachedOp``, built once per
   shape): a Python call into MXNet costs tens of microseconds.

The math is written once against ``F`` (``mxnet.nd`` or ``mxnet.sym``) on a view of ``X`` seen as
``(P, C, S)`` (P: the axes before the channel axis, S: after): ``(P, C, S)`` itself for the convolution,
``(P*C, S)``, one row per (sample, channel), for the broadcasts, or ``(P, C)`` when S == 1.
"""
import threading
from collections import OrderedDict, namedtuple

import numpy as np
from mxnet import nd, sym

from ..batch_norm import inference_affine, moving_average

CONV_MIN_S = 128  # rows this long or longer scale and shift as a convolution (see _affine)

# X.shape seen as (P, C, S); math dtype; device; the view the math works on
Layout = namedtuple('Layout', 'shape P C S dtype ctx view')
_LAYOUTS = {}  # (shape, axis, dtype, context) -> Layout: computing one costs more than the rest of a call


def layout(X, axis):
    """(P, C, S) of ``X`` around its channel ``axis``: (N, C, H, W), axis 1 -> (N, C, H*W).

    The math works on ``(P, C, S)`` where it scales and shifts by convolution, else on a view with one
    row per (sample, channel), ``(P*C, S)``, or ``(P, C)`` when S == 1: a reshape inside a compiled graph
    copies, one outside it is free.
    """
    key = (X.shape, axis, X.dtype, X.context)
    if key not in _LAYOUTS:
        shape, ctx, dtype = key[0], key[3], np.dtype(key[2]).name
        axis = axis % len(shape)
        P, C, S = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        view = (P, C, S) if S >= CONV_MIN_S else (P * C, S) if S > 1 else (P, C)
        _LAYOUTS[key] = Layout(shape, P, C, S, dtype, ctx, view)
    return _LAYOUTS[key]


def view(X, L):
    """``X`` (or an array of its shape) as the rows view of the layout ``L``."""
    return X.reshape(L.view)


# --- the math, for F = mxnet.nd or mxnet.sym ---------------------------------------------------------

def _mean_over_P(F, rows, L):
    """One value per (sample, channel) -> (C,): the mean over samples, a matrix-vector product."""
    return F.dot(F.full((L.P,), 1.0 / L.P, dtype=L.dtype), rows.reshape((L.P, L.C)))


def _channel_mean(F, Z, L):
    """Per-channel mean: each row's mean as a matrix-vector product, then the mean over samples."""
    if L.S == 1:
        return _mean_over_P(F, Z, L)
    ones = F.full((1, L.S), 1.0 / L.S, dtype=L.dtype)
    return _mean_over_P(F, F.FullyConnected(Z, ones, no_bias=True, num_hidden=1, flatten=False), L)


def _affine(F, Z, scale, shift, L):
    """``Z * scale + shift`` per channel (None: no scale, no shift), in one pass or two (module notes, 3)."""
    if L.S >= CONV_MIN_S:
        weight = (F.ones((L.C,), dtype=L.dtype) if scale is None else scale).reshape((L.C, 1, 1))
        return F.Convolution(Z, weight, shift, no_bias=shift is None, kernel=(1,), num_filter=L.C, num_group=L.C)
    if scale is not None:
        Z = F.broadcast_mul(Z, _per_row(F, scale, L))
    if shift is not None:
        Z = F.broadcast_add(Z, _per_row(F, shift, L))
    return Z


def _per_row(F, v, L):
    """A per-channel (C,) vector shaped to broadcast over the rows: (P*C, 1), or (1, C) when S == 1."""
    if L.S == 1:
        return v.reshape((1, L.C))
    return F.broadcast_to(v.reshape((1, L.C)), (L.P, L.C)).reshape((L.P * L.C, 1))


def _normalize(F, Xc, d, var, gamma, beta, *, L, eps):
    """``y = gamma * x_hat + beta`` with ``x_hat = (Xc - d) / sigma``; also the (3, C) stats backward needs.

    ``Xc`` is x minus a per-channel shift, ``d`` the mean of ``Xc`` (so Xc - d = x - mean).
    """
    a, b = inference_affine(gamma, beta, d, var, eps)                     # y = a * Xc + b
    return _affine(F, Xc, a, b, L), F.stack(d, F.rsqrt(var + eps), a)


def _train_forward(F, X, gamma, beta, moving_mean, moving_var, *, L, eps, momentum, var_correction,
                   stats_dtype):
    """Algorithm 1: normalize with the batch statistics; also the new running statistics."""
    rows_per_example = L.C if L.view == (L.P * L.C, L.S) else 1
    first = F.slice_axis(X, axis=0, begin=0, end=rows_per_example)
    K = _channel_mean(F, first, L._replace(P=1))                         # sample 0's channel means
    Xc = _affine(F, X, None, -K, L)                                       # x - K: close to zero mean
    d = _channel_mean(F, Xc, L)                                            # E[x - K] = mean - K
    var = _channel_mean(F, F.square(Xc), L) - F.square(d)          # E[(x-K)^2] - E[x-K]^2, biased
    Y, stats = _normalize(F, Xc, d, var, gamma, beta, L=L, eps=eps)
    new_mean = moving_average(F.cast(moving_mean, L.dtype), K + d, momentum)   # MXNet's convention
    new_var = moving_average(F.cast(moving_var, L.dtype), var_correction * var, momentum)
    return Y, Xc, stats, F.cast(new_mean, stats_dtype), F.cast(new_var, stats_dtype)


def _eval_forward(F, X, gamma, beta, moving_mean, moving_var, *, L, eps, for_backward):
    """Algorithm 2: normalize with the moving statistics.

    Without a backward to come it is one multiply-add per value, ``y = a * x + b``.
    """
    mean, var = F.cast(moving_mean, L.dtype), F.cast(moving_var, L.dtype)
    if for_backward:
        Xc = _affine(F, X, None, -mean, L)                                # x - mean
        Y, stats = _normalize(F, Xc, F.zeros_like(mean), var, gamma, beta, L=L, eps=eps)
        return Y, Xc, stats
    return _affine(F, X, *inference_affine(gamma, beta, mean, var, eps), L)


def _backward(F, dY, Xc, stats, *, L, batch_stats):
    """Gradients from the ``Xc`` and ``stats`` of a forward pass: the closed form of Algorithm 1.

    With batch statistics it is :func:`~bn_gluon.functional.batch_norm.input_gradient`,
    ``dX = gamma / sigma * (dY - mean(dY) - x_hat * mean(dY * x_hat))``, with x_hat expanded into two
    per-channel affine passes over ``dY`` and ``Xc``; with fixed statistics ``dX = gamma / sigma * dY``.
    """
    d, inv_sigma, A = F.split(stats, num_outputs=3, axis=0, squeeze_axis=True)   # A = gamma / sigma
    m = L.P * L.S
    mean_dY = _channel_mean(F, dY, L)                                      # dbeta / m
    mean_dY_xhat = (_channel_mean(F, dY * Xc, L) - d * mean_dY) * inv_sigma   # dgamma / m
    dgamma, dbeta = m * mean_dY_xhat, m * mean_dY
    if not batch_stats:
        return _affine(F, dY, A, None, L), dgamma, dbeta
    B = A * inv_sigma * mean_dY_xhat          # x_hat expanded: dX = A * dY - (B * Xc + A * mean(dY) - B * d)
    dX = _affine(F, dY, A, B * d - A * mean_dY, L) - _affine(F, Xc, B, None, L)
    return dX, dgamma, dbeta


# --- compiled once per shape ------------------------------------------------------------------------

_GRAPHS = OrderedDict()   # (function, inputs given, static arguments, thread) -> (CachedOp, input order)
_MAX_GRAPHS = 64          # keep the recent ones


def _run(fn, inputs, out, **static):
    """``fn(nd, **inputs, **static)`` as one call into MXNet, compiled into an ``mx.nd.CachedOp`` on first use.

    The graph keeps its intermediate arrays from call to call (``static_alloc``): fresh ones would cost
    page faults each time.

    ``inputs`` maps ``fn``'s array arguments to NDArrays (None: not given); ``static`` holds the rest
    (layout, eps, ...), so there is one graph per shape, dtype and setting. The outputs are written into
    ``out``. Graphs are kept per thread, as a hybridized net's custom operators may run on several.
    """
    given = tuple(k for k, v in inputs.items() if v is not None)
    key = (fn.__name__, given, tuple(sorted(static.items())), threading.get_ident())
    if key in _GRAPHS:
        _GRAPHS.move_to_end(key)
    else:
        outputs = fn(sym, **{k: sym.var(k) if k in given else None for k in inputs}, **static)
        graph = sym.Group(list(outputs)) if isinstance(outputs, tuple) else outputs
        flags = [('static_alloc', True), ('static_shape', True)]
        _GRAPHS[key] = nd.CachedOp(graph, flags=flags), graph.list_inputs()
        if len(_GRAPHS) > _MAX_GRAPHS:
            _GRAPHS.popitem(last=False)
    op, order = _GRAPHS[key]
    op(*[inputs[k] for k in order], out=out)


def forward(X, gamma, beta, moving_mean, moving_var, *, training, momentum, eps, axis, unbiased_var,
            for_backward=True, out=None):
    """Normalize ``X``; return ``(Y, saved)``, ``saved`` being what :func:`backward` needs (or None).

    In training the running statistics are updated in place (MXNet convention:
    ``running = momentum * running + (1 - momentum) * batch``). Arguments as in ``batch_norm``, already
    checked; ``X``, ``gamma`` and ``beta`` share one floating-point dtype. ``out``: where to write Y.
    """
    L = layout(X, axis)
    X = view(X, L)  # free here; a reshape inside a compiled graph may copy
    Y = nd.empty(L.view, L.ctx, L.dtype) if out is None else view(out, L)
    arrays = dict(X=X, gamma=gamma, beta=beta, moving_mean=moving_mean, moving_var=moving_var)
    saved = None
    if training or for_backward:
        Xc, stats = nd.empty(L.view, L.ctx, L.dtype), nd.empty((3, L.C), L.ctx, L.dtype)
        saved = (L, training, Xc, stats)
    if training:
        m = L.P * L.S
        _run(_train_forward, arrays, [Y, Xc, stats, moving_mean, moving_var], L=L, eps=eps,
             momentum=momentum, var_correction=m / (m - 1) if unbiased_var else 1.0,
             stats_dtype=np.dtype(moving_mean.dtype).name)
    elif for_backward:
        _run(_eval_forward, arrays, [Y, Xc, stats], L=L, eps=eps, for_backward=True)
    else:
        _run(_eval_forward, arrays, [Y], L=L, eps=eps, for_backward=False)
    return (Y.reshape(L.shape) if out is None else out), saved


def backward(dY, saved, out=None):
    """``(dX, dgamma, dbeta)`` for the output gradient ``dY`` of the :func:`forward` that returned ``saved``.

    ``out``: three arrays to write (dX, dgamma, dbeta) into instead of new ones.
    """
    L, batch_stats, Xc, stats = saved
    dY = view(dY, L).as_in_context(L.ctx)
    given = out
    out = [nd.empty(L.view, L.ctx, L.dtype)] if out is None else [view(out[0], L)] + list(out[1:3])
    out += [nd.empty((L.C,), L.ctx, L.dtype) for _ in range(3 - len(out))]
    _run(_backward, dict(dY=dY, Xc=Xc, stats=stats), out, L=L, batch_stats=batch_stats)
    return (out[0].reshape(L.shape) if given is None else given[0],) + tuple(out[1:])
