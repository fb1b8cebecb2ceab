"""One training run from a TrainConfig: data, network, fit, and the files a run leaves behind.

A run folder holds ``config.json`` (its ``data`` entry: the folder and files read, with SHA-1),
``metrics.csv``, ``model.params`` (loadable into the twin net with ``gluon.nn.BatchNorm``),
``checkpoint/`` and ``curves.png``. Nothing is written before the configuration, the data and the
network are known to be good.
"""
import dataclasses
import json
import os
import time

import mxnet as mx
import numpy as np

from . import checkpoint as ckpt
from . import parallel
from .config import TrainConfig, default_out_dir, parse_ctxs
from .engine import TrainingInterrupted, evaluate, fit
from .models import IMPERATIVE_NORMS, build_net
from .plots import plot_curves

# What a resumed run may change: how long, where, and how it is shown. The rest decides the numbers.
RESUMABLE = ('epochs', 'quiet', 'out', 'data_dir', 'download', 'verify', 'ctx', 'hybridize', 'impl', 'resume')
TEST_BATCH = 1000   # inference keeps no graph, so big batches only cost memory


def resolve_config(explicit):
    """The run's TrainConfig from the fields given explicitly (e.g. on the command line); validated.

    With ``resume``, the checkpoint's configuration is the base, and only ``RESUMABLE`` fields may
    differ from it. The output folder then defaults to the run folder the checkpoint is in.
    """
    unknown = sorted(set(explicit) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f'unknown configuration fields {unknown}.')
    if explicit.get('eval') is not None and os.path.isdir(explicit['eval']):
        ckpt.find_checkpoint(explicit['eval'])                  # a folder must hold a checkpoint: say so now
    if explicit.get('resume') is None:
        return TrainConfig(**explicit).validate()
    explicit = dict({'quiet': TrainConfig.quiet}, **explicit)   # how this session shows itself is its own
    folder = ckpt.find_checkpoint(explicit['resume'])
    saved = TrainConfig.from_dict(ckpt.read_state(folder)['config'])
    for name, value in explicit.items():
        if name not in RESUMABLE and value != getattr(saved, name):
            raise ValueError(f'--{name.replace("_", "-")} {value!r} differs from the checkpoint\'s '
                             f'{getattr(saved, name)!r}; a resumed run keeps the settings that decide its '
                             f'numbers. Only {", ".join(RESUMABLE)} may change.')
    config = dataclasses.replace(saved, **dict(explicit, resume=folder))
    if 'out' not in explicit and os.path.basename(os.path.normpath(folder)) == 'checkpoint':
        config = dataclasses.replace(config, out=os.path.dirname(os.path.normpath(folder)))
    return config.validate()


def check_out_dir(config):
    """Refuse to write a new run over an old one (resuming into its own folder is fine)."""
    if config.out and os.path.exists(os.path.join(config.out, 'config.json')) and not config.resume:
        raise ValueError(f'{config.out} already holds a run (config.json); give another --out, or continue '
                         f'it with --resume {config.out}.')


def load_data(config, ctx, kv=None, num_devices=1, train_limit=None):
    """(train_iter, test_iter) of Fashion-MNIST on ``ctx``, shuffled by ``config.seed``.

    ``train_limit``: train on the first ``train_limit`` training images only (the test set stays whole).

    With a ``dist_sync`` kvstore ``kv`` the training iterator covers this worker's shard only, in batches
    of ``config.batch_size / kv.num_workers``, so the global batch and the steps per epoch stay those of
    one process. Data-parallel runs drop a short last batch: every device needs examples to normalize.
    """
    from .data import DataIter, load_fashion_mnist, to_nd   # the data module knows no model: import late
    data = load_fashion_mnist(config.data_dir, download=config.download, verify=config.verify)
    X, y = to_nd(data.train_images[:train_limit], data.train_labels[:train_limit], ctx)
    X_test, y_test = to_nd(data.test_images, data.test_labels, ctx)
    batch_size = config.batch_size
    if kv is not None:
        if batch_size % kv.num_workers or batch_size // kv.num_workers < 2 * num_devices:
            raise ValueError(f'--batch-size {batch_size} is the global batch of {kv.num_workers} workers with '
                             f'{num_devices} device(s) each; it must divide evenly and give every device at '
                             f'least 2 examples, e.g. --batch-size {2 * num_devices * kv.num_workers * 8}.')
        X, y = parallel.shard(X, y, kv.rank, kv.num_workers)
        batch_size //= kv.num_workers
    data_parallel = kv is not None or num_devices > 1
    train_iter = DataIter(X, y, batch_size, shuffle=True, seed=config.seed, drop_last=data_parallel)
    test_iter = DataIter(X_test, y_test, TEST_BATCH, shuffle=False)
    train_iter.source = data.source      # which folder and files (SHA-1): for config.json and the summary
    return train_iter, test_iter


