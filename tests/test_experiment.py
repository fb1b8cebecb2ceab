"""bn_gluon.experiment: the configuration of a run, of a resumed run and of an evaluation, before any file is written."""
import dataclasses
import os

import pytest

from bn_gluon import checkpoint as ckpt
from bn_gluon.config import TrainConfig
from bn_gluon.experiment import RESUMABLE, check_out_dir, resolve_config
from bn_gluon.models import build_net, named_parameters
from bn_gluon.optim import make_optimizer


@pytest.fixture
def run_folder(tmp_path):
    """A run folder with a checkpoint of a run made with lr 0.05 and dense_norm, one epoch done."""
    saved = TrainConfig(lr=0.05, dense_norm=True, epochs=2, out=str(tmp_path / 'run'))
    net = build_net('scratch', dense_norm=True)
    state = {'epoch': 1, 'step': 0, 'history': [], 'config': saved.to_dict()}
    ckpt.save_checkpoint(str(tmp_path / 'run' / 'checkpoint'), net,
                         make_optimizer('sgd', named_parameters(net), 0.05), state)
    return tmp_path / 'run', saved


def test_a_new_run_takes_the_flags_given_and_the_defaults():
    config = resolve_config({'lr': 0.3, 'norm': 'gluon'})
    assert config == dataclasses.replace(TrainConfig(), lr=0.3, norm='gluon')


def test_a_resumed_run_keeps_the_checkpoints_settings_and_writes_into_its_run_folder(run_folder):
    folder, saved = run_folder
    config = resolve_config({'resume': str(folder), 'epochs': 4})
    assert (config.lr, config.dense_norm, config.epochs) == (0.05, True, 4)   # saved, saved, given
    assert config.resume == os.path.join(str(folder), 'checkpoint')
    assert config.out == str(folder) and config.quiet == TrainConfig.quiet
    elsewhere = resolve_config({'resume': str(folder / 'checkpoint'), 'out': 'other'})
    assert elsewhere.out == 'other' and elsewhere.epochs == saved.epochs


def test_a_resumed_run_refuses_a_setting_that_decides_its_numbers(run_folder):
    folder, _ = run_folder
    with pytest.raises(ValueError, match=r"--lr 0\.5 differs from the checkpoint's 0\.05; .*Only epochs, quiet"):
        resolve_config({'resume': str(folder), 'lr': 0.5})
    assert 'lr' not in RESUMABLE and 'epochs' in RESUMABLE


def test_unknown_fields_and_a_folder_without_a_checkpoint_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown configuration fields \['colour'\]"):
        resolve_config({'colour': 'red'})
    with pytest.raises(ValueError, match='is not a checkpoint'):
        resolve_config({'eval': str(tmp_path)})
    with pytest.raises(ValueError, match='is not a checkpoint'):
        resolve_config({'resume': str(tmp_path)})


def test_a_new_run_is_not_written_over_an_old_one(run_folder, tmp_path):
    folder, saved = run_folder
    (folder / 'config.json').write_text('{}')
    with pytest.raises(ValueError, match=r'already holds a run \(config\.json\); give another --out, or continue'):
        check_out_dir(saved)
    check_out_dir(dataclasses.replace(saved, resume=str(folder / 'checkpoint')))   # its own folder: fine
    check_out_dir(dataclasses.replace(saved, out=str(tmp_path / 'fresh')))
