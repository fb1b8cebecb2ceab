"""Speed of the scratch batch norm against MXNet's fused operator, side by side in one run.

1. LeNet training step (``bn_gluon.models.lenet``: forward, loss, backward, SGD update) in examples/s
   with ``norm='gluon'`` and ``norm='scratch'``, imperative and hybridized, the scratch layer with
   ``impl='fast'`` and with ``impl='reference'`` (the d2l-style layer before the fast path: the "before"
   rows), at each batch size. Beside it the achieved GFLOP/s (a training example costs about 8.1 MFLOP)
   and what ``nd.dot`` reaches on 2048x2048 float32 in the same run.
2. The layer alone, forward + backward under ``autograd.record()``, on the LeNet's shapes (N, 20, 24, 24),
   (N, 50, 10, 10) and a dense (N, 128): ``bn_gluon.BatchNorm`` against ``gluon.nn.BatchNorm``; beside them
   the fast path's kernels alone (its forward and backward called directly), to tell what the kernels cost
   from what the custom operator adds.
3. Threading settings (``OMP_NUM_THREADS``, ``MXNET_CPU_WORKER_NTHREADS``): they must be set before
   MXNet starts, so each runs the LeNet step in a fresh process, the settings taking turns.

The machine is shared, so every round runs all variants back to back (A B C ..., then reversed) and a
ratio is taken within each round, then its median. "Best" ratios compare each layer in its fastest mode.
Nothing is read back inside a timed loop but the final wait.

Usage: ``python benchmarks/bench_bn.py [--batch-sizes 128 256] [--rounds 5] [--parts lenet layer threads]``
"""
import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time

import bn_gluon  # first: it makes mxnet importable on numpy 1.24 and later
import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from bn_gluon.compare.speed import interleaved, training_step
from bn_gluon.compare.speed import layer_step as layer_step_of
from bn_gluon.functional.fast import kernels as fast_kernels
from bn_gluon.models import lenet
from common import RESULTS, machine, write_json

MFLOP_PER_EXAMPLE = 8.1      # LeNet training step per example: 2.7 forward, twice that backward
LAYER_SHAPES = {'conv1 (N, 20, 24, 24)': (20, 24, 24), 'conv2 (N, 50, 10, 10)': (50, 10, 10),
                'dense (N, 128)': (128,)}
THREAD_SETTINGS = {   # name -> environment; MXNet's defaults: OMP threads = cores, 1 engine worker per device
    'default': {},
    'OMP_NUM_THREADS=1': {'OMP_NUM_THREADS': '1'},
    'OMP_NUM_THREADS=2': {'OMP_NUM_THREADS': '2'},
    'OMP_NUM_THREADS=1, MXNET_CPU_WORKER_NTHREADS=2': {'OMP_NUM_THREADS': '1', 'MXNET_CPU_WORKER_NTHREADS': '2'},
}
SETTINGS = ('OMP_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS', 'MXNET_ENGINE_TYPE')


def dot_gflops(n=2048, repeats=3):
    """GFLOP/s of nd.dot on two n x n float32 matrices (best of ``repeats``)."""
    a, b = nd.random.uniform(shape=(n, n)), nd.random.uniform(shape=(n, n))
    nd.dot(a, b).wait_to_read()
    best = float('inf')
    for _ in range(repeats):
        tic = time.perf_counter()
        nd.dot(a, b).wait_to_read()
        best = min(best, time.perf_counter() - tic)
    return 2 * n ** 3 / best / 1e9


STATIC = dict(static_alloc=True, static_shape=True)   # each layer's fastest hybridized mode


def hybridize(block):
    block.hybridize(**STATIC)


# --- 1. the LeNet training step ------------------------------------------------------------------------

LENET_VARIANTS = {  # name -> (norm, impl, hybridized)
    'gluon hybridized': ('gluon', None, True),
    'gluon imperative': ('gluon', None, False),
    'scratch fast hybridized': ('scratch', 'fast', True),
    'scratch fast imperative': ('scratch', 'fast', False),
    'scratch reference hybridized': ('scratch', 'reference', True),
    'scratch reference imperative': ('scratch', 'reference', False),
    'no norm hybridized': ('none', None, True),
}


def lenet_step(norm, impl, hybrid, batch_size):
    """A closure running one training step (forward, loss, backward, SGD update) on a fixed batch."""
    mx.random.seed(0)
    if norm == 'scratch':  # the implementation to measure goes in as the layer's argument
        net = lenet(norm_layer=bn_gluon.BatchNorm, norm_kwargs={'impl': impl})
    else:
        net = lenet(norm)
    if hybrid:
        hybridize(net)
    return training_step(net, batch_size, lr=0.01, momentum=0.9)


# --- 2. the layer alone ----------------------------------------------------------------------------------

