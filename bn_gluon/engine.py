"""The training loop: forward -> loss -> backward -> update -> log, one epoch after another.

Losses and correct counts stay on the device and are read every ``LOG_EVERY`` steps, not after each
batch: reading a number waits for the device, and waiting per batch is a large share of a small net's
step. Accuracy is counted per example, so a smaller last batch weighs what it holds.

Reproducibility: the data order of epoch ``e`` depends only on the DataIter's (seed, e), and MXNet's
random generator is re-seeded with ``seed + e`` at the start of every epoch (its state cannot be read
back), so a run resumed at an epoch boundary repeats the uninterrupted run bit for bit on the CPU.
"""
import contextlib
import csv
import itertools
import os
import signal
import sys
import threading
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from tqdm import tqdm

from . import checkpoint as ckpt
from . import parallel
from .models import named_parameters
from .optim import LR_SCHEDULES, make_optimizer

LOG_EVERY = 50   # steps between reads of the loss: the non-finite check and the progress bar
METRICS = ('epoch', 'lr', 'train_loss', 'train_acc', 'test_loss', 'test_acc', 'examples_per_sec',
           'train_seconds', 'seconds')


class NonFiniteLossError(FloatingPointError):
    """The training loss became inf or nan; the message says where and what to try."""

    def __init__(self, epoch, step, value, lr, checkpoint=None):
        self.epoch, self.step, self.value, self.checkpoint = epoch, step, value, checkpoint
        kept = (f'The last good checkpoint is kept at {checkpoint}.' if checkpoint
                else 'No checkpoint was written before it.')
        super().__init__(f'the training loss became {value} at epoch {epoch + 1}, step {step + 1}; training '
                         f'stopped. The learning rate {lr:g} is probably too large: try --lr {lr / 10:g}. {kept}')


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training between two steps; ``checkpoint`` is where it was saved (or None)."""

    def __init__(self, epoch, step, checkpoint):
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint
        where = f'saved to {checkpoint}; continue with --resume {checkpoint}' if checkpoint else 'not saved'
        when = f'after epoch {epoch}' if step == 0 else f'at epoch {epoch + 1}, step {step}'
        super().__init__(f'interrupted {when}: {where}')


def evaluate(net, data_iter, ctx=None):
    """Mean loss and accuracy over every example of ``data_iter``, in inference mode."""
    ctx = ctx or mx.cpu()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_sum, correct, n = nd.zeros(1, ctx=ctx), nd.zeros(1, ctx=ctx), 0
    for X, y in data_iter:
        X, y = X.as_in_context(ctx), y.as_in_context(ctx)
        y_hat = net(X)                                            # outside record(): running statistics
        loss_sum += loss_fn(y_hat, y).sum()
        correct += (y_hat.argmax(axis=1) == y).sum()
        n += X.shape[0]
    if n == 0:
        raise ValueError('the evaluation data is empty.')
    return {'loss': loss_sum.asscalar() / n, 'acc': correct.asscalar() / n, 'n': n}


def train_step(net, loss_fn, optimizer, X, y):
    """One training step on one device: forward -> loss -> backward -> update; returns (loss, y_hat)."""
    with autograd.record():
        y_hat = net(X)                                            # (B, classes) scores
        loss = loss_fn(y_hat, y)                                  # (B,) per-example loss
    loss.backward()
    optimizer.step(X.shape[0])                                    # gradient of the sum / batch size
    return loss, y_hat


def train_epoch(net, train_iter, optimizer, epoch, ctx=None, *, start_step=0, sums=None, lr_at=None, stop=None,
                bar=None):
    """Run the steps of one epoch from ``start_step``; return the sums (loss, correct, n, step).

    ``lr_at(step)`` gives the learning rate of each step (None: leave the optimizer's). ``stop`` is
    polled after each step; when it returns True the epoch ends early with ``'stopped'`` set. ``ctx``
    may be a list of contexts: each batch is then split across them (data parallelism).
    """
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    ctx = ctxs[0]
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    sums = dict(sums or {'loss': 0.0, 'correct': 0.0, 'n': 0}, step=start_step, stopped=False)
    pending = []                                                  # (loss sum, correct) per unread step
    batches = itertools.islice(train_iter.epoch(epoch), start_step, None)
    for step, (X, y) in enumerate(batches, start_step):
        X, y = X.as_in_context(ctx), y.as_in_context(ctx)
        if lr_at is not None:
            optimizer.set_learning_rate(lr_at(step))
        if len(ctxs) > 1:                                         # slices on every device, gathered on ctx
            loss, y_hat, y = parallel.forward_backward(net, loss_fn, X, y, ctxs)
            optimizer.step(X.shape[0])                            # gradient of the sum / batch size
        else:
            loss, y_hat = train_step(net, loss_fn, optimizer, X, y)
        pending.append(nd.concat(loss.sum(), (y_hat.argmax(axis=1) == y).sum(), dim=0))
        sums['n'] += X.shape[0]
        sums['step'] = step + 1
        if len(pending) == LOG_EVERY:
            _read(pending, sums, epoch, step, optimizer, bar)
        if stop is not None and stop():
            sums['stopped'] = True
            break
    if pending:
        _read(pending, sums, epoch, sums['step'] - 1, optimizer, bar)
    return sums


def _read(pending, sums, epoch, last_step, optimizer, bar):
    """Fetch the unread per-step sums (one wait for the device), check them, add them up."""
    values = nd.stack(*pending).asnumpy().astype(np.float64)     # (steps, 2): loss sum, correct
    bad = ~np.isfinite(values[:, 0])
    if bad.any():
        first = int(np.argmax(bad))
        raise NonFiniteLossError(epoch, last_step - len(pending) + 1 + first, values[first, 0],
                                 getattr(optimizer, 'lr', float('nan')))
    sums['loss'] += float(values[:, 0].sum())
    sums['correct'] += float(values[:, 1].sum())
    if bar is not None:
        bar.update(len(pending))
        bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.4f}", acc=f"{sums['correct'] / sums['n']:.4f}")
    pending.clear()


def fit(net, train_iter, test_iter, config, ctx=None, *, out=None, resume=None, log=print, kv=None):
    """Train ``net`` for ``config.epochs`` epochs; return the history, one dict of metrics per epoch.

    Parameters
    ----------
    net : LeNet, RawLeNet or any block whose parameters ``named_parameters`` can list
    train_iter, test_iter : bn_gluon.data.DataIter
        ``train_iter.epoch(e)`` gives the batches of epoch e; ``iter(test_iter)`` one pass over the test set.
    config : TrainConfig
        Uses epochs, lr, lr_schedule, optimizer, momentum, weight_decay, seed and quiet.
    ctx : mx.Context or list of mx.Context
        Where the batches go; the network must already live there. Several: data parallelism, with
        :class:`bn_gluon.parallel.DataParallelSGD` and the running statistics averaged over the devices
        before every evaluation and checkpoint.
    out : str or None
        Folder for ``checkpoint/`` and ``metrics.csv``, rewritten after every epoch; None writes nothing.
    resume : str or None
        A checkpoint (or run) folder to continue from.
    log : callable
        Receives one line per epoch (unless ``config.quiet``).
    kv : mx.kvstore.KVStore or None
        A ``dist_sync`` kvstore: this process is one worker, ``train_iter`` its shard. Gradients, running
        statistics and the epoch's metrics are summed over the workers.
    """
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    ctx, params = ctxs[0], named_parameters(net)
    data_parallel = len(ctxs) > 1 or kv is not None
    if data_parallel:
        optimizer = parallel.DataParallelSGD(params, config.lr, config.momentum, config.weight_decay, kv=kv)
    else:
        optimizer = make_optimizer(config.optimizer, params, config.lr, config.momentum, config.weight_decay)
    state = {'epoch': 0, 'step': 0, 'sums': None, 'seconds': 0.0, 'history': []}
    log = log if not config.quiet else (lambda *a, **k: None)
    if resume is not None:
        state.update(ckpt.load_checkpoint(resume, net, optimizer))
        log(f"resuming at epoch {state['epoch'] + 1}, step {state['step']} from {resume}")
    if kv is not None:
        parallel.init_kvstore(kv, params)                         # every worker starts from worker 0's values
        kv.init(WORKER_SUMS, nd.zeros(3))
    folder = os.path.join(out, 'checkpoint') if out else None
    history, last_saved = state['history'], resume
    schedule, steps = LR_SCHEDULES[config.lr_schedule], len(train_iter)

    with _ctrl_c_sets_flag() as stopping:
        for epoch in range(state['epoch'], config.epochs):
            if state['step'] == 0:
                mx.random.seed(config.seed + epoch)
            bar = tqdm(total=len(train_iter), initial=state['step'], desc=f'epoch {epoch + 1}/{config.epochs}',
                       unit='batch', leave=False, file=sys.stderr,   # a bar only for a person at a terminal
                       disable=config.quiet or not sys.stderr.isatty())

            def lr_at(step, epoch=epoch):                          # the schedule spans every step of the run
                return schedule(config.lr, epoch * steps + step, config.epochs * steps)

            tic = time.time()
            try:
                sums = train_epoch(net, train_iter, optimizer, epoch, ctxs, start_step=state['step'],
                                   sums=state['sums'], lr_at=lr_at, stop=stopping, bar=bar)
            except NonFiniteLossError as e:
                raise NonFiniteLossError(e.epoch, e.step, e.value, config.lr, last_saved) from None
            finally:
                bar.close()
            nd.waitall()                                          # the last update is done: time is honest
            train_seconds = state['seconds'] + time.time() - tic
            if sums['stopped'] and sums['step'] < len(train_iter):
                partial = {'loss': sums['loss'], 'correct': sums['correct'], 'n': sums['n']}
                saved = _save(folder, net, optimizer, config, epoch, sums['step'], partial, train_seconds,
                              history)
                raise TrainingInterrupted(epoch, sums['step'], saved)
            if data_parallel:                                     # one set of running statistics
                parallel.reconcile_running_stats(params, kv)
            if kv is not None:
                sums = dict(sums, **_sum_over_workers(kv, sums))
            tic = time.time()
            test = evaluate(net, test_iter, ctx)                  # once per epoch, after its last step
            history.append({'epoch': epoch + 1, 'lr': lr_at(0), 'train_loss': sums['loss'] / sums['n'],
                            'train_acc': sums['correct'] / sums['n'], 'test_loss': test['loss'],
                            'test_acc': test['acc'], 'examples_per_sec': sums['n'] / train_seconds,
                            'train_seconds': train_seconds, 'seconds': train_seconds + time.time() - tic})
            state.update(step=0, sums=None, seconds=0.0)
            log(format_epoch(history[-1], config.epochs))
            if out:
                last_saved = _save(folder, net, optimizer, config, epoch + 1, 0, None, 0.0, history)
                write_metrics(os.path.join(out, 'metrics.csv'), history)
            if stopping():
                raise TrainingInterrupted(epoch + 1, 0, last_saved if out else None)
    return history


WORKER_SUMS = 'engine.epoch_sums'   # kvstore key of (loss, correct, n) summed over the workers


def _sum_over_workers(kv, sums):
    """This epoch's loss, correct count and examples summed over all workers of ``kv``."""
    mine = nd.array([sums['loss'], sums['correct'], sums['n']])
    total = nd.zeros(3)
    kv.push(WORKER_SUMS, mine)
    kv.pull(WORKER_SUMS, out=total)
    loss, correct, n = total.asnumpy().tolist()
    return {'loss': loss, 'correct': correct, 'n': int(round(n))}


def _save(folder, net, optimizer, config, epoch, step, sums, seconds, history):
    if folder is None:
        return None
    state = {'epoch': epoch, 'step': step, 'sums': sums, 'seconds': seconds, 'history': history,
             'config': config.to_dict()}
    return ckpt.save_checkpoint(folder, net, optimizer, state)


def format_epoch(m, epochs):
    return (f"epoch {m['epoch']:>2}/{epochs}  lr {m['lr']:.3g}  train loss {m['train_loss']:.4f} "
            f"acc {m['train_acc']:.4f}  |  test loss {m['test_loss']:.4f} acc {m['test_acc']:.4f}  |  "
            f"{m['examples_per_sec']:,.0f} ex/s, {m['seconds']:.1f} s")


def write_metrics(path, history):
    """One CSV row per epoch, columns ``METRICS``."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=METRICS)
        writer.writeheader()
        writer.writerows(history)


@contextlib.contextmanager
def _ctrl_c_sets_flag():
    """While active, the first Ctrl-C only raises a flag, so training stops between two steps.

    A second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread signals cannot be
    caught, and the flag never rises.
    """
    raised = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def on_sigint(signum, frame):
        if raised:
            raise KeyboardInterrupt
        raised.append(signum)
        print('\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort).',
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(raised)
    finally:
        signal.signal(signal.SIGINT, previous)
