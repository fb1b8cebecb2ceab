"""Batch normalization through a few large kernels, with a hand-derived gradient.

The same function as the reference :func:`bn_gluon.functional.batch_norm` (Ioffe and Szegedy 2015,
Algorithms 1 and 2), reached by ``batch_norm(..., impl='fast')`` after its argument checks. On a CPU, MXNet
1.9's generic reductions are slow, so each step uses a kernel that does it in one pass (timings relative to
copying X once, (256, 20, 24, 24) on 2 shared cores):

1. Row sums are matrix-vector products, ``FullyConnected`` with a row of ones (~0.6 copies; the generic
   ``X.mean(axis=(0, 2, 3))`` takes ~15), then a tiny ``(P, C)`` dot sums over samples.
2. Sums of squares are L2 pooling, ``sqrt(sum(z^2))`` per row, so ``z^2`` is never written.
3. The variance takes one pass, shifted: ``var = E[(x - K)^2] - E[x - K]^2``, K being the first sample's
   channel mean. Unshifted, ``E[x^2] - E[x]^2`` loses every digit in float32 when the mean is 1e4 times
   the standard deviation; shifted, only as many as ``(K - mean)^2 / var`` is large.
4. The gradient is the closed form (two sums, one pass for dX) instead of autograd through broadcasts,
   and the whole layer is one autograd node.
5. A per-channel ``scale * z + shift`` is one 1x1 convolution with a group per row where MKL-DNN runs it,
   instead of a broadcast multiply and a broadcast add.
6. Each pass's dozen small ``nd`` calls run as one compiled graph (``mx.nd.CachedOp``, built once per
   shape): a Python call into MXNet costs tens of microseconds.
7. Big arrays are never reshaped inside a graph (that copies them). Writing into fresh memory costs
   several times more than rewriting memory already written (page faults), so what the forward keeps
   for backward comes from a pool of arrays, handed out again once nothing holds them.

The math is written once against ``F`` (``mxnet.nd`` or ``mxnet.sym``), as in a HybridBlock's
``hybrid_forward``, on a view of ``X`` seen as ``(P, C, S)`` (P: the axes before the channel axis,
S: after): ``(1, P*C, S)``, one row per (sample, channel), or ``(P, C)`` when S == 1.
"""
import sys
import threading
from collections import OrderedDict, namedtuple

import numpy as np
from mxnet import autograd, nd, runtime, sym

# X.shape seen as (P, C, S); math dtype; device; rows view; whether a per-channel scale runs as a convolution
Layout = namedtuple('Layout', 'shape P C S dtype ctx view conv')
_LAYOUTS = {}  # (shape, axis, dtype, context) -> Layout: computing one costs more than the rest of a call
_MKLDNN = runtime.Features().is_enabled('MKLDNN')
_CONV_MIN_S = 128  # rows this long or longer scale and shift faster as a convolution (see _affine)


def layout(X, axis):
    """(P, C, S) of ``X`` around its channel ``axis``: (N, C, H, W), axis 1 -> (N, C, H*W).

    The math works on a view with one row per (sample, channel), ``(1, P*C, S)``, which matrix products,
    1-D pooling and column broadcasts all accept as it is (a reshape inside a compiled graph copies), or
    on ``(P, C)`` when S == 1.
    """
    key = (X.shape, axis, X.dtype, X.context)
    if key not in _LAYOUTS:
        shape, ctx, dtype = key[0], key[3], np.dtype(key[2]).name
        axis = axis % len(shape)
        P, C, S = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))
        conv = S >= _CONV_MIN_S and dtype == 'float32' and _MKLDNN and ctx.device_type == 'cpu'
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        _LAYOUTS[key] = Layout(shape, P, C, S, dtype, ctx, (1, P * C, S) if S > 1 else (P, C), conv)
    return _LAYOUTS[key]


def view(X, L):
    """``X`` (or an array of its shape) as the rows view of the layout ``L``."""
    return X.reshape(L.view)


# --- the math, for F = mxnet.nd or mxnet.sym ---------------------------------------------------------

def _mean_over_P(F, rows, L):
    """One value per (sample, channel) -> (C,): the mean over samples, a matrix-vector product."""
    return F.dot(F.full((L.P,), 1.0 / L.P, dtype=L.dtype), rows.reshape((L.P, L.C)))


def _channel_mean(F, Z, L):
    """Per-channel mean of a rows view: row means as matrix-vector products, then the mean over samples."""
    if L.S == 1:
        return _mean_over_P(F, Z, L)
    ones = F.full((1, L.S), 1.0 / L.S, dtype=L.dtype)
    return _mean_over_P(F, F.FullyConnected(Z, ones, no_bias=True, num_hidden=1, flatten=False), L)


