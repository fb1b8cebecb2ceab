"""Checkpoints: a folder with everything needed to evaluate a network or continue training it.

::

    checkpoint/
        model.params       parameters and running statistics, nd.save under save_parameters' names,
                           so gluon.nn.BatchNorm's twin net loads it with load_parameters
        optimizer.states   momentum buffers (hand-written SGD) or gluon.Trainer.save_states
        state.json         where training stands: next epoch, steps done in it, partial sums,
                           per-epoch history and the run's configuration

A new checkpoint is written beside the old one and then renamed over it, so an interruption while
saving leaves the previous checkpoint whole.
"""
import json
import os
import shutil

from mxnet import nd

from .models import named_parameters

FORMAT = 1
PARAMS, OPTIMIZER, STATE = 'model.params', 'optimizer.states', 'state.json'


def save_params(net, path):
    """Write the network's parameters (running statistics included) under ``save_parameters`` names."""
    # the first device's copy: on several devices the copies are equal (running statistics reconciled)
    nd.save(path, {name: p.data(p.list_ctx()[0]) for name, p in named_parameters(net).items()})


def load_params(net, path):
    """Load a ``.params`` file written by :func:`save_params` or ``save_parameters`` into ``net``."""
    loaded = nd.load(path)
    if not isinstance(loaded, dict):
        raise ValueError(f'{path} holds a list of arrays, not named parameters.')
    loaded = {k.split(':', 1)[-1]: v for k, v in loaded.items()}   # Module files prefix 'arg:' / 'aux:'
    params = named_parameters(net)
    missing, unexpected = sorted(set(params) - set(loaded)), sorted(set(loaded) - set(params))
    if missing or unexpected:
        raise ValueError(f'{path} does not fit this network: missing {missing}, unexpected {unexpected}. '
                         f'Build the network with the norm and dense_norm the file was saved with.')
    for name, p in params.items():
        if p.shape != loaded[name].shape:
            raise ValueError(f'{path}: {name} has shape {loaded[name].shape}, the network needs {p.shape}.')
    for name, p in params.items():
        p.set_data(loaded[name])


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
    """The checkpoint folder at ``path``: the folder itself, or ``path/checkpoint`` for a run folder."""
    for folder in (path, os.path.join(path, 'checkpoint')):
        if os.path.isfile(os.path.join(folder, STATE)):
            return folder
    raise ValueError(f'{path!r} is not a checkpoint: expected a folder with {STATE}, {PARAMS} and '
                     f'{OPTIMIZER} (or a run folder holding checkpoint/).')


def read_state(path):
    """The ``state.json`` of the checkpoint at ``path`` (a checkpoint or run folder)."""
    with open(os.path.join(find_checkpoint(path), STATE)) as f:
        state = json.load(f)
    if state.get('format') != FORMAT:
        raise ValueError(f'{path}: checkpoint format {state.get("format")!r}, this version reads {FORMAT}.')
    return state


def load_checkpoint(path, net, optimizer=None):
    """Load parameters (and optimizer states when ``optimizer`` is given) from ``path``; return the state."""
    folder = find_checkpoint(path)
    state = read_state(folder)
    load_params(net, os.path.join(folder, PARAMS))
    if optimizer is not None:
        optimizer.load_states(os.path.join(folder, OPTIMIZER))
    return state
