"""Checkpoints: a folder with everything needed to evaluate a network or continue training it.

::

    checkpoint/
        model.params       parameters and running statistics, nd.save under save_parameters' names,
                           so gluon.nn.BatchNorm's twin net loads it with load_parameters
        optimizer.states   momentum buffers (hand-written SGD) or gluon.Trainer.save_states
        state.json         where training stands: next epoch, steps done in it, partial sums,
                           per-epoch history and the run's configuration

A new checkpoint is written beside the old one and then renamed over it, so an interruption while
saving leaves the previous checkpoint whole. A file that cannot be read (truncated, foreign, or for
another network) is a :class:`CheckpointError` naming it, raised before anything is loaded.
"""
import json
import os
import pickle
import shutil

from mxnet import nd
from mxnet.base import MXNetError

from .models import load_arrays, named_parameters

FORMAT = 1
PARAMS, OPTIMIZER, STATE = 'model.params', 'optimizer.states', 'state.json'


class CheckpointError(ValueError):
    """A parameter or checkpoint file that is missing, truncated, foreign or made for another network."""


def read_ndarrays(path):
    """``nd.load(path)``, with a missing, truncated or foreign file said in words (CheckpointError)."""
    if not os.path.isfile(path):
        raise CheckpointError(f'{path} does not exist; give the run folder, its checkpoint/ folder or the '
                              f'.params file that train.py wrote.')
    try:
        return nd.load(path)
    except MXNetError as e:
        reason = str(e).strip().splitlines()[-1].split('MXNetError: ', 1)[-1]   # its last line: the failed check
        raise CheckpointError(f'{path} is truncated or is not an MXNet parameter file (MXNet: {reason}). '
                              f'Copy it again from where it was saved, or give another run\'s file.') from None


def read_params(path):
    """The {name: NDArray} of a parameter file; CheckpointError names a missing, truncated or foreign file."""
    loaded = read_ndarrays(path)
    if not isinstance(loaded, dict):
        raise CheckpointError(f'{path} holds a list of arrays, not named parameters; give a file written by '
                              f'train.py or save_parameters.')
    return loaded


def save_params(net, path):
    """Write the network's parameters (running statistics included) under ``save_parameters`` names."""
    # the first device's copy: on several devices the copies are equal (running statistics reconciled)
    nd.save(path, {name: p.data(p.list_ctx()[0]) for name, p in named_parameters(net).items()})


def load_params(net, path):
    """Load a ``.params`` file written by :func:`save_params` or ``save_parameters`` into ``net``."""
    loaded = read_params(path)
    loaded = {k.split(':', 1)[-1]: v for k, v in loaded.items()}   # Module files prefix 'arg:' / 'aux:'
    try:
        load_arrays(net, loaded, source=path)
    except ValueError as e:                                        # names or shapes of another network
        raise CheckpointError(str(e)) from None


def save_checkpoint(folder, net, optimizer, state):
    """Write ``net``, ``optimizer`` and the JSON-able dict ``state`` into ``folder``, replacing it whole."""
    folder = os.path.normpath(folder)
    tmp, old = folder + '.tmp', folder + '.old'
    for path in (tmp, old):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(tmp)
    save_params(net, os.path.join(tmp, PARAMS))
    optimizer.save_states(os.path.join(tmp, OPTIMIZER))
    with open(os.path.join(tmp, STATE), 'w') as f:
        json.dump(dict(state, format=FORMAT), f, indent=1)
    if os.path.exists(folder):
        os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def find_checkpoint(path):
    """The checkpoint folder at ``path`` (itself, or ``path/checkpoint``), once its files are known readable.

    ValueError when ``path`` is no checkpoint at all; CheckpointError naming the file when one of its files
    is missing, truncated or foreign, so nothing is written for a run that could not resume.
    """
    folder = _locate(path)
    read_state(folder)
    read_params(os.path.join(folder, PARAMS))
    _check_optimizer_states(os.path.join(folder, OPTIMIZER))
    return folder


def _locate(path):
    for folder in (path, os.path.join(path, 'checkpoint')):
        if os.path.isfile(os.path.join(folder, STATE)):
            return folder
    raise ValueError(f'{path!r} is not a checkpoint: expected a folder with {STATE}, {PARAMS} and '
                     f'{OPTIMIZER} (or a run folder holding checkpoint/).')


def _check_optimizer_states(path):
    """Raise CheckpointError unless ``path`` reads as the hand-written SGD's or gluon.Trainer's states."""
    raw = b''
    if os.path.isfile(path):
        with open(path, 'rb') as f:
            raw = f.read()
    if not raw.startswith(b'\x80'):                       # pickles begin with their protocol opcode
        read_ndarrays(path)                                   # the hand-written SGD: nd.save of a dict
        return
    try:
        pickle.loads(raw)                                     # gluon.Trainer.save_states
    except Exception as e:                                    # a damaged pickle fails in many ways
        raise CheckpointError(f'{path} is truncated or holds no optimizer states ({type(e).__name__}: {e}). '
                              f'Copy the checkpoint folder again, or start the run afresh without '
                              f'--resume.') from None


def read_state(path):
    """The ``state.json`` of the checkpoint at ``path`` (a checkpoint or run folder)."""
    file = os.path.join(_locate(path), STATE)
    try:
        with open(file) as f:
            state = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f'{file} is truncated or not JSON ({e}); copy the checkpoint folder again.') from None
    if state.get('format') != FORMAT:
        raise CheckpointError(f'{path}: checkpoint format {state.get("format")!r}, this version reads {FORMAT}.')
    return state


def load_checkpoint(path, net, optimizer=None):
    """Load parameters (and optimizer states when ``optimizer`` is given) from ``path``; return the state."""
    folder = _locate(path)
    state = read_state(folder)
    states = os.path.join(folder, OPTIMIZER)
    if optimizer is not None:
        _check_optimizer_states(states)                       # before anything is loaded
    load_params(net, os.path.join(folder, PARAMS))
    if optimizer is not None:
        try:
            optimizer.load_states(states)
        except ValueError as e:                               # states of another network or momentum
            raise CheckpointError(str(e)) from None
    return state