def _channel_mean_square(F, Z, L):
    """Per-channel mean of ``Z ** 2`` without writing ``Z ** 2``: L2 pooling gives ``sqrt(sum(z^2))`` per row."""
    if L.S == 1:
        return _mean_over_P(F, F.square(Z), L)
    row_norms = F.Pooling(Z, global_pool=True, pool_type='lp', p_value=2, kernel=(1,))   # (1, P*C, 1)
    return _mean_over_P(F, F.square(row_norms), L) / L.S


def _per_row(F, v, L):
    """A per-channel (C,) vector shaped to broadcast over a rows view: (1, P*C, 1), or (1, C) when S == 1."""
    if L.S == 1:
        return v.reshape((1, L.C))
    return F.broadcast_to(v.reshape((1, 1, L.C)), (1, L.P, L.C)).reshape((1, L.P * L.C, 1))


def _affine(F, Z, scale, shift, L):
    """``Z * scale + shift`` per channel of a rows view (None: no scale, no shift).

    On a CPU with MKL-DNN and rows of at least ``_CONV_MIN_S`` values (``L.conv``) a scale and shift take
    one pass, a 1x1 convolution with one group per row, where broadcast_mul then broadcast_add take two:
    measured 0.4-0.6x their time from 256 values per row up, 0.9x at 144, but 1.2-1.5x at 100 and below,
    where the per-group cost dominates. Otherwise a column broadcast over the rows, faster (~1.5x) than
    (1, C, 1, 1) over (N, C, H, W).
    """
    if scale is not None and L.conv:
        R = L.P * L.C
        w, kw = _per_row(F, scale, L).reshape((R, 1, 1)), dict(kernel=(1,), num_filter=R, num_group=R)
        if shift is None:
            return F.Convolution(Z, w, no_bias=True, **kw)
        return F.Convolution(Z, w, _per_row(F, shift, L).reshape((R,)), **kw)
    if scale is not None:
        Z = F.broadcast_mul(Z, _per_row(F, scale, L))
    if shift is not None:
        Z = F.broadcast_add(Z, _per_row(F, shift, L))
    return Z


def _normalize(F, Xc, d, var, gamma, beta, *, L, eps):
    """``y = gamma * x_hat + beta`` with ``x_hat = (Xc - d) / sigma``; also the (3, C) stats backward needs.

    ``Xc`` is x minus a per-channel shift, ``d`` the mean of ``Xc`` (so Xc - d = x - mean).
    """
    inv_sigma = F.rsqrt(var + eps)
    a = inv_sigma if gamma is None else gamma * inv_sigma                 # y = a * Xc + b
    b = -(d * a) if beta is None else beta - d * a
    return _affine(F, Xc, a, b, L), F.stack(d, inv_sigma, a)


def _train_forward(F, X, gamma, beta, moving_mean, moving_var, *, L, eps, momentum, var_correction,
                   stats_dtype):
    """Algorithm 1: normalize with the batch statistics; also the new running statistics."""
    first = F.slice_axis(X, axis=1, begin=0, end=L.C) if L.S > 1 else F.slice_axis(X, axis=0, begin=0, end=1)
    K = _channel_mean(F, first, L._replace(P=1))                         # sample 0's channel means
    Xc = _affine(F, X, None, -K, L)                                       # x - K: close to zero mean
    d = _channel_mean(F, Xc, L)                                            # E[x - K] = mean - K
    var = _channel_mean_square(F, Xc, L) - F.square(d)             # E[(x-K)^2] - E[x-K]^2, biased
    Y, stats = _normalize(F, Xc, d, var, gamma, beta, L=L, eps=eps)
    # MXNet convention: running = momentum * running + (1 - momentum) * batch
    new_mean = momentum * F.cast(moving_mean, L.dtype) + (1 - momentum) * (K + d)
    new_var = momentum * F.cast(moving_var, L.dtype) + (1 - momentum) * var_correction * var
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
    a = F.rsqrt(var + eps) if gamma is None else gamma * F.rsqrt(var + eps)
    b = -(mean * a) if beta is None else beta - mean * a
    return _affine(F, X, a, b, L)