LAYER_VARIANTS = {  # no 'scratch fast imperative': run after the hybridized layer in one process, it hangs MXNet 1.9
    'gluon hybridized': ('gluon', None, True),
    'gluon imperative': ('gluon', None, False),
    'scratch reference hybridized': ('scratch', 'reference', True),
    'scratch reference imperative': ('scratch', 'reference', False),
    'scratch fast hybridized': ('scratch', 'fast', True),
    # The fast path's forward and backward called directly: its kernels without the custom operator
    # (whose Python runs while the engine waits) and without autograd; not a layer, so not among the ratios.
    'fast kernels alone': ('kernels', 'fast', False),
}


def layer_step(kind, impl, hybrid, shape):
    """A closure running forward + backward of one BN layer in training mode on a fixed input."""
    if kind == 'kernels':
        rng = np.random.RandomState(0)
        return kernels_step(nd.array(rng.normal(1.0, 2.0, shape)), nd.array(rng.normal(size=shape)))
    make = gluon.nn.BatchNorm if kind == 'gluon' else functools.partial(bn_gluon.BatchNorm, impl=impl)
    return layer_step_of(make, shape, STATIC if hybrid else False, mx.cpu())


def kernels_step(X, dY):
    """``functional.fast.kernels.forward`` and ``backward`` on ``X`` and ``dY``, writing into arrays made once."""
    C = X.shape[1]
    gamma, beta, moving_mean, moving_var = nd.ones(C), nd.zeros(C), nd.zeros(C), nd.ones(C)
    Y, grads = nd.empty(X.shape), [nd.empty(X.shape), nd.empty(C), nd.empty(C)]

    def step():
        _, saved = fast_kernels.forward(X, gamma, beta, moving_mean, moving_var, training=True, momentum=0.9,
                                           eps=1e-5, axis=1, unbiased_var=False, out=Y)
        fast_kernels.backward(dY, saved, out=grads)
    return step


# --- measuring ----------------------------------------------------------------------------------------

def best_ratio(times, ours, theirs):
    """Median over rounds of (our best time) / (their best time): < 1 means ours is faster."""
    rounds = len(next(iter(times.values())))
    return float(np.median([min(times[o][r] for o in ours) / min(times[t][r] for t in theirs)
                            for r in range(rounds)]))


def measure_lenet(batch_size, variants, rounds, steps):
    """Examples/s and GFLOP/s per variant; scratch-fast over gluon examples/s, best modes, and the 'before'."""
    times = interleaved({k: lenet_step(*LENET_VARIANTS[k], batch_size) for k in variants}, rounds,
                        {k: steps for k in variants}, warmup=2)
    rows = {k: {'examples_per_s': batch_size / float(np.median(t)),
                'gflops': batch_size / float(np.median(t)) * MFLOP_PER_EXAMPLE / 1e3} for k, t in times.items()}
    pick = {name: [k for k in variants if k.startswith(name)] for name in ('gluon', 'scratch fast', 'scratch ref')}
    ratios = {'scratch_fast_over_gluon': 1 / best_ratio(times, pick['scratch fast'], pick['gluon'])}
    if pick['scratch ref']:
        ratios['scratch_reference_over_gluon'] = 1 / best_ratio(times, pick['scratch ref'], pick['gluon'])
    return {'rows': rows, 'examples_per_s_ratios': ratios}


def print_lenet(batch_size, res, dot, rounds):
    print(f"\nLeNet training step, batch {batch_size} (median of {rounds} rounds)")
    print(f"  {'variant':32s} {'examples/s':>11s} {'GFLOP/s':>8s} {'% of dot':>9s}")
    for k, r in res['rows'].items():
        print(f"  {k:32s} {r['examples_per_s']:11.0f} {r['gflops']:8.2f} {100 * r['gflops'] / dot:8.1f}%")
    for k, v in res['examples_per_s_ratios'].items():
        print(f"  {k + ' (examples/s, best modes)':50s} {v:6.2f}x")


def measure_layer(shape, rounds):
    """ms per forward + backward of each layer variant; scratch-fast over gluon time, best modes."""
    ms = 1e3 * np.prod(shape) / 3e6  # rough cost per call on this machine, to repeat calls to ~30 ms
    repeats = {k: max(1, int(30 / (ms * (10 if v[1] == 'reference' else 2)))) for k, v in LAYER_VARIANTS.items()}
    times = interleaved({k: layer_step(*v, shape) for k, v in LAYER_VARIANTS.items()}, rounds, repeats, warmup=2)
    fast = [k for k in LAYER_VARIANTS if k.startswith('scratch fast')]
    reference = [k for k in LAYER_VARIANTS if k.startswith('scratch ref')]
    gluon_rows = [k for k in LAYER_VARIANTS if k.startswith('gluon')]
    return {'ms': {k: 1e3 * float(np.median(t)) for k, t in times.items()},
            'scratch_fast_over_gluon_time': best_ratio(times, fast, gluon_rows),
            'scratch_reference_over_gluon_time': best_ratio(times, reference, gluon_rows),
            'fast_kernels_alone_over_gluon_time': best_ratio(times, ['fast kernels alone'], gluon_rows)}


