"""bn_gluon.optim and bn_gluon.engine: the update formulas, the loop, checkpoints, resume and failures."""
import dataclasses
import json
import os
import signal

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

from bn_gluon import checkpoint as ckpt
from bn_gluon.config import TrainConfig
from bn_gluon.data import DataIter, load_fashion_mnist, to_nd, write_synthetic_fashion_mnist
from bn_gluon.engine import METRICS, NonFiniteLossError, TrainingInterrupted, evaluate, fit
from bn_gluon.models import LeNet, build_net, lenet, named_parameters
from bn_gluon.optim import LR_SCHEDULES, SGD, TrainerSGD, cosine_lr, make_optimizer, sgd_update, trainable

TIMING = ('examples_per_sec', 'train_seconds', 'seconds')
SMALL = 96   # examples in the runs that are compared with each other: 6 steps of 16 per epoch


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """A few hundred generated Fashion-MNIST-shaped examples with learnable classes."""
    root = write_synthetic_fashion_mnist(tmp_path_factory.mktemp('fmnist'), n_train=320, n_test=100, seed=0)
    return load_fashion_mnist(root, download=False, verify=False)


def iters(data, batch_size=16, seed=0, n=None):
    X, y = to_nd(data.train_images[:n], data.train_labels[:n])
    X_test, y_test = to_nd(data.test_images, data.test_labels)
    return DataIter(X, y, batch_size, shuffle=True, seed=seed), DataIter(X_test, y_test, 64, shuffle=False)


def config(**kwargs):
    return TrainConfig(**dict(dict(epochs=2, batch_size=16, lr=0.02, momentum=0.9, quiet=True), **kwargs))


def run(data, cfg, out=None, resume=None, train_iter=None, n=None):
    """Build the net from cfg's seed exactly as a run does, then fit on the first ``n`` examples."""
    mx.random.seed(cfg.seed)
    net = build_net(cfg.norm, cfg.style, cfg.dense_norm)
    train, test = iters(data, cfg.batch_size, cfg.seed, n)
    history = fit(net, train_iter or train, test, cfg, out=out, resume=resume)
    return history, net


def without_timing(history):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


def assert_same_params(a, b):
    pa, pb = named_parameters(a), named_parameters(b)
    assert list(pa) == list(pb)
    for name in pa:
        np.testing.assert_array_equal(pa[name].data().asnumpy(), pb[name].data().asnumpy(), err_msg=name)


# --- the optimizers ------------------------------------------------------------------------------------

def test_sgd_update_is_the_formula():
    w, g = nd.random.normal(shape=(5, 3)), nd.random.normal(shape=(5, 3))
    expected = w.asnumpy() - 0.3 * g.asnumpy() / 8
    sgd_update(w, g, lr=0.3, batch_size=8)
    np.testing.assert_allclose(w.asnumpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('momentum,wd', [(0.0, 0.01), (0.9, 0.0), (0.9, 0.005)])
def test_momentum_and_weight_decay_match_a_numpy_reference(momentum, wd):
    rng = np.random.RandomState(0)
    w_np = rng.normal(size=(4, 3)).astype(np.float32)
    v_np = np.zeros_like(w_np)
    w, v = nd.array(w_np), (nd.zeros(w_np.shape) if momentum else None)
    for _ in range(4):
        g_np = rng.normal(size=w_np.shape).astype(np.float32)
        step = g_np / 16 + wd * w_np
        if momentum:
            v_np = momentum * v_np - 0.1 * step
            w_np = w_np + v_np
        else:
            w_np = w_np - 0.1 * step
        sgd_update(w, nd.array(g_np), 0.1, 16, momentum, wd, v)
    np.testing.assert_allclose(w.asnumpy(), w_np, rtol=1e-5, atol=1e-6)


def one_step(net, optimizer, X, y):
    with autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y)
    loss.backward()
    optimizer.step(X.shape[0])


@pytest.mark.parametrize('kind', ['sgd', 'trainer'])
def test_optimizers_never_touch_running_statistics(kind):
    net = lenet('scratch', dense_norm=True)
    params = named_parameters(net)
    assert not [n for n in trainable(params) if 'running' in n]
    opt = make_optimizer(kind, params, lr=0.5, momentum=0.9, weight_decay=0.1)
    X, y = nd.random.uniform(shape=(8, 1, 28, 28)), nd.array(np.arange(8) % 10)
    with autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y)
    loss.backward()
    stats = {n: p.data().asnumpy() for n, p in params.items() if 'running' in n}
    weights = params['conv1.weight'].data().asnumpy()
    opt.step(8)
    for n, v in stats.items():
        np.testing.assert_array_equal(params[n].data().asnumpy(), v, err_msg=n)
    assert not np.array_equal(params['conv1.weight'].data().asnumpy(), weights)


