"""Training speed in one table, every variant side by side in the same run.

Rows:

- ``step``: examples/s of one training step (forward, loss, backward, hand-written SGD) of the LeNet with
  norm none / scratch / gluon, imperative and hybridized, on a fixed random batch of train.py's default size.
- ``epoch train.py``: train.py's pipeline (the images on the device once, ``DataIter`` slices,
  ``bn_gluon.engine.train_epoch``, default configuration).
- ``epoch article-style``: the seed article's program: the raw nd network (``raw_lenet_forward``) with
  the article's batch-norm formula (``impl='reference'``), a per-example ``ToTensor`` DataLoader
  (``bn_gluon.data.gluon_dataloader``), batch 128, its SGD ``p[:] = p - lr / batch_size * grad``, loss and
  accuracy read back with ``asscalar`` after every batch. Its test-set evaluation after every batch is
  left out (with it an epoch would take hours). A second row runs the same loop with the fast
  ``batch_norm``, to separate what the batch-norm formula costs from what the loop around it costs.

The epoch rows time ``--batches`` batches per round and extrapolate to the 60000 training images. The
machine is shared, so each round runs every variant once (A B C ..., A B C ...); the table shows medians
over rounds, and each ratio is taken within a round, then its median. Beside the wall clock the table gives
CPU time (this process, all threads): when other programs hold the cores, it still measures the work.

Usage: ``python benchmarks/bench_train.py [--rounds 3] [--steps 10] [--batches 30] [--out benchmarks/results/train.json]``
"""
import argparse
import itertools
import time

import bn_gluon  # first: it makes mxnet importable on numpy 1.24 and later
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from bn_gluon.config import TrainConfig
from bn_gluon.data import DataIter, gluon_dataloader, load_fashion_mnist, to_nd
from bn_gluon.engine import train_epoch
from bn_gluon.models import init_raw_lenet, lenet, named_parameters, raw_lenet_forward
from bn_gluon.optim import make_optimizer
from common import add_data_and_out, machine, write_json

N_TRAIN = 60000
ARTICLE_BATCH, ARTICLE_LR = 128, 0.2


def training_step(norm, hybridize, batch_size, steps):
    """A closure running ``steps`` training steps on a fixed batch; returns the examples it processed."""
    mx.random.seed(0)
    net = lenet(norm)
    if hybridize:
        net.hybridize()
    opt = make_optimizer('sgd', named_parameters(net), 0.01, 0.9)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    X = nd.random.uniform(shape=(batch_size, 1, 28, 28))
    y = nd.array(np.arange(batch_size) % 10)

    def run():
        for _ in range(steps):
            with autograd.record():
                loss = loss_fn(net(X), y)
            loss.backward()
            opt.step(batch_size)
        return steps * batch_size
    return run


class FirstBatches:
    """The first ``n`` batches of each epoch of a DataIter."""

    def __init__(self, it, n):
        self.it, self.n = it, n

    def __len__(self):
        return self.n

    def epoch(self, e):
        return itertools.islice(self.it.epoch(e), self.n)


def pipeline_batches(data, config, batches):
    """A closure running ``batches`` batches of train.py's epoch loop (a new epoch's order on every call)."""
    mx.random.seed(config.seed)
    net = lenet(config.norm, config.dense_norm)
    if config.hybridize:
        net.hybridize()
    X, y = to_nd(data.train_images, data.train_labels)
    it = FirstBatches(DataIter(X, y, config.batch_size, shuffle=True, seed=config.seed), batches)
    opt = make_optimizer(config.optimizer, named_parameters(net), config.lr, config.momentum, config.weight_decay)
    epochs = itertools.count()

    def run():
        return train_epoch(net, it, opt, next(epochs))['n']
    return run


def article_batches(data, batches, impl):
    """A closure running ``batches`` batches of the article-style loop (see the module docstring).

    ``impl='reference'`` is the article's batch-norm formula; 'fast' isolates what the rest of the loop costs.
    """
    loader = gluon_dataloader(data.train_images, data.train_labels, ARTICLE_BATCH, shuffle=True)
    mx.random.seed(0)
    params = init_raw_lenet('scratch', article_init=True)
    trainable = [v for k, v in params.items() if 'running' not in k]
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def run():
        n, train_loss, train_acc = 0, 0.0, 0.0
        for X, y in itertools.islice(loader, batches):
            y = y.astype('float32')
            with autograd.record():
                y_hat = raw_lenet_forward(params, X, training=True, impl=impl)
                loss = loss_fn(y_hat, y)
            loss.backward()
            for p in trainable:
                p[:] = p - ARTICLE_LR / ARTICLE_BATCH * p.grad
            train_loss += loss.mean().asscalar()                  # the article waits for the device per batch
            train_acc += (y_hat.argmax(axis=1) == y).mean().asscalar()
            n += X.shape[0]
        return n
    return run