# --- 3. threading settings, each in its own process ------------------------------------------------------

def measure_threads(batch_size, rounds, steps):
    """Per setting: median examples/s of the hybridized gluon and scratch-fast LeNet steps, and their ratio."""
    variants = ['gluon hybridized', 'scratch fast hybridized']
    runs = {name: [] for name in THREAD_SETTINGS}
    for r in range(rounds):
        for name in (list(THREAD_SETTINGS) if r % 2 == 0 else list(THREAD_SETTINGS)[::-1]):
            env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
            env.update(THREAD_SETTINGS[name])
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, 'run.json')
                subprocess.run([sys.executable, __file__, '--parts', 'lenet', '--batch-sizes', str(batch_size),
                                '--rounds', '2', '--steps', str(steps), '--variants', *variants, '--out', out],
                               env=env, check=True, stdout=subprocess.DEVNULL)
                with open(out) as f:
                    runs[name].append(json.load(f)['lenet'][str(batch_size)])
    return {name: {'gluon_examples_per_s': float(np.median([x['rows'][variants[0]]['examples_per_s'] for x in xs])),
                   'scratch_examples_per_s': float(np.median([x['rows'][variants[1]]['examples_per_s'] for x in xs])),
                   'scratch_over_gluon': float(np.median([x['examples_per_s_ratios']['scratch_fast_over_gluon']
                                                          for x in xs]))}
            for name, xs in runs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[128, 256])
    parser.add_argument('--rounds', type=int, default=5, help='interleaved rounds; medians are reported')
    parser.add_argument('--steps', type=int, default=3, help='training steps per variant and round')
    parser.add_argument('--variants', nargs='+', choices=list(LENET_VARIANTS), default=list(LENET_VARIANTS))
    parser.add_argument('--parts', nargs='+', choices=('lenet', 'layer', 'threads'),
                        default=['lenet', 'layer', 'threads'])
    parser.add_argument('--out', default=os.path.join(RESULTS, 'bn.json'), help='JSON file for the results')
    args = parser.parse_args(argv)

    result = {'machine': dict(machine(), settings={k: os.environ.get(k) for k in SETTINGS}),
              'rounds': args.rounds, 'steps': args.steps, 'dot_gflops': dot_gflops(),
              'lenet': {}, 'layer': {}, 'threads': {}}
    print(f"nd.dot 2048x2048 float32: {result['dot_gflops']:.1f} GFLOP/s; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    for N in args.batch_sizes if 'lenet' in args.parts else ():
        result['lenet'][N] = measure_lenet(N, args.variants, args.rounds, args.steps)
        print_lenet(N, result['lenet'][N], result['dot_gflops'], args.rounds)
    for N in args.batch_sizes if 'layer' in args.parts else ():
        result['layer'][N] = {}
        for name, shape in LAYER_SHAPES.items():
            res = result['layer'][N][name] = measure_layer((N,) + shape, args.rounds)
            print(f"\nBN layer alone, forward + backward, {name} with N={N}: ms per call")
            for k, v in res['ms'].items():
                print(f"  {k:32s} {v:8.2f}")
            print(f"  {'scratch fast / gluon time (best modes)':42s} {res['scratch_fast_over_gluon_time']:6.2f}x")
            print(f"  {'scratch reference / gluon time (best modes)':42s} "
                  f"{res['scratch_reference_over_gluon_time']:6.2f}x")
            print(f"  {'fast kernels alone / gluon time (best mode)':42s} "
                  f"{res['fast_kernels_alone_over_gluon_time']:6.2f}x")
    if 'threads' in args.parts:
        N = args.batch_sizes[0]
        result['threads'] = {N: measure_threads(N, rounds=2, steps=2)}
        print(f"\nThreading settings, LeNet step at batch {N}, hybridized (fresh process each, median of 2)")
        print(f"  {'setting':48s} {'gluon ex/s':>10s} {'scratch ex/s':>12s} {'ratio':>6s}")
        for name, r in result['threads'][N].items():
            print(f"  {name:48s} {r['gluon_examples_per_s']:10.0f} {r['scratch_examples_per_s']:12.0f} "
                  f"{r['scratch_over_gluon']:6.2f}")
    result['machine']['load_average_at_end'] = os.getloadavg()
    write_json(result, args.out)
    return result


if __name__ == '__main__':
    main()
