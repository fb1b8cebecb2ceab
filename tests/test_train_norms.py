"""train.py --norm with every normalization of the LeNet's registry, on a few generated images.

Each run's saved network is loaded again and its first two norm layers are watched: what leaves them must
be standardized over the set that the norm names (batch norm: per channel over the batch; layer norm: per
example; instance norm: per (example, channel); group norm: per (example, group); LRN: nd.LRN's output).
A norm that did nothing, or the wrong one, fails here.
"""
import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from mxnet import autograd, nd

from bn_gluon.data import write_synthetic_fashion_mnist
from bn_gluon.models import LENET_RENORM_SCHEDULE, group_count, lenet

ROOT = Path(__file__).resolve().parents[1]
EPS = 1e-5
STEPS = 4                                  # 64 training images, batches of 16, one epoch
BATCH_NORMS = ('scratch', 'gluon', 'renorm')


@pytest.fixture(scope='module')
def train_cli():
    spec = importlib.util.spec_from_file_location('train_cli', ROOT / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return write_synthetic_fashion_mnist(tmp_path_factory.mktemp('fmnist'), n_train=64, n_test=32, seed=0)


def args(data_dir, *more):
    return ['--data-dir', str(data_dir), '--no-verify', '--no-download', '--epochs', '1', '--batch-size', '16',
            '--quiet', *map(str, more)]


def watch(net, X, training):
    """(input, output) of bn1 and bn2 for one forward pass, as float64 NumPy arrays."""
    seen = {}
    for name in ('bn1', 'bn2'):
        getattr(net, name).register_forward_hook(
            lambda blk, inp, out, name=name: seen.update({name: (inp[0].asnumpy(), out.asnumpy())}))
    with autograd.record(train_mode=training):
        net(X)
    return {k: (x.astype(np.float64), y.astype(np.float64)) for k, (x, y) in seen.items()}


def params(layer):
    """A layer's parameters by the last word of their names: gamma, beta, mean, var."""
    return {k.rsplit('_', 1)[-1]: p.data().asnumpy().astype(np.float64) for k, p in layer.collect_params().items()}


def assert_standardized(X, Y, gamma, beta, axes, what):
    """Undo the affine map, then mean 0 and variance v / (v + eps) over ``axes`` (v: the input's)."""
    X_hat = (Y - beta) / gamma
    np.testing.assert_allclose(X_hat.mean(axis=axes), 0, atol=1e-3, err_msg=f'{what}: mean')
    v = X.var(axis=axes)
    np.testing.assert_allclose(X_hat.var(axis=axes), v / (v + EPS), rtol=2e-3, err_msg=f'{what}: variance')


def check_norm(norm, net, X):
    saved = {name: params(getattr(net, name)) for name in ('bn1', 'bn2')}   # as the run left them
    inference = watch(net, X, False)
    training = watch(net, X, True)             # may move the running statistics: inference went first
    for name in ('bn1', 'bn2'):
        (X_in, Y), (X_inf, Y_inf) = training[name], inference[name]
        N, C = X_in.shape[:2]
        p = saved[name]
        per_channel = lambda v: v.reshape(1, C, 1, 1)
        if norm in BATCH_NORMS:                    # per channel over (N, H, W) with the batch's statistics
            assert_standardized(X_in, Y, per_channel(p['gamma']), per_channel(p['beta']), (0, 2, 3), name)
            mean, var = per_channel(p['mean']), per_channel(p['var'])       # running_mean, running_var
            assert np.abs(mean).max() > 1e-3, 'the running mean never moved from 0'
            expected = per_channel(p['gamma']) * (X_inf - mean) / np.sqrt(var + EPS) + per_channel(p['beta'])
            np.testing.assert_allclose(Y_inf, expected, rtol=1e-3, atol=1e-4, err_msg=f'{name}: inference')
        elif norm == 'layer':                      # per example over (C, H, W), one gamma and beta
            assert_standardized(X_in, Y, p['gamma'], p['beta'], (1, 2, 3), name)
            np.testing.assert_allclose(Y_inf, Y, rtol=1e-5, atol=1e-5)   # no running statistics
        elif norm == 'instance':                   # per (example, channel) over (H, W)
            assert_standardized(X_in, Y, per_channel(p['gamma']), per_channel(p['beta']), (2, 3), name)
        elif norm == 'group':                      # per (example, group of C / G channels) over (C / G, H, W)
            G = group_count(C)
            assert p['gamma'].shape == (G,)
            grouped = lambda A: A.reshape(N, G, C // G, *A.shape[2:])
            assert_standardized(grouped(X_in), grouped(Y), p['gamma'].reshape(1, G, 1, 1, 1),
                                p['beta'].reshape(1, G, 1, 1, 1), (2, 3, 4), name)
        elif norm == 'lrn':                        # AlexNet's constants; nd.LRN's alpha is divided by n
            expected = nd.LRN(nd.array(X_in), alpha=5 * 1e-4, beta=0.75, knorm=2.0, nsize=5).asnumpy()
            np.testing.assert_allclose(Y, expected, rtol=1e-4, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(Y_inf, Y, rtol=1e-5, atol=1e-6)
        else:
            raise AssertionError(f'no check for norm {norm!r}')


@pytest.mark.parametrize('norm', ['scratch', 'gluon', 'renorm', 'layer', 'group', 'instance', 'lrn'])
def test_train_py_trains_with_the_norm_and_it_normalizes_as_it_should(norm, train_cli, data_dir, tmp_path):
    out = tmp_path / 'run'
    assert train_cli.main(args(data_dir, '--norm', norm, '--out', out)) == 0
    with open(out / 'metrics.csv') as f:
        (row,) = list(csv.DictReader(f))
    assert math.isfinite(float(row['train_loss']))
    net = lenet(norm)
    net.load_parameters(str(out / 'model.params'))    # the run's network has this norm's layers, by name
    if norm == 'renorm':                              # still in the schedule's warm-up: r = 1, d = 0
        assert net.bn1.num_steps.data().asscalar() == STEPS and LENET_RENORM_SCHEDULE(STEPS) == (1.0, 0.0)
    X = nd.array(np.random.RandomState(1).uniform(size=(16, 1, 28, 28)))
    check_norm(norm, net, X)


def test_train_py_without_a_norm_has_no_norm_layers(train_cli, data_dir, tmp_path):
    out = tmp_path / 'run'
    assert train_cli.main(args(data_dir, '--norm', 'none', '--out', out)) == 0
    net = lenet('none')
    net.load_parameters(str(out / 'model.params'))
    assert net.bn1 is None and net.bn2 is None
    assert not [k for k in nd.load(str(out / 'model.params')) if k.startswith('bn')]


@pytest.mark.parametrize('flags,message', [
    (['--norm', 'group', '--style', 'raw'], "norm 'group' needs Gluon blocks"),
    (['--norm', 'instance', '--dense-norm'], "norm 'instance' normalizes over the positions"),
])
def test_train_py_refuses_before_writing(flags, message, train_cli, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(args(data_dir, *flags, '--out', tmp_path / 'run'))
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'run').exists()
