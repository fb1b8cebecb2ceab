"""train.py --norm with every normalization of the LeNet's registry, on a few generated images."""
import csv
import importlib.util
import math
from pathlib import Path

import pytest

from bn_gluon.data import write_synthetic_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize('norm', ['renorm', 'layer', 'group', 'instance', 'lrn'])
def test_train_py_trains_with_the_norm(norm, train_cli, data_dir, tmp_path):
    out = tmp_path / 'run'
    assert train_cli.main(args(data_dir, '--norm', norm, '--out', out)) == 0
    with open(out / 'metrics.csv') as f:
        (row,) = list(csv.DictReader(f))
    assert math.isfinite(float(row['train_loss'])) and 0 <= float(row['test_acc']) <= 1
    assert (out / 'model.params').is_file()


@pytest.mark.parametrize('flags,message', [
    (['--norm', 'group', '--style', 'raw'], "norm 'group' needs Gluon blocks"),
    (['--norm', 'instance', '--dense-norm'], "norm 'instance' normalizes over the positions"),
])
def test_train_py_refuses_before_writing(flags, message, train_cli, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(args(data_dir, *flags, '--out', tmp_path / 'run'))
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'run').exists()
