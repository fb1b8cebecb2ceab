"""Export a folded network as MXNet's symbol JSON + params, and do it for a run of train.py.

The exported pair loads without bn_gluon: ``gluon.SymbolBlock.imports(json, ['data'], params)``.
"""
import json
import os
import shutil
import tempfile
import warnings

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from .. import checkpoint as ckpt
from ..config import TrainConfig
from ..models import LeNet, RawLeNet, build_net, raw_to_gluon
from .folding import fold_batch_norm

# Operators a folded graph must not contain: MXNet's batch norms, and Custom (bn_gluon's hybridized layers).
NORM_OPS = ('BatchNorm', 'BatchNorm_v1', '_contrib_BatchNormWithReLU', '_contrib_SyncBatchNorm', 'Custom')
INPUT_SHAPE = (1, 1, 28, 28)        # one Fashion-MNIST image; the exported graph takes any batch size
CHECK_BATCH = 16                    # random images on which the folded and exported nets are compared
RUN_CONFIG = 'config.json'


def export_network(net, prefix, input_shape=INPUT_SHAPE, epoch=0):
    """Hybridize ``net``, run it once on zeros, write ``prefix-symbol.json`` and ``prefix-0000.params``."""
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    net.hybridize()
    net(nd.zeros(input_shape, ctx=ctx))           # builds the graph that export writes
    net.export(prefix, epoch)
    return f'{prefix}-symbol.json', f'{prefix}-{epoch:04d}.params'


def load_exported(symbol_file, params_file, ctx=None):
    """The exported network as a ``gluon.SymbolBlock`` whose input is called 'data'."""
    with warnings.catch_warnings():   # the input's dtype is only known at the first call: float32 then
        warnings.filterwarnings('ignore', message='Cannot decide type')
        return gluon.SymbolBlock.imports(symbol_file, ['data'], params_file, ctx=ctx or mx.cpu())


def graph_ops(symbol_file):
    """Operator names of an exported graph, in node order (variables left out)."""
    with open(symbol_file) as f:
        return [node['op'] for node in json.load(f)['nodes'] if node['op'] != 'null']


def find_run(path):
    """(params file, configuration dict) of a run folder, a checkpoint folder or a .params file."""
    if not os.path.exists(path):
        raise ValueError(f'checkpoint {path!r} does not exist; give a run folder of train.py (config.json and '
                         f'model.params), its checkpoint/ folder, or a .params file beside one of them.')
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    params = os.path.join(path, ckpt.PARAMS) if os.path.isdir(path) else path
    if os.path.isdir(path) and not os.path.isfile(params):
        if os.path.isfile(os.path.join(path, 'checkpoint', ckpt.STATE)):   # a run stopped before model.params
            folder, params = os.path.join(path, 'checkpoint'), os.path.join(path, 'checkpoint', ckpt.PARAMS)
        else:
            raise ValueError(f'{path!r} holds no {ckpt.PARAMS}; give a run folder of train.py, its '
                             f'checkpoint/ folder, or the .params file itself.')
    if os.path.isfile(os.path.join(folder, RUN_CONFIG)):
        try:
            with open(os.path.join(folder, RUN_CONFIG)) as f:
                config = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{os.path.join(folder, RUN_CONFIG)} is truncated or not JSON ({e}); copy the run '
                             f'folder again.') from None
        config.pop('data', None)          # which data files the run read: a record, not a setting
        return params, config
    if os.path.isfile(os.path.join(folder, ckpt.STATE)):
        return params, ckpt.read_state(folder)['config']
    raise ValueError(f'{folder!r} has no {RUN_CONFIG} or {ckpt.STATE}, so the network {params!r} belongs to '
                     f'(norm, style, dense_norm) is unknown; give the run folder, or copy the run\'s '
                     f'{RUN_CONFIG} beside the .params file.')


