"""Data parallelism through the training loop and train.py: --ctx cpu:0,cpu:1, --norm sync, --kvstore.

The loop on two CPU contexts with synchronized BN must train exactly like one device with the whole
batch; train.py must run it end to end, and a dist_sync run under the launcher must finish and write
the run's files from worker 0 alone. Every subprocess runs under a timeout.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from bn_gluon import parallel
from bn_gluon.config import TrainConfig, parse_ctxs
from bn_gluon.data import DataIter, write_synthetic_fashion_mnist
from bn_gluon.engine import fit
from bn_gluon.experiment import make_net
from bn_gluon.models import named_parameters

ROOT = Path(__file__).resolve().parents[1]
CTXS = [mx.cpu(0), mx.cpu(1)]


def small_config(**kwargs):
    return TrainConfig(**dict(dict(epochs=1, batch_size=16, lr=0.05, lr_schedule='constant', quiet=True,
                                   hybridize=False), **kwargs))


def small_data(n=64, seed=0):
    """n random (1, 28, 28) images of 10 classes; class c is brighter in row band c."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 10, n)
    X = rng.uniform(0, 0.5, (n, 1, 28, 28))
    for c in range(10):
        X[y == c, 0, 2 * c:2 * c + 4] += 0.5
    return mx.nd.array(X), mx.nd.array(y)


def trained(config, ctx, kv=None):
    X, y = small_data()
    net = make_net(config, ctx)
    history = fit(net, DataIter(X, y, config.batch_size, seed=0, drop_last=True), DataIter(X, y, 64), config, ctx,
                  kv=kv)
    return net, history


def copies(net):
    return {name: [d.asnumpy() for d in p.list_data()] for name, p in named_parameters(net).items()}


def test_sync_bn_on_two_devices_trains_like_one_device_with_the_whole_batch():
    one, h1 = trained(small_config(norm='scratch'), mx.cpu(0))
    two, h2 = trained(small_config(norm='sync'), CTXS)
    for name, (a, b) in copies(two).items():
        np.testing.assert_array_equal(a, b, err_msg=f'{name} differs between the devices')
        # Four steps at lr 0.05 grow float32 rounding (one device and two add their sums in other orders;
        # their gradients agree to about 1e-6 of their size) to about 3e-4 in conv1's weights.
        np.testing.assert_allclose(a, copies(one)[name][0], rtol=1e-3, atol=1e-3, err_msg=name)
    assert h2[0]['train_loss'] == pytest.approx(h1[0]['train_loss'], rel=1e-4)
    assert h2[0]['test_acc'] == pytest.approx(h1[0]['test_acc'])


def test_summing_through_a_local_kvstore_gives_what_summing_by_hand_gives():
    by_hand, _ = trained(small_config(norm='sync'), CTXS)
    kvstore, _ = trained(small_config(norm='sync'), CTXS, kv=parallel.create_kvstore('local'))
    for name, (a, b) in copies(kvstore).items():
        np.testing.assert_array_equal(a, b, err_msg=f'{name} differs between the devices')
        np.testing.assert_allclose(a, copies(by_hand)[name][0], rtol=1e-5, atol=1e-6, err_msg=name)


def test_plain_bn_on_two_devices_keeps_equal_weights_and_averages_the_running_statistics():
    one, _ = trained(small_config(norm='scratch'), mx.cpu(0))
    two, _ = trained(small_config(norm='scratch', hybridize=True), CTXS)
    for name, (a, b) in copies(two).items():   # reconciled after the epoch: every copy equal
        np.testing.assert_array_equal(a, b, err_msg=f'{name} differs between the devices')
    # normalized by halves of each batch, the weights drift from the whole-batch run
    assert np.abs(copies(two)['conv1.weight'][0] - copies(one)['conv1.weight'][0]).max() > 1e-5


