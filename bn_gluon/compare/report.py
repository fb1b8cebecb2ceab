"""Run the comparison's sections and write ``report.md``, ``results.json`` and the figures into one folder.

Nothing is written before the configuration and the data are known to be good.
"""
import json
import os
import platform
import time
import warnings

import mxnet as mx
from mxnet import nd

from .. import plots
from ..config import parse_ctx
from ..experiment import load_data
from ..models import lenet
from . import markdown, semantics
from .runs import final_table, train_norms
from .speed import measure_speed
from .twin_training import train_lenet_twins
from .twins import RESNETS, compare_resnet, distances_to_float64, interchange

SECTIONS = ('semantics', 'twins', 'runs', 'speed', 'resnet')
RENAMED_SECTIONS = {'lockstep': 'twins'}   # old name -> new, accepted with a FutureWarning for one release


def run_comparison(config, out, *, sections=SECTIONS, twin_steps=200, speed_rounds=5, resnet_steps=3,
                   train_limit=None, log=print, lockstep_steps=None):
    """Run ``sections`` with ``config``'s shared hyperparameters; write the report into ``out``.

    Parameters
    ----------
    config : TrainConfig
        Seed, batch size, lr, momentum, epochs, schedule, data location and device of every section.
    out : str
        Output folder (created): report.md, results.json and compare-*.png.
    sections : sequence of str
        Any of ``SECTIONS``; the interchange check runs with 'runs' (it needs a trained network).
    twin_steps, speed_rounds, resnet_steps : int
        Steps of twin training; interleaved rounds of the speed measurement; SGD steps of the ResNets.
    train_limit : int or None
        Train on the first ``train_limit`` training images only (the test set stays whole).
    lockstep_steps : int or None
        The old name of ``twin_steps`` (FutureWarning); it goes in the next release.
    """
    if lockstep_steps is not None:
        warnings.warn('lockstep_steps is now twin_steps; the old name goes in the next release.', FutureWarning,
                      stacklevel=2)
        twin_steps = lockstep_steps
    sections = renamed_sections(sections)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f'unknown sections {unknown}; choose from {", ".join(SECTIONS)}.')
    for name, value in (('twin_steps', twin_steps), ('speed_rounds', speed_rounds),
                        ('resnet_steps', resnet_steps)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be an integer >= 1; got {value!r}.')
    if train_limit is not None and (not isinstance(train_limit, int) or train_limit < config.batch_size):
        raise ValueError(f'train_limit must be None or an integer >= the batch size {config.batch_size}; '
                         f'got {train_limit!r}.')
    config.validate()
    ctx = parse_ctx(config.ctx)
    data = load_data(config, ctx, train_limit=train_limit) if {'twins', 'runs'} & set(sections) else None
    os.makedirs(out, exist_ok=True)
    results = {'config': config.to_dict(), 'sections': list(sections), 'train_limit': train_limit,
               'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
                          f'MXNet {mx.__version__}, {ctx}', 'date': time.strftime('%Y-%m-%d %H:%M')}
    tic = time.time()
    if 'semantics' in sections:
        log('semantics: checking the running-statistics conventions')
        results['semantics'] = semantics.check_all()
    if 'twins' in sections:
        log(f'twins: {twin_steps} steps, scratch and gluon LeNets side by side')
        history = train_lenet_twins(config, data[0], twin_steps, ctx)
        yardstick = train_lenet_twins(config, data[0], twin_steps, ctx, float64=True)
        results['twins'] = dict(history, steps=twin_steps, yardstick=yardstick)
        plots.plot_twin_training(history, os.path.join(out, 'compare-twins.png'), yardstick)
    if 'runs' in sections:
        log(f'runs: {config.epochs} epochs each of norm none, scratch and gluon')
        histories, nets = train_norms(config, *data, ctx, log=log)
        results['runs'] = {'histories': histories, 'final': final_table(histories)}
        plots.plot_curves(histories, os.path.join(out, 'compare-curves.png'),
                          title='LeNet on Fashion-MNIST: no BN, scratch BN, gluon BN')
        results['interchange'] = _interchange(nets, data[1], ctx)
    if 'speed' in sections:
        log(f'speed: {speed_rounds} interleaved rounds')
        results['speed'] = measure_speed(config.batch_size, speed_rounds, ctx=ctx, log=log)
        plots.plot_speed(results['speed'], os.path.join(out, 'compare-speed.png'))
    if 'resnet' in sections:
        log(f'resnet: gluoncv twins, {resnet_steps} SGD steps each')
        results['resnet'] = []
        for name in RESNETS:
            results['resnet'] += [compare_resnet(name, resnet_steps, ctx=ctx),
                                  dict(compare_resnet(name, resnet_steps, ctx=ctx, float64=True),
                                       name=f'{name}: gluon float32 vs float64 (yardstick)')]
        results['resnet'] += [
            dict(compare_resnet(RESNETS[0], resnet_steps, ctx=ctx, hybridize=True), name=f'{RESNETS[0]}, hybridized'),
            dict(compare_resnet(RESNETS[1], resnet_steps, ctx=ctx, input_grad=False),
                 name=f'{RESNETS[1]}, no input gradient')]
        results['resnet_float64'] = {name: distances_to_float64(name, resnet_steps, ctx=ctx) for name in RESNETS}
        plots.plot_float64_distances(results['resnet_float64'], os.path.join(out, 'compare-float64.png'))
    results['seconds'] = time.time() - tic
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=float)
    with open(os.path.join(out, 'report.md'), 'w') as f:
        f.write(markdown.report(results))
    return results


def renamed_sections(sections):
    """``sections`` with old section names replaced by their new ones (FutureWarning for each old one)."""
    for old in set(sections) & set(RENAMED_SECTIONS):
        warnings.warn(f'section {old!r} is now {RENAMED_SECTIONS[old]!r}; the old name goes in the next release.',
                      FutureWarning, stacklevel=3)
    return [RENAMED_SECTIONS.get(s, s) for s in sections]


def _interchange(nets, test_iter, ctx):
    """Trained scratch LeNet -> gluon LeNet, trained gluon LeNet -> scratch LeNet, on the test images."""
    X = nd.concat(*[X for X, _ in test_iter], dim=0)
    dense_norm = nets['scratch'].dense_norm
    return {'scratch -> gluon': interchange(nets['scratch'], lenet('gluon', dense_norm, ctx=ctx), X),
            'gluon -> scratch': interchange(nets['gluon'], lenet('scratch', dense_norm, ctx=ctx), X)}
