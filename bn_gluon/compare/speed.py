"""Speed of ``bn_gluon.BatchNorm`` relative to ``gluon.nn.BatchNorm``, measured side by side in one run.

Two measurements, each imperative and hybridized:

1. the layer alone, forward + backward under ``autograd.record()``, on the LeNet's two batch-norm
   shapes (N, 20, 24, 24) and (N, 50, 10, 10);
2. a whole LeNet training step (forward, loss, backward, hand-written SGD) in examples per second,
   with norm 'gluon', 'scratch' and 'none'.

``benchmarks/bench_bn.py`` times more variants with the same functions (:func:`training_step`,
:func:`interleaved`). The machine may be shared, so absolute times wander. Every round runs all variants
of a case back to back (the order reversed every other round), a ratio is taken within each round, and
the report gives the median over rounds: a slow-down from a neighbour hits both sides of a ratio alike.
"""
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from .. import BatchNorm
from ..engine import train_step
from ..models import lenet, named_parameters
from ..optim import SGD

LAYER_SHAPES = {'conv1': (20, 24, 24), 'conv2': (50, 10, 10)}   # per example: (C, H, W) after each conv
MODES = ('imperative', 'hybridized')
LAYERS = {'gluon': gluon.nn.BatchNorm, 'scratch': BatchNorm}


def layer_step(make_layer, shape, hybridize, ctx):
    """A closure running forward + backward of one freshly made layer on a fixed random input.

    ``hybridize``: False, True, or a dict of ``hybridize()`` flags (e.g. ``static_alloc``).
    """
    layer = make_layer(in_channels=shape[1])
    layer.initialize(ctx=ctx)
    if hybridize:
        layer.hybridize(**(hybridize if isinstance(hybridize, dict) else {}))
    X = nd.random.normal(2.0, 3.0, shape=shape, ctx=ctx)
    X.attach_grad()
    dY = nd.random.normal(shape=shape, ctx=ctx)

    def step():
        with autograd.record():
            Y = layer(X)
        Y.backward(dY)
    return step


def training_step(net, batch_size, ctx=None, lr=0.01, momentum=0.0):
    """A closure running one training step of ``net`` (:func:`bn_gluon.engine.train_step`) on a fixed batch.

    The step of ``python train.py``: forward, loss, backward and the hand-written SGD update. The
    benchmarks (``benchmarks/bench_bn.py``) time the same closure.
    """
    ctx = ctx or mx.cpu()
    X = nd.random.uniform(shape=(batch_size, 1, 28, 28), ctx=ctx)
    y = nd.array(np.arange(batch_size) % 10, ctx=ctx)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    optimizer = SGD(named_parameters(net), lr, momentum)

    def step():
        train_step(net, loss_fn, optimizer, X, y)
    return step


def net_step(norm, batch_size, hybridize, ctx, lr=0.01):
    """:func:`training_step` of a fresh LeNet with normalization ``norm``, hybridized or not."""
    net = lenet(norm, ctx=ctx)
    if hybridize:
        net.hybridize()
    return training_step(net, batch_size, ctx, lr)


def interleaved(variants, rounds, repeats, warmup=1):
    """name -> list of seconds per call, one entry per round; all variants run in every round.

    ``repeats``: calls per round, one number for all variants or a dict name -> number (a slow variant
    needs fewer calls to be timed as well as a fast one).
    """
    counts = repeats if isinstance(repeats, dict) else dict.fromkeys(variants, repeats)
    for step in variants.values():                                 # warm up: graphs built, memory taken
        for _ in range(warmup):
            step()
    nd.waitall()
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            tic = time.perf_counter()
            for _ in range(counts[name]):
                variants[name]()
            nd.waitall()                                           # the only read: the work is done
            times[name].append((time.perf_counter() - tic) / counts[name])
    return times


def summarize(case, mode, times, reference='gluon', examples=None):
    """Median time of each variant and its median per-round speed relative to ``reference`` (> 1: faster)."""
    ref = np.array(times[reference])
    row = {'case': case, 'mode': mode,
           'ms': {name: 1e3 * float(np.median(t)) for name, t in times.items()},
           'speed': {name: float(np.median(ref / np.array(t))) for name, t in times.items()}}
    if examples:
        row['examples_per_sec'] = {name: examples / float(np.median(t)) for name, t in times.items()}
    return row


def measure_speed(batch_size=128, rounds=5, layer_repeats=20, net_repeats=5, ctx=None, log=None):
    """Both measurements; a list of rows from :func:`summarize`, layers first, then the network."""
    ctx = ctx or mx.cpu()
    mx.random.seed(0)
    rows = []
    for mode in MODES:
        hybridize = mode == 'hybridized'
        for name, shape in LAYER_SHAPES.items():
            full = (batch_size,) + shape
            variants = {k: layer_step(make, full, hybridize, ctx) for k, make in LAYERS.items()}
            rows.append(summarize(f'{name} layer {full}', mode, interleaved(variants, rounds, layer_repeats)))
            _log(log, rows[-1])
        variants = {norm: net_step(norm, batch_size, hybridize, ctx) for norm in ('gluon', 'scratch', 'none')}
        rows.append(summarize(f'LeNet step, batch {batch_size}', mode,
                              interleaved(variants, rounds, net_repeats), examples=batch_size))
        _log(log, rows[-1])
    return rows


def _log(log, row):
    if log is not None:
        log(f"  {row['case']:32s} {row['mode']:10s} scratch {row['ms']['scratch']:7.2f} ms, gluon "
            f"{row['ms']['gluon']:7.2f} ms: scratch at {row['speed']['scratch']:.2f}x gluon's speed")
