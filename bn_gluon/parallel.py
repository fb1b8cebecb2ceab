"""Data parallelism (数据并行) on MXNet: one batch split across devices, and across worker processes.

One step on K devices (contexts) of one process, and on W workers of a parameter-server kvstore::

    split the batch            X (B, ...) -> K slices of about B / K, one per device
    forward + backward         on every device, under one autograd.record()
    sum the gradients          over the K devices (by hand), then over the W workers (kvstore)
    SGD                        the same hand-written update on every copy: the copies stay equal

Batch norm (批归一化) is the one layer that looks across examples. Plain BN normalizes every slice by its
own statistics (a batch of B / K); :class:`bn_gluon.SyncBatchNorm` (同步批归一化) combines them so every
slice is normalized by those of all B. Running statistics: with plain BN each device and worker keeps
its own; :func:`reconcile_running_stats` averages them (before evaluation and checkpoints) so every copy
holds the same numbers. With SyncBatchNorm they are equal on all devices of a process already.
"""
import mxnet as mx
from mxnet import autograd, nd

from .device_turns import lockstep
from .optim import SGD, sgd_update, trainable

KVSTORES = ('local', 'device', 'dist_sync', 'dist_device_sync')


def split_batch(X, y, ctxs):
    """Split a batch along axis 0 into ``len(ctxs)`` slices (sizes differ by at most 1), one per device."""
    K = len(ctxs)
    if not isinstance(X, nd.NDArray) or not isinstance(y, nd.NDArray):
        raise TypeError(f"X and y must be NDArrays; got {type(X).__name__} and {type(y).__name__}.")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X holds {X.shape[0]} examples but y {y.shape[0]}.")
    if X.shape[0] < K:
        raise ValueError(f"a batch of {X.shape[0]} cannot give each of {K} devices an example; use a batch "
                         f"of at least {K} (drop_last=True avoids a short last batch).")
    bounds = [X.shape[0] * k // K for k in range(K + 1)]          # B = 10, K = 3 -> 0, 3, 6, 10
    Xs = [X[a:b].as_in_context(c) for a, b, c in zip(bounds, bounds[1:], ctxs)]
    ys = [y[a:b].as_in_context(c) for a, b, c in zip(bounds, bounds[1:], ctxs)]
    return Xs, ys


def forward_backward(net, loss_fn, X, y, ctxs, timeout=60.0):
    """Forward and backward of one batch split across ``ctxs``; returns (loss, y_hat, y) on ``ctxs[0]``.

    The devices' forward passes run in :func:`lockstep`, so the K calls of a SyncBatchNorm can exchange
    statistics; MXNet still runs the devices' operators side by side. ``loss`` is per example, as
    ``loss_fn`` returns it; the gradients are left on each device for :func:`reduce_gradients`.
    """
    Xs, ys = split_batch(X, y, ctxs)

    def device_step(X_k, y_k):
        y_hat = net(X_k)                                          # (B / K, classes)
        return loss_fn(y_hat, y_k), y_hat

    with autograd.record():
        outputs = lockstep(device_step, Xs, ys, timeout=timeout)
    losses, y_hats = zip(*outputs)
    autograd.backward(list(losses))
    ctx = ctxs[0]
    gather = lambda arrays: nd.concat(*[a.as_in_context(ctx) for a in arrays], dim=0)  # noqa: E731
    return gather(losses), gather(y_hats), gather(ys)


def allreduce(arrays):
    """Sum equal-shaped arrays held on different devices; every array is overwritten with the sum.

    Added up in list order on the first device and copied back, so every device holds the same bits.
    """
    total = arrays[0].copy()
    for a in arrays[1:]:
        total += a.as_in_context(total.context)
    for a in arrays:
        total.copyto(a)


def reduce_gradients(params, kv=None):
    """Sum every trainable parameter's gradient over its devices, then over the workers of ``kv``.

    Parameters
    ----------
    params : dict
        name -> gluon.Parameter (``bn_gluon.models.named_parameters(net)``).
    kv : mx.kvstore.KVStore or None
        Initialized with :func:`init_kvstore`; None sums over the devices of this process only.
    """
    for name, p in sorted(params.items()):
        if p.grad_req == 'null':
            continue
        grads = p.list_grad()
        if kv is None:
            if len(grads) > 1:
                allreduce(grads)
        else:
            kv.push(name, grads)                                  # sums the devices, then the workers
            kv.pull(name, out=grads)


class DataParallelSGD(SGD):
    """The hand-written SGD of :mod:`bn_gluon.optim` on every copy of every parameter.

    ``step(batch_size)`` first sums the gradients (devices, then workers), then applies the same
    ``sgd_update`` to each device's copy with its own velocity; equal gradients and equal starting points
    keep the copies equal. ``batch_size`` is this process's batch; the update divides by the batch of all
    workers together, so the learning rate keeps its meaning.

    Parameters
    ----------
    params : dict
        name -> gluon.Parameter, initialized on the devices to train on.
    lr, momentum, weight_decay : float
        As in :class:`bn_gluon.optim.SGD`.
    kv : mx.kvstore.KVStore or None
        A ``dist_sync`` (or local) kvstore set up with :func:`init_kvstore`.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, kv=None):
        self.params, self.kv = trainable(params), kv
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocities = {name: [nd.zeros_like(w) for w in p.list_data()] if momentum else None
                           for name, p in self.params.items()}
        self.velocity = {name: v[0] for name, v in self.velocities.items() if v}  # what save_states writes

    def step(self, batch_size):
        reduce_gradients(self.params, self.kv)
        total = batch_size * (self.kv.num_workers if self.kv is not None else 1)
        for name, p in self.params.items():
            velocities = self.velocities[name] or [None] * len(p.list_ctx())
            for w, g, v in zip(p.list_data(), p.list_grad(), velocities):
                sgd_update(w, g, self.lr, total, self.momentum, self.weight_decay, v)

    def load_states(self, path):
        super().load_states(path)                                 # into the first device's velocity
        for vs in self.velocities.values():
            if vs:
                for v in vs[1:]:
                    vs[0].copyto(v)


def reconcile_running_stats(params, kv=None, how='mean'):
    """Make every copy of every running statistic equal: the mean over devices (and workers), or device 0's.

    Averaging the running means gives the running mean of the whole data exactly (the moving average
    is linear and the slices are equally large). Averaging running variances misses the spread between
    the slices' means, so with plain BN it slightly underestimates the variance of the whole batch; with
    SyncBatchNorm there is nothing to reconcile.

    Parameters
    ----------
    params : dict
        name -> gluon.Parameter; those with ``grad_req='null'`` are the statistics.
    kv : mx.kvstore.KVStore or None
        Also average over the workers (every worker must call this at the same point).
    how : {'mean', 'first'}
        Average, or take device 0's (of worker 0, when ``kv`` is given).
    """
    if how not in ('mean', 'first'):
        raise ValueError(f"how must be 'mean' or 'first'; got {how!r}.")
    for name, p in sorted(params.items()):
        if p.grad_req != 'null':
            continue
        copies = p.list_data()
        if how == 'first':
            for c in copies[1:]:
                copies[0].copyto(c)
        else:
            allreduce(copies)
            for c in copies:
                c /= len(copies)
        if kv is not None:
            mine = copies[0] if how == 'mean' or kv.rank == 0 else nd.zeros_like(copies[0])
            kv.push(name, mine)                                    # the servers add the workers' pushes
            kv.pull(name, out=copies)
            if how == 'mean':
                for c in copies:
                    c /= kv.num_workers


def create_kvstore(kind):
    """An MXNet kvstore: 'local' / 'device' (one process) or 'dist_sync' (launched by bn_gluon.launch)."""
    if kind not in KVSTORES:
        raise ValueError(f"kvstore must be one of {', '.join(KVSTORES)}; got {kind!r}. ('dist_async' is "
                         f"left out: without an optimizer on the servers its pushes overwrite each other.)")
    return mx.kv.create(kind)


def init_kvstore(kv, params):
    """Register every parameter with ``kv`` and give all workers worker 0's values (and statistics)."""
    names = sorted(params)                                        # the same order on every worker
    for name in names:
        kv.init(name, params[name].data(params[name].list_ctx()[0]))  # the servers keep worker 0's value
    for name in names:
        kv.pull(name, out=params[name].list_data())


def shard(X, y, rank, num_workers):
    """Worker ``rank``'s share of the examples: every ``num_workers``-th one, all shares equally long.

    Equal lengths give every worker the same number of steps, which the synchronous kvstore requires.
    """
    if not 0 <= rank < num_workers:
        raise ValueError(f"rank must be in [0, {num_workers}); got {rank}.")
    n = X.shape[0] // num_workers * num_workers                   # drop the remainder
    index = nd.arange(rank, n, num_workers)                        # rank, rank + W, rank + 2W, ...
    return nd.take(X, index.as_in_context(X.context)), nd.take(y, index.as_in_context(y.context))
