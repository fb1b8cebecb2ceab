"""Folding the batch norms of whole networks: Gluon containers, the LeNet, and the raw LeNet's dict.

The math and the rules are in the package docstring (:mod:`bn_gluon.fold`).
"""
import copy
import warnings

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn
from mxnet.gluon.block import _BlockScope

from ..layers import BatchNorm as ScratchBatchNorm
from ..models import LAYERS, LeNet, RawLeNet
from ..functional import inference_affine
from .affine import fold_layer, fold_weights, scale_shift_from, why_not_foldable

BATCH_NORMS = (ScratchBatchNorm, nn.BatchNorm, nn.BatchNormReLU)
CONTAINERS = (nn.HybridSequential, nn.Sequential)
LENET_PAIRS = (('conv1', 'bn1'), ('conv2', 'bn2'), ('dense1', 'bn3'))   # back to back in LeNet.hybrid_forward


class FoldWarning(UserWarning):
    """A batch norm was kept as a ScaleShift layer (exact, but not folded away)."""


def fold_batch_norm(net, strict=False):
    """A new inference network equal to ``net`` at inference, with its batch norms folded away.

    ``net`` is not modified. The result is not hybridized (call ``hybridize()`` on it) and is meant for
    inference only: it computes what ``net`` computes outside ``autograd.record()``.

    Parameters
    ----------
    net : Block or RawLeNet
        A HybridSequential/Sequential (nested ones too), a :class:`~bn_gluon.models.LeNet`, a RawLeNet,
        or a block with no batch norm inside (copied). Its parameters must be initialized.
    strict : bool
        Raise ValueError for a batch norm that cannot be folded, instead of keeping it as ScaleShift.
    """
    if isinstance(net, RawLeNet):
        ctx = next(iter(net.parameters.values())).list_ctx()[0]
        return RawLeNet(fold_raw_params(net.params), ctx)
    if not isinstance(net, gluon.Block):
        raise TypeError(f'fold_batch_norm needs a gluon Block or a RawLeNet; got {type(net).__name__}.')
    for name, p in net.collect_params().items():
        if p._data is None:
            raise ValueError(f'parameter {name} is not initialized (shape {p.shape}); initialize the '
                             f'network and run it once on an example batch before folding.')
    return _fold_block(net, strict)


def _fold_block(block, strict):
    if isinstance(block, CONTAINERS):
        return _fold_container(block, strict)
    if isinstance(block, BATCH_NORMS):
        new = nn.HybridSequential()
        with new.name_scope():
            return _keep(block, None, strict, new)
    if isinstance(block, LeNet):
        return _fold_lenet(block)
    inner = [b.name for b in _descendants(block) if isinstance(b, BATCH_NORMS)]
    if inner:
        raise TypeError(f'{block.name} ({type(block).__name__}) wires its children in its own forward, so '
                        f'which layer feeds {", ".join(inner)} is unknown. Build it from HybridSequential/'
                        f'Sequential blocks, or fold pairs yourself with bn_gluon.fold.fold_layer.')
    return _clone(block)


def _fold_container(seq, strict):
    """Walk the children in order; a conv/dense followed by a foldable batch norm becomes one layer."""
    new = type(seq)()
    children = list(seq._children.values())
    with new.name_scope():
        i = 0
        while i < len(children):
            block, nxt = children[i], children[i + 1] if i + 1 < len(children) else None
            if isinstance(nxt, BATCH_NORMS) and why_not_foldable(block, nxt) is None:
                new.add(fold_layer(block, nxt))
                if isinstance(nxt, nn.BatchNormReLU):
                    new.add(nn.Activation('relu'))
                i += 2
                continue
            if isinstance(block, BATCH_NORMS):
                _keep(block, children[i - 1] if i else None, strict, new)
            else:
                new.add(_fold_block(block, strict))
            i += 1
    return new


def _keep(bn, before, strict, new):
    """Add ``bn`` to ``new`` as a ScaleShift (and its ReLU), or refuse when ``strict``; in new's name scope."""
    message = f'batch norm {bn.name} is not folded: {why_not_foldable(before, bn)}'
    if strict:
        raise ValueError(message + '. With strict=False it is kept as an exact ScaleShift layer.')
    warnings.warn(message + '; kept as an exact ScaleShift layer.', FoldWarning, stacklevel=4)
    new.add(scale_shift_from(bn))
    if isinstance(bn, nn.BatchNormReLU):
        new.add(nn.Activation('relu'))
    return new


