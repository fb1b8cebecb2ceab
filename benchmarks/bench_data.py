"""Fashion-MNIST feeding speed: the in-memory DataIter against the articles' per-example DataLoader.

Measured side by side in one run, on the CPU, without a model:
1. seconds to load and verify the full train split (decompress, SHA-1, parse) and put it in memory;
2. seconds for one epoch of batch-256 batches from ``DataIter`` (one gather per epoch, then slices);
3. seconds for one epoch from ``gluon.data.DataLoader`` with ``transforms.ToTensor`` per example, as in
   the articles (extrapolated from ``--loader-batches`` batches; the rate is steady after the first).
Each batch is waited for (``wait_to_read``) so that lazy evaluation cannot hide work.

    python benchmarks/bench_data.py [--data-dir DIR] [--json results/bench_data.json]
"""
import argparse
import json
import os
import statistics
import time

from bn_gluon.data import DataIter, gluon_dataloader, load_fashion_mnist, to_nd

BATCH = 256


def seconds(fn, repeat):
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def epoch_of(batches, limit=None):
    n = 0
    for i, (X, y) in enumerate(batches):
        if limit is not None and i == limit:
            break
        X.wait_to_read()
        y.wait_to_read()
        n += len(X)
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=None)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--loader-batches', type=int, default=40, help='DataLoader batches timed per repeat')
    parser.add_argument('--json', default=None, help='write the results here as JSON')
    args = parser.parse_args(argv)

    load_s = seconds(lambda: load_fashion_mnist(args.data_dir, download=False), args.repeat)
    data = load_fashion_mnist(args.data_dir, download=False)
    images, labels = data.train_images, data.train_labels
    to_nd_s = seconds(lambda: to_nd(images, labels)[0].wait_to_read(), args.repeat)
    X, y = to_nd(images, labels)
    it = DataIter(X, y, BATCH, seed=0)
    loader = gluon_dataloader(images, labels, BATCH, shuffle=True)
    steps = len(it)
    epoch_iter, epoch_loader = [], []
    for r in range(args.repeat):                   # interleaved, so both see the same machine
        epoch_iter.append(seconds(lambda: epoch_of(it.epoch(r)), 1))
        part = seconds(lambda: epoch_of(loader, args.loader_batches), 1)
        epoch_loader.append(part * steps / args.loader_batches)
    result = dict(
        examples=len(images), batch_size=BATCH, load_and_verify_s=load_s, to_nd_s=to_nd_s,
        epoch_data_iter_s=statistics.median(epoch_iter), epoch_dataloader_s=statistics.median(epoch_loader),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'))
    result['speedup'] = result['epoch_dataloader_s'] / result['epoch_data_iter_s']
    print(f"load + verify train+test (decompress, SHA-1, parse) {load_s:8.2f} s")
    print(f"to float32 NDArray, train split                     {to_nd_s:8.2f} s")
    print(f"one epoch, batch {BATCH}, DataIter (in memory)          {result['epoch_data_iter_s']:8.3f} s")
    print(f"one epoch, batch {BATCH}, DataLoader + ToTensor         {result['epoch_dataloader_s']:8.1f} s "
          f"(from {args.loader_batches} of {steps} batches)")
    print(f"DataIter is {result['speedup']:.0f}x faster than the DataLoader")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