@pytest.mark.parametrize('momentum,wd', [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-3)])
def test_trainer_steps_like_the_hand_written_sgd(momentum, wd):
    nets = []
    for kind in ('sgd', 'trainer'):
        mx.random.seed(2)
        net = lenet('scratch')
        opt = make_optimizer(kind, named_parameters(net), 0.1, momentum, wd)
        for seed in (0, 1):                                       # two steps: the momentum state matters
            rng = np.random.RandomState(seed)
            one_step(net, opt, nd.array(rng.uniform(size=(16, 1, 28, 28))), nd.array(rng.randint(0, 10, 16)))
        nets.append(net)
    for (name, a), b in zip(named_parameters(nets[0]).items(), named_parameters(nets[1]).values()):
        np.testing.assert_allclose(a.data().asnumpy(), b.data().asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_cosine_schedule_and_set_learning_rate():
    assert cosine_lr(0.1, 0, 100) == 0.1
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert LR_SCHEDULES['constant'](0.1, 70, 100) == 0.1
    for kind in ('sgd', 'trainer'):
        opt = make_optimizer(kind, named_parameters(lenet('none')), 0.1)
        opt.set_learning_rate(0.025)
        assert opt.lr == 0.025


def test_sgd_states_round_trip(tmp_path):
    net = lenet('none')
    opt = SGD(named_parameters(net), 0.1, momentum=0.9)
    one_step(net, opt, nd.random.uniform(shape=(4, 1, 28, 28)), nd.array([1, 2, 3, 4]))
    opt.save_states(str(tmp_path / 's'))
    other = SGD(named_parameters(net), 0.1, momentum=0.9)
    other.load_states(str(tmp_path / 's'))
    for name, v in opt.velocity.items():
        assert np.abs(v.asnumpy()).sum() > 0
        np.testing.assert_array_equal(other.velocity[name].asnumpy(), v.asnumpy())
    with pytest.raises(ValueError, match='optimizer states'):
        SGD(named_parameters(lenet('scratch')), 0.1, momentum=0.9).load_states(str(tmp_path / 's'))
    assert isinstance(make_optimizer('trainer', named_parameters(net), 0.1), TrainerSGD)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, trainer; got 'adam'"):
        make_optimizer('adam', named_parameters(net), 0.1)


# --- the loop ------------------------------------------------------------------------------------------

def test_evaluate_counts_every_example_once(data):
    net = lenet('scratch')
    X, y = to_nd(data.test_images, data.test_labels)
    result = evaluate(net, DataIter(X, y, 64, shuffle=False))   # 100 = 64 + 36: the last batch is smaller
    scores = net(X)
    np.testing.assert_allclose(result['acc'], (scores.argmax(axis=1) == y).mean().asscalar(), rtol=1e-6)
    loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(scores, y).mean().asscalar()
    np.testing.assert_allclose(result['loss'], loss, rtol=1e-5)
    assert result['n'] == 100


@pytest.mark.parametrize('style', ['gluon', 'raw'])
def test_short_run_lowers_the_loss_and_beats_chance(data, style):
    history, _ = run(data, config(epochs=3, style=style))
    assert [m['epoch'] for m in history] == [1, 2, 3]
    assert set(history[0]) == set(METRICS)
    assert [m['lr'] for m in history] == pytest.approx([0.02, 0.015, 0.005])   # cosine, per step: epoch starts
    assert history[-1]['train_loss'] < 0.7 * history[0]['train_loss']
    assert history[-1]['test_acc'] > 0.5                          # chance is 0.1


def test_the_same_seed_gives_the_same_run(data):
    a, net_a = run(data, config(optimizer='trainer'), n=SMALL)
    b, net_b = run(data, config(optimizer='trainer'), n=SMALL)
    assert without_timing(a) == without_timing(b)
    assert_same_params(net_a, net_b)
    c, _ = run(data, config(optimizer='trainer', seed=1), n=SMALL)
    assert without_timing(c) != without_timing(a)


@pytest.mark.parametrize('kind', ['sgd', 'trainer'])
def test_resume_at_an_epoch_boundary_equals_the_uninterrupted_run(data, tmp_path, kind):
    full, net_full = run(data, config(epochs=3, optimizer=kind), n=SMALL)
    train, _ = iters(data, n=SMALL)
    with pytest.raises(TrainingInterrupted, match='interrupted after epoch 2: saved to'):   # Ctrl-C in its last step
        run(data, config(epochs=3, optimizer=kind), out=str(tmp_path), n=SMALL,
            train_iter=InterruptAt(train, 1, len(train) - 1))
    state = ckpt.read_state(str(tmp_path))
    assert (state['epoch'], state['step'], len(state['history'])) == (2, 0, 2)
    resumed, net_resumed = run(data, config(epochs=3, optimizer=kind), resume=str(tmp_path / 'checkpoint'),
                               n=SMALL)
    assert without_timing(resumed) == without_timing(full)
    assert_same_params(net_resumed, net_full)


class InterruptAt:
    """A DataIter that sends this process SIGINT (a Ctrl-C) when batch ``step`` of epoch ``epoch`` is taken."""

    def __init__(self, it, epoch, step):
        self.it, self.at = it, (epoch, step)

    def __len__(self):
        return len(self.it)

    def epoch(self, e):
        for i, b in enumerate(self.it.epoch(e)):
            if (e, i) == self.at:
                os.kill(os.getpid(), signal.SIGINT)
            yield b


def test_ctrl_c_saves_mid_epoch_and_resume_equals_the_uninterrupted_run(data, tmp_path):
    cfg = config(epochs=2, dense_norm=True)
    full, net_full = run(data, cfg, n=SMALL)
    train, _ = iters(data, cfg.batch_size, cfg.seed, SMALL)

    def before(signum, frame):               # whatever was there before: default, ignored (a background job)...
        raise AssertionError('the training loop did not catch the Ctrl-C')

    outer = signal.signal(signal.SIGINT, before)
    try:
        with pytest.raises(TrainingInterrupted, match='interrupted at epoch 2, step 4') as info:
            run(data, cfg, out=str(tmp_path), train_iter=InterruptAt(train, 1, 3), n=SMALL)
        assert signal.getsignal(signal.SIGINT) is before                     # the handler was put back
    finally:
        signal.signal(signal.SIGINT, outer)
    assert info.value.checkpoint == os.path.join(str(tmp_path), 'checkpoint')
    state = ckpt.read_state(str(tmp_path))
    assert (state['epoch'], state['step']) == (1, 4)
    resumed, net_resumed = run(data, cfg, resume=info.value.checkpoint, n=SMALL)
    assert without_timing(resumed) == without_timing(full)
    assert_same_params(net_resumed, net_full)


def test_huge_learning_rate_stops_with_a_clear_message(data, tmp_path):
    good = config(epochs=1)
    run(data, good, out=str(tmp_path), n=SMALL)
    saved = ckpt.read_state(str(tmp_path))
    bad = dataclasses.replace(good, epochs=2, lr=1e9)
    with pytest.raises(NonFiniteLossError, match=r'became (nan|inf) at epoch 2, step \d+.*try --lr 1e\+08') as e:
        run(data, bad, out=str(tmp_path), resume=str(tmp_path), n=SMALL)
    assert 'last good checkpoint is kept at' in str(e.value)
    assert ckpt.read_state(str(tmp_path)) == saved                 # not overwritten by the broken epoch
    with pytest.raises(NonFiniteLossError, match=r'at epoch 1, step \d+;.*No checkpoint was written'):
        run(data, config(lr=1e9), n=SMALL)


def test_checkpoint_files_and_the_gluon_batch_norm_twin(data, tmp_path):
    history, net = run(data, config(epochs=1), out=str(tmp_path))
    folder = tmp_path / 'checkpoint'
    assert sorted(os.listdir(folder)) == ['model.params', 'optimizer.states', 'state.json']
    state = json.loads((folder / 'state.json').read_text())
    assert state['config']['lr'] == 0.02 and state['history'] == history
    lines = (tmp_path / 'metrics.csv').read_text().splitlines()
    assert lines[0].split(',') == list(METRICS) and len(lines) == 2
    twin = LeNet('gluon')
    twin.load_parameters(str(folder / 'model.params'))
    _, test = iters(data)
    assert abs(evaluate(twin, test)['acc'] - history[-1]['test_acc']) <= 0.02
    again = build_net('scratch')
    ckpt.load_checkpoint(str(tmp_path), again)
    assert_same_params(again, net)
    with pytest.raises(ValueError, match=r"does not fit this network: missing \['bn3.beta'"):
        ckpt.load_params(build_net('scratch', dense_norm=True), str(folder / 'model.params'))
    with pytest.raises(ValueError, match='is not a checkpoint'):
        ckpt.find_checkpoint(str(tmp_path / 'nowhere'))