def _backward(F, dY, Xc, stats, *, L, batch_stats):
    """Gradients from the ``Xc`` and ``stats`` of a forward pass: the closed form of Algorithm 1.

    With batch statistics ``dX = gamma / sigma * (dY - mean(dY) - x_hat * mean(dY * x_hat))``; with given
    statistics ``dX = gamma / sigma * dY``, and the mean and variance get gradients of their own (they
    matter when those were computed from X under autograd, as synchronized batch norm does).
    """
    d, inv_sigma, A = F.split(stats, num_outputs=3, axis=0, squeeze_axis=True)   # A = gamma / sigma
    m = L.P * L.S
    mean_dY = _channel_mean(F, dY, L)                                      # dbeta / m
    mean_dY_xhat = (_channel_mean(F, dY * Xc, L) - d * mean_dY) * inv_sigma   # dgamma / m
    dgamma, dbeta = m * mean_dY_xhat, m * mean_dY
    if batch_stats:
        B = A * inv_sigma * mean_dY_xhat      # x_hat expanded: dX = A * dY - (B * Xc + A * mean(dY) - B * d)
        dX = _affine(F, dY, A, B * d - A * mean_dY, L) - _affine(F, Xc, B, None, L)
        return dX, dgamma, dbeta
    dmean = -A * dbeta                                                     # y = A * (x - mean) + beta,
    dvar = -0.5 * A * inv_sigma * dgamma                                   # A = gamma / sqrt(var + eps)
    return _affine(F, dY, A, None, L), dgamma, dbeta, dmean, dvar


# --- kept arrays, reused -------------------------------------------------------------------------------

class _Pool:
    """Arrays by (thread, shape, context, dtype), each handed out again once its holder is done with it.

    A hybridized graph makes a new operator, and so a new forward, for every call: without the pool each
    call would write its ``Xc`` into fresh memory, at about one page fault per 4 KiB. :meth:`take` gives a
    ticket for an array; the array is free again after :meth:`give_back` (backward is done with it: MXNet
    frees operators and Functions only through Python's cycle collector, much later) or once nothing
    but the pool refers to it. :meth:`intact` tells whether the array still holds what its ticket's
    holder wrote (a second backward through one graph, ``retain_graph=True``, reads it again). The engine
    orders any new write after the pending reads of the array's last use.

    Arrays are kept per thread: one is handed out again only to the thread that took it before (a
    hybridized net's custom operators run on MXNet's threads, imperative calls on the caller's). Handed
    across, an array written and read by operators the main thread had queued, then written by a custom
    operator, deadlocked MXNet 1.9's engine (a hybridized layer's step, then :func:`forward` and
    :func:`backward` called directly, without waiting in between).
    """
    MAX_KEYS = 64  # (thread, shape, ...) kept; older ones are dropped (their arrays live on while still held)

    def __init__(self):
        self._entries, self._lock = OrderedDict(), threading.Lock()   # key -> [[array, handouts, free]]

    def take(self, shape, ctx, dtype):
        """``(array, ticket)``: an array of that shape nobody else is using."""
        key = (threading.get_ident(), tuple(shape), ctx, np.dtype(dtype).name)
        with self._lock:
            entries = self._entries.setdefault(key, [])
            self._entries.move_to_end(key)
            # Free: given back, or referred to only by its entry (the entry and getrefcount's argument).
            entry = next((e for e in entries if e[2] or sys.getrefcount(e[0]) <= 2), None)
            if entry is None:
                entry = [nd.empty(shape, ctx, dtype), 0, False]
                entries.append(entry)
            entry[1] += 1
            entry[2] = False
            while len(self._entries) > self.MAX_KEYS:
                self._entries.popitem(last=False)
            return entry[0], (entry, entry[1])

    def give_back(self, ticket):
        entry, handout = ticket
        with self._lock:
            if entry[1] == handout:
                entry[2] = True

    def intact(self, ticket):
        entry, handout = ticket
        return entry[1] == handout


