"""Data-parallel training speed: 1 versus 2 devices in one process, 1 versus 2 worker processes.

Rows (examples/s of LeNet training steps, forward -> backward -> gradient sum -> hand-written SGD, on a
random batch of train.py's default global size 128):

- ``devices``: one process on ``cpu(0)`` versus ``cpu(0), cpu(1)`` (each batch split in two), with plain
  batch norm (``scratch``, hybridized) and with synchronized batch norm (``sync``, imperative: it
  exchanges statistics in Python between the devices' calls, so it is compared with imperative
  ``scratch`` on one device, which is what ``sync`` is on one device).
- ``workers``: ``python -m bn_gluon.launch -n W`` with ``--kvstore dist_sync``, one scheduler and one
  server, W = 1 versus 2 worker processes on this host, the global batch split over the workers. Start-up
  is not timed: each worker times its steps after two warm-up steps, between two kvstore barriers.

Scaling efficiency = rate with 2 / (2 * rate with 1): 1.0 is perfect, 0.5 means no gain. What to expect
here: two CPU contexts of one process share the same cores (MXNet gives each CPU context its own engine
worker thread, so at best they overlap on 2 idle cores), and two workers plus a server and a scheduler
share them too, with every gradient going through loopback TCP. This machine has 2 cores shared by
several people, so the absolute numbers are noisy and any gain is bounded by 2x; only the ratios of one
round are compared. On busy shared cores a job of two processes also gets a larger share of the machine
than one process does, which flatters the worker rows: read them on an idle machine. Each round runs every variant once (A B C D, A B C D, ...); the table shows medians
over rounds, and efficiencies are taken within each round, then their median.

Usage: ``python benchmarks/bench_parallel.py [--rounds 3] [--steps 10] [--worker-rounds 2]
[--out benchmarks/results/parallel.json]``
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import bn_gluon  # first: it makes mxnet importable on numpy 1.24 and later
import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from bn_gluon import launch, parallel
from bn_gluon.config import TrainConfig
from bn_gluon.experiment import make_net
from bn_gluon.models import named_parameters
from common import RESULTS, machine, write_json

BATCH = 128                          # train.py's default: the global batch of every variant
WARMUP = 2
DEVICE_VARIANTS = [  # (name, norm, hybridize, contexts)
    ('scratch hybridized, 1 device', 'scratch', True, 1),
    ('scratch hybridized, 2 devices', 'scratch', True, 2),
    ('scratch imperative, 1 device', 'scratch', False, 1),
    ('sync imperative, 2 devices', 'sync', False, 2),
]
SCALING = [  # (label, one, two): the pairs whose efficiency is reported
    ('devices, plain BN', 'scratch hybridized, 1 device', 'scratch hybridized, 2 devices'),
    ('devices, sync BN', 'scratch imperative, 1 device', 'sync imperative, 2 devices'),
    ('workers, plain BN', '1 worker (dist_sync)', '2 workers (dist_sync)'),
]


def random_batch(n, seed=0):
    rng = np.random.RandomState(seed)
    return nd.array(rng.uniform(0, 1, (n, 1, 28, 28))), nd.array(rng.randint(0, 10, n))


def time_steps(norm, hybridize, ctxs, steps, batch, kv=None):
    """Examples/s of ``steps`` training steps of this process (``batch`` examples each) after a warm-up."""
    config = TrainConfig(norm=norm, hybridize=hybridize, batch_size=batch)
    net = make_net(config, ctxs)
    params = named_parameters(net)
    if kv is not None:
        parallel.init_kvstore(kv, params)
    optimizer = parallel.DataParallelSGD(params, config.lr, config.momentum, kv=kv)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    X, y = random_batch(batch, seed=kv.rank if kv is not None else 0)
    X, y = X.as_in_context(ctxs[0]), y.as_in_context(ctxs[0])
    for step in range(WARMUP + steps):
        if step == WARMUP:
            nd.waitall()
            if kv is not None:
                kv._barrier()                                      # every worker starts the clock together
            tic = time.perf_counter()
        parallel.forward_backward(net, loss_fn, X, y, ctxs)
        optimizer.step(batch)
    nd.waitall()
    if kv is not None:
        kv._barrier()
    return batch * steps / (time.perf_counter() - tic)


def worker_main(args):
    """One worker of a launched job: time the steps, worker 0 writes the job's global examples/s."""
    kv = parallel.create_kvstore('dist_sync')
    rate = time_steps('scratch', True, [mx.cpu(0)], args.steps, BATCH // kv.num_workers, kv)
    if kv.rank == 0:
        with open(args.worker, 'w') as f:
            json.dump({'examples_per_sec': rate * kv.num_workers}, f)


def run_workers(num_workers, steps, timeout):
    """Global examples/s of a launched job with ``num_workers`` workers and one server."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'rate.json')
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
        job = launch.Job([sys.executable, os.path.abspath(__file__), '--worker', path, '--steps', str(steps)],
                         num_workers, 1, env=env)
        rc = job.wait(timeout)
        if rc != 0:
            raise RuntimeError(f'the {num_workers}-worker job failed with status {rc}; see its output above.')
        with open(path) as f:
            return json.load(f)['examples_per_sec']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds of the device variants')
    parser.add_argument('--worker-rounds', type=int, default=2, help='interleaved rounds of the launched jobs')
    parser.add_argument('--steps', type=int, default=10, help='timed training steps per variant and round')
    parser.add_argument('--timeout', type=float, default=300, help='seconds a launched job may take')
    parser.add_argument('--out', default=os.path.join(RESULTS, 'parallel.json'), help='JSON file for the results')
    parser.add_argument('--worker', help=argparse.SUPPRESS)       # set by the launched jobs only
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    for name in ('rounds', 'worker_rounds', 'steps'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1; got {getattr(args, name)}')

    rounds = []
    for r in range(max(args.rounds, args.worker_rounds)):
        rates = {}
        if r < args.rounds:
            for name, norm, hybridize, k in DEVICE_VARIANTS:
                ctxs = [mx.cpu(i) for i in range(k)]
                rates[name] = time_steps(norm, hybridize, ctxs, args.steps, BATCH)
        if r < args.worker_rounds:
            for w in (1, 2):
                rates[f'{w} worker{"s" if w > 1 else ""} (dist_sync)'] = run_workers(w, args.steps, args.timeout)
        rounds.append(rates)
        print(f'round {r + 1}: ' + ', '.join(f'{k} {v:,.0f}' for k, v in rates.items()), file=sys.stderr)

    names = [v[0] for v in DEVICE_VARIANTS] + ['1 worker (dist_sync)', '2 workers (dist_sync)']
    median = {n: statistics.median(r[n] for r in rounds if n in r) for n in names}
    efficiency = {label: statistics.median(r[two] / (2 * r[one]) for r in rounds if one in r and two in r)
                  for label, one, two in SCALING}
    result = {
        'batch': BATCH, 'steps': args.steps, 'rounds': args.rounds, 'worker_rounds': args.worker_rounds,
        'examples_per_sec': median, 'scaling_efficiency': efficiency, 'per_round': rounds,
        'machine': machine(),
    }
    print(f'global batch {BATCH}, {args.steps} timed steps, medians of {args.rounds} rounds '
          f'({args.worker_rounds} for the launched jobs); {os.cpu_count()} CPU cores, load average '
          f'{os.getloadavg()[0]:.1f}')
    print(f'| {"variant":<32} | {"examples/s":>10} |\n|{"-" * 34}|{"-" * 11}:|')
    for n in names:
        print(f'| {n:<32} | {median[n]:>10,.0f} |')
    print(f'\n| {"2 versus 1":<20} | {"speed-up":>8} | {"scaling efficiency":>18} |\n|{"-" * 22}|{"-" * 9}:|'
          f'{"-" * 19}:|')
    for label, _, _ in SCALING:
        print(f'| {label:<20} | {2 * efficiency[label]:>7.2f}x | {efficiency[label]:>18.2f} |')
    write_json(result, args.out)


if __name__ == '__main__':
    main()
