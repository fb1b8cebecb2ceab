"""Inference with batch norm folded away, side by side in one run: speed and test accuracy.

1. A briefly trained LeNet (``norm='scratch'``, BN after both convolutions and after dense1): one epoch
   over the first ``--train-images`` Fashion-MNIST training images, batch 128, hand-written momentum SGD
   (imperative scratch BN). Its parameters load unchanged into the ``gluon.nn.BatchNorm`` twin.
2. Test accuracy on the 10000 real test images of the unfolded nets (scratch BN imperative and
   hybridized, gluon BN hybridized), the folded net (hybridized) and the folded net exported and loaded
   back as a SymbolBlock; the largest logit difference to the unfolded scratch net and the number of
   changed predictions.
3. Inference examples/s of the same nets at batch 1 and 256, measured in interleaved rounds (median of
   ``--rounds``), and the speed-up of the folded net over each: its ratio within each round, median
   and range over the rounds.

Usage: ``python benchmarks/bench_fold.py [--train-images 12800] [--rounds 9] [--out benchmarks/results/fold.json]``
"""
import argparse
import os
import tempfile
import time

import bn_gluon  # first: it makes mxnet importable on numpy 1.24 and later
import mxnet as mx
import numpy as np
from mxnet import nd

from bn_gluon.data import DataIter, load_fashion_mnist, to_nd
from bn_gluon.engine import train_epoch
from bn_gluon.fold import NORM_OPS, export_network, fold_batch_norm, graph_ops, load_exported
from bn_gluon.models import lenet, named_parameters
from bn_gluon.optim import make_optimizer
from common import add_data_and_out, machine, write_json

CALLS = {1: 200, 256: 4}        # forward calls per net and round: about a second each on 2 cores
FOLDED = 'folded, hybridized'   # the net whose speed-up over the others is reported


def train(data, n_images, seed=0):
    """The scratch-BN LeNet after one epoch over the first ``n_images`` training images."""
    mx.random.seed(seed)
    net = lenet('scratch', dense_norm=True)
    X, y = to_nd(data.train_images[:n_images], data.train_labels[:n_images])
    opt = make_optimizer('sgd', named_parameters(net), 0.1, 0.9)
    tic = time.perf_counter()
    sums = train_epoch(net, DataIter(X, y, 128, seed=seed), opt, 0)
    return net, {'images': n_images, 'batch_size': 128, 'epochs': 1, 'lr': 0.1, 'momentum': 0.9,
                 'train_acc': sums['correct'] / sums['n'], 'seconds': time.perf_counter() - tic}


def twin(net, norm):
    """A LeNet with ``norm`` holding the same parameters as ``net``."""
    other = lenet(norm, dense_norm=True)
    theirs = named_parameters(other)
    for name, p in named_parameters(net).items():
        theirs[name].set_data(p.data())
    return other


def logits(net, X, batch=1000):
    return np.concatenate([net(X[i:i + batch]).asnumpy() for i in range(0, X.shape[0], batch)])


def speed(nets, batch, rounds, seed=0):
    """Examples/s of each net at ``batch`` in every round, the nets taking turns within a round.

    The order of the turns rotates from round to round, so that no net always runs first or last
    (right after a warm cache or right before another user's job on the shared cores).
    """
    X = nd.array(np.random.RandomState(seed).uniform(size=(batch, 1, 28, 28)))
    for net in nets.values():                                     # warm-up: graphs, memory
        for _ in range(3):
            net(X).wait_to_read()
    names = list(nets)
    samples = {name: [] for name in nets}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            net = nets[name]
            tic = time.perf_counter()
            for _ in range(CALLS[batch]):
                net(X).wait_to_read()                             # one request at a time, as a server would
            samples[name].append(CALLS[batch] * batch / (time.perf_counter() - tic))
    return {name: np.array(s) for name, s in samples.items()}


