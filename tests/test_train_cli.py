"""train.py end to end on generated data: the files a run writes, resume, eval, and flags it refuses."""
import csv
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from bn_gluon.data import FILES, write_synthetic_fashion_mnist
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


# --- the data a run used, and files it cannot use ------------------------------------------------------

def sha1_of_content(folder):
    """{file name: SHA-1 of its decompressed content}, computed here independently of bn_gluon.data."""
    return {p.name: hashlib.sha1(gzip.decompress(p.read_bytes())).hexdigest()
            for p in sorted(Path(folder).iterdir(), key=lambda p: list(FILES.values()).index(p.name[:-3]))}


def test_the_summary_and_config_json_record_the_data_folder_and_files(first_run, data_dir):
    out, result = first_run
    with open(out / 'config.json') as f:
        recorded = json.load(f)['data']
    assert recorded == {'folder': str(Path(data_dir).resolve()), 'place': '--data-dir (root argument)',
                        'published': False, 'files': sha1_of_content(data_dir)}
    assert f'  data: {Path(data_dir).resolve()} [--data-dir (root argument)]: not the published' in result.stdout


def test_a_run_folder_without_the_data_entry_still_evaluates_and_resumes(first_run, data_dir, tmp_path,
                                                                          train_main, capsys):
    old = tmp_path / 'old'
    shutil.copytree(first_run[0], old)
    config = json.loads((old / 'config.json').read_text())
    del config['data']                                            # as runs were written before the entry
    (old / 'config.json').write_text(json.dumps(config, indent=1))
    flags = ['--data-dir', data_dir, '--no-verify', '--no-download']
    assert train_main(['--eval', str(old), *flags]) == 0
    assert train_main(['--resume', str(old), '--epochs', '3', '--quiet', *flags]) == 0
    assert [m['epoch'] for m in rows(old / 'metrics.csv')] == ['1', '2', '3']
    assert 'data' in json.loads((old / 'config.json').read_text())
    capsys.readouterr()


@pytest.mark.parametrize('how', ['--data-dir', 'BN_GLUON_DATA'])
def test_a_corrupt_file_in_the_named_folder_stops_the_run(data_dir, tmp_path, train_main, monkeypatch, capsys,
                                                          how):
    from bn_gluon.data import fashion_mnist
    named = tmp_path / 'named'
    shutil.copytree(data_dir, named)
    image_file = named / 'train-images-idx3-ubyte.gz'
    image_file.write_bytes(image_file.read_bytes()[:300])         # cut short
    monkeypatch.setattr(fashion_mnist, 'SYSTEM_DIR', Path(data_dir))   # a good copy elsewhere is not taken
    monkeypatch.delenv('BN_GLUON_DATA', raising=False)
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    args = ['--no-verify', '--no-download', '--epochs', '1', '--out', 'run']
    if how == '--data-dir':
        args += ['--data-dir', str(named)]
    else:
        monkeypatch.setenv('BN_GLUON_DATA', str(named))
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='skipping')   # no warning and another copy instead
        assert train_main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: {image_file}: not a valid gzip file') and 'Traceback' not in err
    assert 'used as given' in err
    assert os.listdir(work) == []                                 # no run folder


def damage(path, how):
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2] if how == 'truncated' else b'PK\x03\x04 a zip archive, not parameters')


@pytest.mark.parametrize('file,how,message', [
    ('model.params', 'truncated', 'is truncated or is not an MXNet parameter file'),
    ('model.params', 'foreign', 'is truncated or is not an MXNet parameter file'),
    ('optimizer.states', 'truncated', 'is truncated or is not an MXNet parameter file'),
    ('state.json', 'truncated', 'is truncated or not JSON'),
])
def test_resume_from_a_damaged_checkpoint_fails_in_words_and_writes_nothing(first_run, data_dir, tmp_path, file,
                                                                             how, message):
    run = tmp_path / 'run'
    shutil.copytree(first_run[0], run)
    damage(run / 'checkpoint' / file, how)
    before = {p: p.read_bytes() for p in run.rglob('*') if p.is_file()}
    result = cli('--resume', run, '--epochs', 3, '--data-dir', data_dir, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f'error: {run / "checkpoint" / file} {message}')
    assert 'Traceback' not in result.stderr and 'usage:' not in result.stderr
    assert {p: p.read_bytes() for p in run.rglob('*') if p.is_file()} == before   # config.json untouched too
    assert sorted(os.listdir(tmp_path)) == ['run']


@pytest.mark.parametrize('target', ['run folder', 'params file'])
@pytest.mark.parametrize('how', ['truncated', 'foreign'])
def test_eval_of_a_damaged_parameter_file_fails_in_words(first_run, data_dir, tmp_path, train_main, capsys,
                                                         target, how):
    run = tmp_path / 'run'
    shutil.copytree(first_run[0], run)
    params = run / 'checkpoint' / 'model.params' if target == 'run folder' else run / 'model.params'
    damage(params, how)
    assert train_main(['--eval', str(run if target == 'run folder' else params), '--data-dir', data_dir,
                       '--no-verify', '--no-download']) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: {params} is truncated or is not an MXNet parameter file') and 'Copy it' in err