def make_net(config, ctx):
    """The network of ``config`` on ``ctx`` (a context or a list: the same values on every device)."""
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    mx.random.seed(config.seed)
    np.random.seed(config.seed)
    net = build_net(config.norm, config.style, config.dense_norm, config.article_init, ctxs[0], config.impl,
                    config.norm_position)
    if len(ctxs) > 1:
        net.collect_params().reset_ctx(ctxs)                     # copies device 0's values to the others
    if config.hybridize and config.style == 'gluon' and config.norm not in IMPERATIVE_NORMS:
        net.hybridize()
    return net


def train(config, log=print):
    """Run training as ``config`` says; return (history, out folder). Prints a summary at the end."""
    config.validate()
    check_out_dir(config)
    ctxs = parse_ctxs(config.ctx)
    kv = parallel.create_kvstore(config.kvstore) if config.kvstore else None
    if kv is not None and kv.rank != 0:                          # worker 0 alone logs and writes the run
        return _train_worker(config, ctxs, kv)
    train_iter, test_iter = load_data(config, ctxs[0], kv, len(ctxs))
    net = make_net(config, ctxs)
    out = config.out or default_out_dir(config)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(dict(config.to_dict(), out=out, data=train_iter.source.to_dict()), f, indent=1)
    tic = time.time()
    try:
        history = fit(net, train_iter, test_iter, config, ctxs, out=out, resume=config.resume, log=log, kv=kv)
    except TrainingInterrupted:
        _write_results(net, out, _history_so_far(out), config)
        raise
    _write_results(net, out, history, config)
    if not config.quiet:
        where = ', '.join(map(str, ctxs)) + (f' x {kv.num_workers} workers ({kv.type})' if kv else '')
        log(summary(history, out, time.time() - tic, where, config, train_iter.source))
    return history, out


def _train_worker(config, ctxs, kv):
    """Worker ``kv.rank`` > 0 of a distributed run: the same steps on its own shard, writing nothing."""
    train_iter, test_iter = load_data(config, ctxs[0], kv, len(ctxs))
    net = make_net(config, ctxs)
    quiet = dataclasses.replace(config, quiet=True)
    return fit(net, train_iter, test_iter, quiet, ctxs, resume=config.resume, kv=kv), None


def _history_so_far(out):
    try:
        return ckpt.read_state(out)['history']
    except (OSError, ValueError):
        return []


def _write_results(net, out, history, config):
    ckpt.save_params(net, os.path.join(out, 'model.params'))
    if history:
        plot_curves(history, os.path.join(out, 'curves.png'),
                    title=f'LeNet, norm={config.norm}, style={config.style}, lr={config.lr:g}')


def summary(history, out, seconds, ctx, config, source=None):
    """A few lines: final and best accuracy, time, the data (``source``, a DataSource), where the files went."""
    last, best = history[-1], max(history, key=lambda m: m['test_acc'])
    files = ', '.join(f for f in ('config.json', 'metrics.csv', 'model.params', 'checkpoint/', 'curves.png')
                      if os.path.exists(os.path.join(out, f.rstrip('/'))))
    return '\n'.join([
        f"done: {len(history)} epochs of LeNet (norm {config.norm}, style {config.style}) on {ctx}",
        f"  test accuracy  {last['test_acc']:.4f}  (best {best['test_acc']:.4f}, epoch {best['epoch']})",
        f"  train accuracy {last['train_acc']:.4f}, train loss {last['train_loss']:.4f}, "
        f"test loss {last['test_loss']:.4f}",
        f"  this session {seconds / 60:.1f} min; last epoch {last['seconds']:.1f} s at "
        f"{last['examples_per_sec']:,.0f} examples/s",
        *([f"  data: {source.describe()} (files and SHA-1 in config.json)"] if source else []),
        f"  files in {out}/: {files}",
        f"  evaluate again: python train.py --eval {out}",
    ])


def evaluate_checkpoint(config, log=print):
    """Evaluate ``config.eval`` (checkpoint/run folder or .params file) on the test set; write nothing.

    A checkpoint brings its own network settings; a bare .params file uses ``config``'s norm, style,
    dense_norm and norm_position.
    """
    path = config.eval
    if os.path.isdir(path):
        saved = TrainConfig.from_dict(ckpt.read_state(path)['config'])
        config = dataclasses.replace(config, norm=saved.norm, style=saved.style, dense_norm=saved.dense_norm,
                                     norm_position=saved.norm_position)
        params = os.path.join(ckpt.find_checkpoint(path), ckpt.PARAMS)
    else:
        params = path
    ctx = parse_ctxs(config.ctx)[0]                              # evaluation needs one device
    net = build_net(config.norm, config.style, config.dense_norm, ctx=ctx, norm_position=config.norm_position)
    ckpt.load_params(net, params)
    _, test_iter = load_data(config, ctx)
    result = evaluate(net, test_iter, ctx)
    log(f"{params}: test loss {result['loss']:.4f}, test accuracy {result['acc']:.4f} "
        f"({result['n']} examples, norm {config.norm}, style {config.style})")
    return result