def speed_row(samples, name, reference):
    """Median and best examples/s of ``name``, and the speed-up of ``reference`` over it.

    The speed-up is taken round by round (the two nets ran seconds apart, under the same load), then
    its median and range over the rounds are reported: on shared cores that is steadier than a ratio
    of two medians.
    """
    ratios = samples[reference] / samples[name]                   # (rounds,) paired within each round
    return {'examples_per_sec': float(np.median(samples[name])), 'best_examples_per_sec': float(samples[name].max()),
            'folded_speedup': float(np.median(ratios)),
            'folded_speedup_range': [float(ratios.min()), float(ratios.max())]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train-images', type=int, default=12800, help='training images of the one epoch')
    parser.add_argument('--rounds', type=int, default=9, help='interleaved timing rounds per batch size')
    add_data_and_out(parser, 'fold.json')
    args = parser.parse_args(argv)
    if args.train_images < 128 or args.rounds < 1:
        parser.error(f'--train-images must be >= 128 (one batch) and --rounds >= 1; got {args.train_images} '
                     f'and {args.rounds}.')

    data = load_fashion_mnist(args.data_dir)
    net, training = train(data, args.train_images)
    print(f"trained 1 epoch on {args.train_images} images in {training['seconds']:.0f} s "
          f"(train accuracy {training['train_acc']:.4f})", flush=True)

    nets = {'scratch BN, imperative': net}
    nets['scratch BN, hybridized'] = twin(net, 'scratch')
    nets['gluon BN, hybridized'] = twin(net, 'gluon')
    nets[FOLDED] = fold_batch_norm(net)
    for name in ('scratch BN, hybridized', 'gluon BN, hybridized', FOLDED):
        nets[name].hybridize()
    with tempfile.TemporaryDirectory() as tmp:
        files = export_network(fold_batch_norm(net), os.path.join(tmp, 'folded'))
        ops = sorted(set(graph_ops(files[0])))
        nets['folded, exported SymbolBlock'] = load_exported(*files)

    X_test, y_test = to_nd(data.test_images, data.test_labels)
    y_true = y_test.asnumpy()
    reference = logits(net, X_test)
    accuracy = {}
    for name, n in nets.items():
        out = reference if n is net else logits(n, X_test)
        accuracy[name] = {'test_acc': float((out.argmax(axis=1) == y_true).mean()),
                          'max_abs_logit_diff': float(np.abs(out - reference).max()),
                          'predictions_changed': int((out.argmax(axis=1) != reference.argmax(axis=1)).sum())}
        print(f"  {name:<30} test accuracy {accuracy[name]['test_acc']:.4f}  max |logit diff| "
              f"{accuracy[name]['max_abs_logit_diff']:.2e}  changed predictions "
              f"{accuracy[name]['predictions_changed']}", flush=True)
    same_accuracy = len({a['test_acc'] for a in accuracy.values()}) == 1
    print(f"  same test accuracy folded and unfolded: {same_accuracy}", flush=True)

    samples = {batch: speed(nets, batch, args.rounds) for batch in CALLS}
    print(f"\nInference examples/s (median of {args.rounds} interleaved rounds) and the speed-up of the "
          f"folded net over each (median of the per-round ratios, [min, max])")
    print(f"{'net':<30}" + ''.join(f"{f'batch {b}':>11}{'speed-up':>10}{'[min, max]':>16}" for b in CALLS))
    table = []
    for name in nets:
        row = {f'batch_{b}': speed_row(samples[b], name, FOLDED) for b in CALLS}
        table.append(dict(net=name, **row, **accuracy[name]))
        print(f'{name:<30}' + ''.join(f"{r['examples_per_sec']:>11,.0f}{r['folded_speedup']:>10.2f}"
                                      f"{'[{:.2f}, {:.2f}]'.format(*r['folded_speedup_range']):>16}"
                                      for r in row.values()))

    result = {'machine': machine(),
              'note': (f'LeNet with BN after conv1, conv2 and dense1, trained for 1 epoch on the first '
                       f'{args.train_images} of the 60000 training images only: the accuracies compare '
                       f'folded with unfolded, they are not the best this net reaches. Accuracy and logit '
                       f'differences are over the 10000 real test images, against the imperative scratch '
                       f'net. Speeds are medians of {args.rounds} interleaved rounds, one forward call at '
                       f'a time, waited for; the folded speed-up is the median over the rounds of the ratio '
                       f'within a round.'),
              'training': training, 'same_test_accuracy': same_accuracy, 'exported_operators': ops,
              'exported_has_norm_ops': bool(set(ops) & set(NORM_OPS)),
              'calls_per_round': CALLS, 'rounds': args.rounds, 'results': table}
    write_json(result, args.out)


if __name__ == '__main__':
    main()