def test_a_two_device_run_resumed_at_an_epoch_repeats_the_uninterrupted_run(tmp_path):
    X, y = small_data()
    run = lambda config, out, resume=None: fit(  # noqa: E731
        make_net(config, CTXS), DataIter(X, y, 16, seed=0, drop_last=True), DataIter(X, y, 64), config, CTXS,
        out=str(out), resume=resume)
    whole = run(small_config(epochs=2), tmp_path / 'whole')
    run(small_config(epochs=1), tmp_path / 'part')
    resumed = run(small_config(epochs=2), tmp_path / 'part', resume=str(tmp_path / 'part' / 'checkpoint'))
    timing = ('examples_per_sec', 'train_seconds', 'seconds')
    assert [{k: v for k, v in m.items() if k not in timing} for m in resumed] == \
        [{k: v for k, v in m.items() if k not in timing} for m in whole]


@pytest.mark.parametrize('kwargs, message', [
    (dict(ctx='cpu:0,cpu:0'), 'repeats a device'),
    (dict(ctx='cpu:0,tpu:1'), 'not a device'),
    (dict(ctx='cpu:0,cpu:1', style='raw'), '--style gluon --optimizer sgd'),
    (dict(ctx='cpu:0,cpu:1', optimizer='trainer'), '--style gluon --optimizer sgd'),
    (dict(ctx='cpu:0,cpu:1,cpu:2', batch_size=4), 'at least 2 per device'),
    (dict(kvstore='dist_async'), 'one of local'),
    (dict(kvstore='dist_sync'), 'python -m bn_gluon.launch'),
])
def test_bad_parallel_settings_are_refused_in_words(kwargs, message, monkeypatch):
    monkeypatch.delenv('DMLC_ROLE', raising=False)
    with pytest.raises(ValueError, match=message):
        small_config(**kwargs).validate()


def test_parse_ctxs():
    assert parse_ctxs('cpu:0, cpu:1') == CTXS
    assert parse_ctxs('cpu') == [mx.cpu(0)]


# ---- train.py in real processes ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return write_synthetic_fashion_mnist(tmp_path_factory.mktemp('fmnist'), n_train=256, n_test=100, seed=0)


def run(argv, cwd, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg', PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def train_flags(data_dir):
    return [ROOT / 'train.py', '--data-dir', data_dir, '--no-verify', '--no-download', '--batch-size', 16,
            '--epochs', 2, '--lr', 0.05]


def train_main():
    spec = importlib.util.spec_from_file_location('train_cli', ROOT / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_train_py_on_two_contexts_with_sync_bn_writes_a_run_that_evaluates(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                     # in this process: one MXNet start-up less
    main = train_main()
    assert main([str(a) for a in train_flags(data_dir)[1:]] + ['--ctx', 'cpu:0,cpu:1', '--norm', 'sync',
                                                              '--epochs', '1', '--out', 'run']) == 0
    assert 'on cpu(0), cpu(1)' in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / 'run')) == ['checkpoint', 'config.json', 'curves.png', 'metrics.csv',
                                                    'model.params']
    assert main(['--eval', 'run', '--data-dir', str(data_dir), '--no-verify', '--no-download']) == 0
    out = capsys.readouterr().out
    assert 'norm sync' in out and 'test accuracy' in out


@pytest.mark.distributed
def test_train_py_with_dist_sync_under_the_launcher_trains_and_worker_0_writes_the_run(data_dir, tmp_path):
    result = run(['-m', 'bn_gluon.launch', '-n', '2', '--timeout', '200', '--', sys.executable]
                 + train_flags(data_dir) + ['--kvstore', 'dist_sync', '--out', 'run'], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'x 2 workers (dist_sync)' in result.stdout
    assert result.stdout.count('done: 2 epochs') == 1                  # worker 1 writes and prints nothing
    assert os.listdir(tmp_path) == ['run']
    with open(tmp_path / 'run' / 'metrics.csv') as f:
        last = f.read().splitlines()[-1].split(',')
    assert float(last[5]) > 0.5                                          # test accuracy of 10 classes
