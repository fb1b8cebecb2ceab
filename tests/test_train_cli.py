"""train.py end to end on generated data: the files a run writes, resume, eval, and flags it refuses."""
import csv
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from bn_gluon.data import write_synthetic_fashion_mnist
from bn_gluon.models import LeNet

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / 'train.py'
TIMING = ('examples_per_sec', 'train_seconds', 'seconds')


def cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    return subprocess.run([sys.executable, str(TRAIN), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return str(write_synthetic_fashion_mnist(tmp_path_factory.mktemp('fmnist'), n_train=320, n_test=100, seed=0))


def common(data_dir):
    # A constant rate, so a run extended by --resume --epochs N follows the same schedule as one of N epochs.
    return ['--data-dir', data_dir, '--no-verify', '--no-download', '--batch-size', 16, '--lr', 0.02,
            '--lr-schedule', 'constant']


@pytest.fixture(scope='module')
def first_run(data_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp('work')
    result = cli(*common(data_dir), '--epochs', 2, '--out', 'run', cwd=work)
    assert result.returncode == 0, result.stderr
    return work / 'run', result


@pytest.fixture(scope='module')
def train_main():
    spec = importlib.util.spec_from_file_location('train_cli', TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def rows(path):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def test_a_run_writes_every_file(first_run):
    out, result = first_run
    assert sorted(os.listdir(out)) == ['checkpoint', 'config.json', 'curves.png', 'metrics.csv', 'model.params']
    assert sorted(os.listdir(out / 'checkpoint')) == ['model.params', 'optimizer.states', 'state.json']
    assert (out / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    metrics = rows(out / 'metrics.csv')
    assert [m['epoch'] for m in metrics] == ['1', '2'] and float(metrics[-1]['test_acc']) > 0.3
    assert f"test accuracy  {float(metrics[-1]['test_acc']):.4f}" in result.stdout   # the summary
    assert str(out.name) in result.stdout and 'model.params' in result.stdout
    twin = LeNet('gluon')                                         # the gluon.nn.BatchNorm twin loads the file
    twin.load_parameters(str(out / 'model.params'))
    assert np.abs(twin.bn2.running_mean.data().asnumpy()).sum() > 0


def test_eval_reports_the_runs_test_accuracy(first_run, data_dir, train_main, capsys):
    out, _ = first_run
    files = sorted(os.listdir(out))
    assert train_main(['--eval', str(out), '--data-dir', data_dir, '--no-verify', '--no-download']) == 0
    acc = float(rows(out / 'metrics.csv')[-1]['test_acc'])
    assert f'test accuracy {acc:.4f}' in capsys.readouterr().out
    assert sorted(os.listdir(out)) == files                      # evaluation writes nothing
    with pytest.raises(SystemExit) as exit_:                      # a folder without a checkpoint
        train_main(['--eval', str(out.parent)])
    assert exit_.value.code == 2 and 'is not a checkpoint' in capsys.readouterr().err


def test_resumed_run_repeats_the_uninterrupted_one(first_run, data_dir, tmp_path, train_main, capsys,
                                                   monkeypatch):
    out, _ = first_run
    monkeypatch.chdir(tmp_path)
    assert train_main([*map(str, common(data_dir)), '--epochs', '1', '--out', 'b', '--quiet']) == 0
    assert capsys.readouterr().out == ''                          # --quiet
    resumed = cli('--resume', tmp_path / 'b' / 'checkpoint', '--epochs', 2, '--data-dir', data_dir, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert 'resuming at epoch 2' in resumed.stdout
    assert rows(tmp_path / 'b' / 'metrics.csv') == rows(out / 'metrics.csv')
    a, b = nd.load(str(out / 'model.params')), nd.load(str(tmp_path / 'b' / 'model.params'))
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy(), err_msg=name)
    with pytest.raises(SystemExit) as exit_:
        train_main(['--resume', 'b', '--lr', '0.5', '--epochs', '3'])
    assert exit_.value.code == 2 and "--lr 0.5 differs from the checkpoint's 0.02" in capsys.readouterr().err


def test_huge_learning_rate_fails_with_advice(data_dir, tmp_path, train_main, capsys):
    assert train_main(['--data-dir', data_dir, '--no-verify', '--epochs', '1', '--lr', '1e9', '--quiet',
                       '--out', str(tmp_path / 'x')]) == 1
    err = capsys.readouterr().err
    assert re.search(r'loss became (nan|inf) at epoch 1, step \d+;', err)
    assert 'try --lr 1e+08' in err and 'No checkpoint was written' in err


def test_a_bad_flag_in_a_real_process_exits_2_and_writes_nothing(tmp_path):
    result = cli('--epochs', -3, cwd=tmp_path)
    assert result.returncode == 2
    assert '--epochs must be an integer >= 1; got -3' in result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('args,message', [
    (['--epochs', '0'], '--epochs must be an integer >= 1; got 0'),
    (['--norm', 'batch'], "argument --norm: invalid choice: 'batch'"),
    (['--ctx', f'gpu:{mx.context.num_gpus()}'], 'MXNet sees'),
    (['--ctx', 'tpu'], "--ctx 'tpu' is not a device"),
    (['--lr', '0'], '--lr must be a number > 0'),
    (['--lr', '-0.1'], '--lr must be a number > 0'),
    (['--batch-size', '0'], '--batch-size must be an integer >= 2'),
    (['--momentum', '1.5'], '--momentum must be a number in [0, 1)'),
    (['--style', 'raw', '--norm', 'gluon'], "norm 'gluon' needs Gluon blocks"),
    (['--resume', 'missing'], "'missing' is not a checkpoint"),
    (['--eval', 'missing'], "eval checkpoint 'missing' does not exist"),
])
def test_bad_flags_fail_clearly_and_write_nothing(train_main, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        train_main(args + ['--out', 'run'])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_missing_data_fails_in_words_and_writes_nothing(train_main, tmp_path, monkeypatch, capsys):
    from bn_gluon.data import fashion_mnist
    for name in ('SYSTEM_DIR', 'PROJECT_DIR'):                    # no copy anywhere
        monkeypatch.setattr(fashion_mnist, name, tmp_path / 'nowhere')
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'nowhere'))
    monkeypatch.delenv('BN_GLUON_DATA', raising=False)
    monkeypatch.chdir(tmp_path)
    assert train_main(['--no-download', '--out', 'run']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: Fashion-MNIST was not found. Places searched:') and 'Traceback' not in err
    assert os.listdir(tmp_path) == []