def load_run(path, ctx=None):
    """(net, TrainConfig, params file): the run's network rebuilt from its configuration and loaded."""
    params, config = find_run(path)
    try:
        config = TrainConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f'the configuration of {path!r} is not a train.py configuration: {e}') from None
    net = build_net(config.norm, config.style, config.dense_norm, ctx=ctx or mx.cpu(),
                    norm_position=config.norm_position)
    ckpt.read_params(params)              # a truncated or foreign file: CheckpointError naming it
    try:
        ckpt.load_params(net, params)
    except ValueError as e:
        raise ckpt.CheckpointError(f'the parameters do not match the network the configuration describes (norm '
                                   f'{config.norm}, style {config.style}, dense_norm {config.dense_norm}): '
                                   f'{e}') from None
    return net, config, params


def fold_for_export(net):
    """The folded network as a Gluon HybridBlock (a RawLeNet becomes the equivalent ``LeNet('none')``)."""
    folded = fold_batch_norm(net, strict=True)
    if not isinstance(folded, RawLeNet):
        return folded
    weight = folded.params['dense2.weight']
    gluon_net = LeNet('none', dense_norm=False, classes=weight.shape[0])
    gluon_net.initialize(mx.init.Zero(), ctx=weight.context)
    return raw_to_gluon(folded.params, gluon_net)


def fold_run(checkpoint, outdir, prefix='folded', seed=0):
    """Fold a trained run, check it, export it to ``outdir``; return the summary written to fold.json.

    Checks before anything is written: the folded network and the exported graph give the unfolded
    network's inference outputs on ``CHECK_BATCH`` random images, and the graph has no ``NORM_OPS``.
    """
    targets = [os.path.join(outdir, f) for f in (f'{prefix}-symbol.json', f'{prefix}-0000.params', 'fold.json')]
    if os.path.isfile(outdir):
        raise ValueError(f'OUTDIR {outdir!r} is a file; give a folder (it is created if missing).')
    existing = [t for t in targets if os.path.exists(t)]
    if existing:
        raise ValueError(f'{", ".join(existing)} already exist; give another OUTDIR or --prefix.')
    net, config, params = load_run(checkpoint)
    folded = fold_for_export(net)
    ctx = next(iter(folded.collect_params().values())).list_ctx()[0]
    X = nd.array(np.random.RandomState(seed).uniform(size=(CHECK_BATCH,) + INPUT_SHAPE[1:]), ctx=ctx)
    y_ref = net(X).asnumpy()                        # outside autograd.record(): inference mode
    tmp = tempfile.mkdtemp(prefix='bn_gluon_fold_')
    try:
        files = export_network(folded, os.path.join(tmp, prefix))
        ops = graph_ops(files[0])
        diffs = {'folded': np.abs(folded(X).asnumpy() - y_ref).max(),
                 'exported': np.abs(load_exported(*files, ctx=ctx)(X).asnumpy() - y_ref).max()}
        tolerance = 1e-4 * (1 + np.abs(y_ref).max())
        bad = [name for name, d in diffs.items() if not d <= tolerance]
        if bad or set(ops) & set(NORM_OPS):
            raise ValueError(f'the {" and ".join(bad) or "exported"} network does not match the original '
                             f'(max |diff| {diffs}, tolerance {tolerance:.2g}; operators {sorted(set(ops))}).')
        summary = {'checkpoint': checkpoint, 'params': params, 'norm': config.norm, 'style': config.style,
                   'dense_norm': config.dense_norm, 'symbol_file': targets[0], 'params_file': targets[1],
                   'input_name': 'data', 'input_shape': ['N', *INPUT_SHAPE[1:]], 'operators': sorted(set(ops)),
                   'max_abs_diff': {k: float(v) for k, v in diffs.items()}, 'check_images': CHECK_BATCH}
        os.makedirs(outdir, exist_ok=True)
        for src, dst in zip(files, targets):
            shutil.move(src, dst)
        with open(targets[2], 'w') as f:
            json.dump(summary, f, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