def interleaved(variants, rounds):
    """Wall and CPU seconds per example of each closure, one entry per round, after a warm-up.

    CPU seconds are this process's, all threads together (``time.process_time``): on a shared machine the
    wall clock also counts the time other programs held the cores, the CPU clock only the work done.
    """
    for run in variants.values():
        run()
    nd.waitall()
    wall, cpu = ({name: [] for name in variants} for _ in range(2))
    for r in range(rounds):
        for name, run in variants.items():
            tic, cpu_tic = time.perf_counter(), time.process_time()
            n = run()
            nd.waitall()
            wall[name].append((time.perf_counter() - tic) / n)
            cpu[name].append((time.process_time() - cpu_tic) / n)
        print(f'  round {r + 1}/{rounds} done', flush=True)
    return wall, cpu


def median_ratio(times, name, reference):
    """Median over rounds of the time of ``name`` over that of ``reference`` in the same round."""
    return float(np.median([t / r for t, r in zip(times[name], times[reference])]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds; medians are reported')
    parser.add_argument('--steps', type=int, default=10, help='training steps per step variant and round')
    parser.add_argument('--batches', type=int, default=30, help='batches per epoch variant and round')
    add_data_and_out(parser, 'train.json')
    args = parser.parse_args(argv)
    for name in ('rounds', 'steps', 'batches'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1; got {getattr(args, name)}.')

    config = TrainConfig()
    data = load_fashion_mnist(args.data_dir)
    mode = 'hybridized' if config.hybridize else 'imperative'
    variants = {f'step  norm {norm:<7} {"hybridized" if hybrid else "imperative"}':
                training_step(norm, hybrid, config.batch_size, args.steps)
                for norm in ('none', 'gluon', 'scratch') for hybrid in (True, False)}
    pipeline = f'epoch train.py ({config.norm} BN, {mode}, batch {config.batch_size})'
    article = f'epoch article-style (raw nd, ToTensor loader, batch {ARTICLE_BATCH})'
    article_fast = 'epoch article-style, our fast batch_norm instead'
    variants[pipeline] = pipeline_batches(data, config, args.batches)
    variants[article] = article_batches(data, args.batches, 'reference')
    variants[article_fast] = article_batches(data, args.batches, 'fast')
    wall, cpu = interleaved(variants, args.rounds)

    # ratios to train.py's epoch, per round, then the median: > 1 means slower than train.py
    rows = {name: {'examples_per_sec': 1 / float(np.median(wall[name])),
                   'examples_per_cpu_sec': 1 / float(np.median(cpu[name])),
                   'seconds_per_60000': N_TRAIN * float(np.median(wall[name])),
                   'wall_vs_train_py_epoch': median_ratio(wall, name, pipeline),
                   'cpu_vs_train_py_epoch': median_ratio(cpu, name, pipeline)} for name in variants}
    width = max(map(len, rows)) + 2
    print(f'\nLeNet on Fashion-MNIST, CPU, medians of {args.rounds} interleaved rounds; epoch rows extrapolated '
          f'from {args.batches} batches to {N_TRAIN} images, step rows are compute only. Ratios: time of the row '
          f'/ time of the train.py epoch, wall clock and CPU time (all threads) of this process.')
    print(f"{'variant':<{width}}{'examples/s':>11}{'s / 60000':>11}{'ex / CPU-s':>11}{'wall ratio':>11}"
          f"{'CPU ratio':>10}")
    for name, r in rows.items():
        print(f"{name:<{width}}{r['examples_per_sec']:>11,.0f}{r['seconds_per_60000']:>11.1f}"
              f"{r['examples_per_cpu_sec']:>11,.0f}{r['wall_vs_train_py_epoch']:>11.2f}"
              f"{r['cpu_vs_train_py_epoch']:>10.2f}")
    print(f"train.py runs an epoch {rows[article]['wall_vs_train_py_epoch']:.1f}x faster (wall clock) and "
          f"{rows[article]['cpu_vs_train_py_epoch']:.1f}x cheaper (CPU time) than the article-style program, "
          f"its per-batch test evaluation left out; load average {machine()['load_average']}.")

    result = {'machine': machine(),
              'note': f'epoch rows extrapolated from {args.batches} batches per round to {N_TRAIN} images; the '
                      f'article-style loop leaves out its per-batch test evaluation',
              'rounds': args.rounds, 'steps': args.steps, 'batches': args.batches,
              'batch_size': config.batch_size, 'rows': rows,
              'seconds_per_example': {'wall': wall, 'cpu': cpu},
              'article_over_train_py_epoch': {k: rows[article][f'{k}_vs_train_py_epoch'] for k in ('wall', 'cpu')}}
    write_json(result, args.out)
    return result


if __name__ == '__main__':
    main()