def _fold_lenet(net):
    """The LeNet without normalization (``norm='none'``) holding the folded weights."""
    norms = {bn: getattr(net, bn) for _, bn in LENET_PAIRS if getattr(net, bn) is not None}
    if not norms:
        return _clone(net)
    if net.norm_position != 'before_act':
        raise ValueError(f'LeNet {net.name} normalizes after each activation (norm_position '
                         f'{net.norm_position!r}): a batch norm folds only into the convolution or dense layer '
                         f'right before it, and here an activation stands between them.')
    others = [f'{k} ({type(b).__name__})' for k, b in norms.items() if not isinstance(b, BATCH_NORMS)]
    if others:
        raise TypeError(f'LeNet {net.name} normalizes with {", ".join(others)}, which is not a batch norm and '
                        f'has no fixed affine map at inference; only batch norms can be folded.')
    folded = LeNet('none', dense_norm=False, classes=net.dense2.weight.shape[0], act=net.act)
    ctx = net.conv1.weight.list_ctx()
    folded.initialize(mx.init.Zero(), ctx=ctx)
    for layer, bn in LENET_PAIRS + (('dense2', None),):
        src, norm = getattr(net, layer), getattr(net, bn) if bn else None
        if norm is not None:
            src = fold_layer(src, norm)
        dst = getattr(folded, layer)
        dst.weight.set_data(src.weight.data())
        dst.bias.set_data(src.bias.data())
    return folded


def fold_raw_params(params, eps=1e-5):
    """Fold the raw LeNet's parameter dict: a new dict without ``bn*`` entries.

    It has the names and shapes of ``init_raw_lenet('none')``, so ``raw_lenet_forward(folded, X,
    training=False)`` (which skips a normalization whose gamma is absent) equals the original at
    inference. ``eps`` must be the one the forward used (``raw_lenet_forward``'s default, 1e-5).
    """
    layers = {name.rsplit('.', 1)[0] for name in params}
    unknown = sorted(layers - set(LAYERS))
    if unknown:
        raise ValueError(f'unknown layers {unknown} in the raw parameters; expected names like '
                         f'"conv1.weight" or "bn1.running_mean" for the layers {LAYERS}.')
    folded = {}
    for before, layer in zip((None,) + LAYERS, LAYERS):
        if f'{layer}.weight' in params:
            folded[f'{layer}.weight'] = params[f'{layer}.weight'].copy()
            folded[f'{layer}.bias'] = params[f'{layer}.bias'].copy()
        elif layer in layers:                    # a normalization: folded into the layer before it
            if f'{before}.weight' not in folded:
                raise ValueError(f'{layer} has no conv or dense layer before it to fold into.')
            P = {k: params[f'{layer}.{k}'].asnumpy().astype(np.float64)
                 for k in ('gamma', 'beta', 'running_mean', 'running_var')}
            s, t = inference_affine(P['gamma'], P['beta'], P['running_mean'], P['running_var'], eps)
            W, b = folded[f'{before}.weight'], folded[f'{before}.bias']
            Wf, bf = fold_weights(W.asnumpy(), b.asnumpy(), s, t)
            W[:], b[:] = Wf, bf                  # in place on the copies: same device and dtype
    return folded


def _descendants(block):
    for child in block._children.values():
        yield child
        yield from _descendants(child)


def _clone(block):
    """A deep copy of ``block`` sharing no arrays, no compiled graph and no Trainer with it."""
    memo = {}
    for b in (block, *_descendants(block)):
        # compiled graphs hold C handles that cannot be copied (the copy compiles its own), and a name
        # scope may point at the scope of whatever block was built last (the copy gets its own)
        for attr, empty in (('_cached_op', None), ('_cached_graph', ()), ('_cached_op_args', []), ('_scope', None)):
            if getattr(b, attr, None) is not None:
                memo[id(getattr(b, attr))] = empty
        for p in b._reg_params.values():
            if p._trainer is not None:
                memo[id(p._trainer)] = None
    new = copy.deepcopy(block, memo)
    for b in (new, *_descendants(new)):
        b._scope = _BlockScope(b)
    return new