_POOL = _Pool()


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
        (Xc, t1), (stats, t2) = (_POOL.take(shape, L.ctx, L.dtype) for shape in (L.view, (3, L.C)))
        saved = (L, training, Xc, stats, (t1, t2))
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

    After an inference-mode forward also the gradients of the mean and variance it used. ``out``: three
    arrays to write (dX, dgamma, dbeta) into instead of new ones.

    Only arrays made by :func:`forward` are read, never its inputs: an ``autograd.Function`` whose
    backward reads an input that is then updated in place (a parameter, by the optimizer) hangs MXNet
    1.9's engine (apache/mxnet#15844).
    """
    L, batch_stats, Xc, stats, tickets = saved
    if not all(_POOL.intact(t) for t in tickets):
        raise RuntimeError('batch_norm(impl="fast"): what this forward kept for backward was given to a later '
                           'forward after its backward; a second backward (retain_graph=True) must come '
                           'before the next forward of the same shape.')
    dY = view(dY, L).as_in_context(L.ctx)  # autograd may hand a Function its dY on the default device
    given = out
    out = [nd.empty(L.view, L.ctx, L.dtype)] if out is None else [view(out[0], L)] + list(out[1:3])
    out += [nd.empty((L.C,), L.ctx, L.dtype) for _ in range((3 if batch_stats else 5) - len(out))]
    _run(_backward, dict(dY=dY, Xc=Xc, stats=stats), out, L=L, batch_stats=batch_stats)
    for t in tickets:  # the engine runs later writes to these arrays after the reads just queued
        _POOL.give_back(t)
    return (out[0].reshape(L.shape) if given is None else given[0],) + tuple(out[1:])


class _Function(autograd.Function):
    """An ``autograd.Function`` whose gradients reach every input, whatever each input's ``grad_req``.

    MXNet 1.9's ``Function`` hands ``backward``'s results to a callback (``backward_entry`` in
    ``mxnet/autograd.py``) that writes them in input order but returns at the first input whose
    gradient is not requested (req 0, e.g. X straight from the data, a frozen gamma, the running
    statistics): every later input's gradient buffer is left unwritten, holding garbage. It also
    compares the integer req with the string ``'add'``, so ``grad_req='add'`` never accumulates.
    Here ``backward`` writes each gradient itself, as its req says, into the buffers that callback
    holds (read from its frame), and returns those buffers, which the callback's own copies then skip
    (an array assigned to itself is not copied). Subclasses write ``_backward``.
    """
    _WRITE, _ADD = (1, 2), 3  # MXNet's OpReqType: 0 null, 1 write, 2 write in place, 3 add

    def _backward(self, *output_grads):
        raise NotImplementedError

    def backward(self, *output_grads):
        grads = self._backward(*output_grads)
        caller = sys._getframe(1).f_locals
        buffers, reqs = caller.get('input_grads'), caller.get('reqs')
        if buffers is None or reqs is None or len(buffers) != len(grads):  # not the callback described above
            return grads
        for buffer, grad, req in zip(buffers, grads, reqs):
            if req in self._WRITE:
                buffer[:] = grad
            elif req == self._ADD:
                buffer += grad
        return tuple(buffers)


class _BatchNormFunction(_Function):
    """:func:`forward` and :func:`backward` as one autograd node.

    Inputs: X, then gamma and beta where given, then in inference the statistics used (differentiable
    there, as in the reference); in training the moving statistics only move, outside the graph.
    """

    def __init__(self, moving_mean, moving_var, has_gamma, has_beta, **kwargs):
        super().__init__()
        self.moving_mean, self.moving_var, self.kwargs = moving_mean, moving_var, kwargs
        self.has = (has_gamma, has_beta)

    def forward(self, X, *params):
        it = iter(params)
        gamma, beta = (next(it) if has else None for has in self.has)
        Y, self.saved = forward(X, gamma, beta, self.moving_mean, self.moving_var, **self.kwargs)
        return Y

    def _backward(self, dY):
        dX, dgamma, dbeta, *dstats = backward(dY, self.saved)
        return (dX,) + tuple(g for g, has in zip((dgamma, dbeta), self.has) if has) + tuple(dstats)


def batch_norm_fast(X, gamma, beta, moving_mean, moving_var, *, training, momentum=0.9, eps=1e-5, axis=1,
                    unbiased_var=False):
    """``batch_norm(..., impl='fast')`` after its checks: same arguments, same results, faster.

    Under ``autograd.record()`` the layer is one autograd node whose backward is the closed form.
    """
    dtype = X.dtype
    if dtype == np.float16:  # half precision overflows in the sum of squares: work in float32
        X = X.astype('float32')
    gamma, beta = (None if v is None else v.astype(X.dtype, copy=False) for v in (gamma, beta))
    kwargs = dict(training=training, momentum=momentum, eps=eps, axis=axis, unbiased_var=unbiased_var)
    if autograd.is_recording():
        fn = _BatchNormFunction(moving_mean, moving_var, gamma is not None, beta is not None, **kwargs)
        stats = () if training else (moving_mean, moving_var)
        Y = fn(X, *[v for v in (gamma, beta) if v is not None], *stats)
    else:
        Y = forward(X, gamma, beta, moving_mean, moving_var, for_backward=False, **kwargs)[0]
    return Y.astype(dtype, copy=False)