def test_eval_of_another_networks_parameters_fails_in_words(first_run, data_dir, train_main, capsys):
    out, _ = first_run
    assert train_main(['--eval', str(out / 'model.params'), '--dense-norm', '--data-dir', data_dir,
                       '--no-verify', '--no-download']) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'model.params'} does not fit this network") and 'bn3' in err


def test_a_damaged_trainer_states_file_is_named(tmp_path):
    from bn_gluon import checkpoint as ckpt
    from bn_gluon.models import build_net, named_parameters
    from bn_gluon.optim import make_optimizer
    net = build_net('scratch')
    net(nd.zeros((2, 1, 28, 28)))
    optimizer = make_optimizer('trainer', named_parameters(net), 0.1, momentum=0.9)
    folder = ckpt.save_checkpoint(str(tmp_path / 'checkpoint'), net, optimizer, {'epoch': 1, 'config': {}})
    assert ckpt.find_checkpoint(folder) == folder
    ckpt.load_checkpoint(folder, build_net('scratch'), optimizer)
    damage(tmp_path / 'checkpoint' / 'optimizer.states', 'truncated')
    with pytest.raises(ckpt.CheckpointError, match='optimizer.states is truncated or holds no optimizer states'):
        ckpt.find_checkpoint(folder)
    with pytest.raises(ckpt.CheckpointError, match='optimizer.states is truncated'):
        ckpt.load_checkpoint(folder, build_net('scratch'), optimizer)


# --- --norm-position ------------------------------------------------------------------------------------

def test_norm_position_flag_reaches_the_net_and_its_checkpoint(data_dir, tmp_path, train_main, capsys):
    import argparse
    from bn_gluon.cli import add_config_flags
    from bn_gluon.data import DataIter, load_fashion_mnist, to_nd
    from bn_gluon.engine import evaluate
    from bn_gluon.experiment import make_net, resolve_config
    from bn_gluon.models import lenet
    flags = ['--data-dir', data_dir, '--no-verify', '--no-download']
    parser = add_config_flags(argparse.ArgumentParser())
    config = resolve_config(vars(parser.parse_args(['--norm-position', 'after_act'])))
    assert config.norm_position == 'after_act' and make_net(config, mx.cpu()).norm_position == 'after_act'
    out = tmp_path / 'after'
    assert train_main([*map(str, common(data_dir)), '--epochs', '1', '--quiet', '--norm-position', 'after_act',
                       '--out', str(out)]) == 0
    assert json.loads((out / 'config.json').read_text())['norm_position'] == 'after_act'
    acc = float(rows(out / 'metrics.csv')[-1]['test_acc'])
    data = load_fashion_mnist(data_dir, download=False, verify=False)
    test_iter = DataIter(*to_nd(data.test_images, data.test_labels), 1000, shuffle=False)
    nets = {}
    for position in ('before_act', 'after_act'):                  # the saved weights fit only their own order
        nets[position] = lenet('scratch', norm_position=position)
        nets[position].load_parameters(str(out / 'model.params'))
    assert evaluate(nets['after_act'], test_iter)['acc'] == pytest.approx(acc, abs=1e-6)
    X = test_iter.X[:100]
    assert nd.abs(nets['after_act'](X) - nets['before_act'](X)).max().asscalar() > 1e-2
    capsys.readouterr()
    assert train_main(['--eval', str(out), *flags]) == 0           # eval rebuilds the run's order
    assert f'test accuracy {acc:.4f}' in capsys.readouterr().out


def test_a_bad_norm_position_flag_fails_clearly_and_writes_nothing(train_main, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        train_main(['--norm-position', 'middle', '--out', 'run'])
    assert exit_.value.code == 2
    assert "argument --norm-position: invalid choice: 'middle' (choose from 'before_act', 'after_act')" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        train_main(['--norm-position', 'after_act', '--style', 'raw', '--out', 'run'])
    assert exit_.value.code == 2 and "--norm-position after_act needs Gluon blocks" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_a_run_folder_from_before_norm_position_evaluates_and_resumes(first_run, data_dir, tmp_path, train_main,
                                                                       capsys):
    old = tmp_path / 'old'
    shutil.copytree(first_run[0], old)
    for path, key in ((old / 'config.json', None), (old / 'checkpoint' / 'state.json', 'config')):
        saved = json.loads(path.read_text())
        del (saved[key] if key else saved)['norm_position']       # as runs were written before the field
        path.write_text(json.dumps(saved, indent=1))
    flags = ['--data-dir', data_dir, '--no-verify', '--no-download']
    assert train_main(['--eval', str(old), *flags]) == 0
    assert f"test accuracy {float(rows(old / 'metrics.csv')[-1]['test_acc']):.4f}" in capsys.readouterr().out
    assert train_main(['--resume', str(old), '--epochs', '3', '--quiet', *flags]) == 0
    assert [m['epoch'] for m in rows(old / 'metrics.csv')] == ['1', '2', '3']
    with pytest.raises(SystemExit) as exit_:                      # the order decides the numbers: not resumable
        train_main(['--resume', str(old), '--epochs', '4', '--norm-position', 'after_act', *flags])
    assert exit_.value.code == 2 and "--norm-position 'after_act' differs from the checkpoint's 'before_act'" in \
        capsys.readouterr().err
