"""Folding batch norms into the layer before them, in Gluon networks and in the raw LeNet's dict.

The math and the rules are in the package docstring (:mod:`bn_gluon.fold`).
"""
import copy
import warnings

import mxnet as mx
import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.block import _BlockScope

from ..layers import BatchNorm as ScratchBatchNorm
from ..models import LAYERS, LeNet, RawLeNet

BATCH_NORMS = (ScratchBatchNorm, nn.BatchNorm, nn.BatchNormReLU)
CONVS = (nn.Conv1D, nn.Conv2D, nn.Conv3D)
CONTAINERS = (nn.HybridSequential, nn.Sequential)
LENET_PAIRS = (('conv1', 'bn1'), ('conv2', 'bn2'), ('dense1', 'bn3'))   # back to back in LeNet.hybrid_forward


class FoldWarning(UserWarning):
    """A batch norm was kept as a ScaleShift layer (exact, but not folded away)."""


class ScaleShift(nn.HybridBlock):
    """``y = scale * x + shift`` along ``axis``: a batch norm at inference with nothing to fold into.

    Parameters
    ----------
    channels : int
        Length of ``scale`` and ``shift``.
    axis : int
        The channel axis, as the batch norm's; negative counts from the end.
    """

    def __init__(self, channels, axis=1, **kwargs):
        super().__init__(**kwargs)
        self._axis = axis
        with self.name_scope():
            self.scale = self.params.get('scale', shape=(channels,), init='ones', grad_req='null',
                                         differentiable=False)
            self.shift = self.params.get('shift', shape=(channels,), init='zeros', grad_req='null',
                                         differentiable=False)

    def hybrid_forward(self, F, x, scale, shift):
        if self._axis < 0:       # (C, 1, .., 1) lines up with the channel axis from the right, whatever ndim
            shape = (-1,) + (1,) * (-self._axis - 1)
            return F.broadcast_add(F.broadcast_mul(x, scale.reshape(shape)), shift.reshape(shape))
        flat = x.reshape((0,) * (self._axis + 1) + (-1,))         # (N, C, H, W) -> (N, C, H*W) for axis 1
        y = F.broadcast_add(F.broadcast_mul(flat, scale.reshape((-1, 1))), shift.reshape((-1, 1)))
        return F.reshape_like(y, x)

    def __repr__(self):
        return f'{self.__class__.__name__}({self.scale.shape[0]}, axis={self._axis})'


def bn_scale_shift(bn):
    """The inference map of a batch norm layer as float64 vectors ``(s, t)``: ``y = s * x + t``."""
    mean, var, gamma, beta = (p.data().asnumpy().astype(np.float64)
                              for p in (bn.running_mean, bn.running_var, bn.gamma, bn.beta))
    k = bn._kwargs
    if isinstance(bn, ScratchBatchNorm):       # scale/center off: no gamma / no beta in batch_norm()
        gamma = gamma if k['scale'] else np.ones_like(gamma)
        beta = beta if k['center'] else np.zeros_like(beta)
    elif k['fix_gamma']:                       # gluon: scale=False fixes gamma at 1; beta is always added
        gamma = np.ones_like(gamma)
    s = gamma / np.sqrt(var + k['eps'])
    return s, beta - s * mean


def fold_weights(W, b, s, t):
    """``W' = s * W`` per output channel (axis 0) and ``b' = s * b + t``, in float64 numpy."""
    W = np.asarray(W, dtype=np.float64)
    s_col = s.reshape((-1,) + (1,) * (W.ndim - 1))            # (C,) -> (C, 1, 1, 1) for a conv filter bank
    return W * s_col, s * (0.0 if b is None else np.asarray(b, dtype=np.float64)) + t


def why_not_foldable(layer, bn):
    """None when ``bn`` folds into ``layer`` (the block just before it), else the reason in words."""
    axis = bn._kwargs.get('axis', 1)
    if layer is None:
        return 'no conv or dense layer directly precedes it in its container'
    if not isinstance(layer, CONVS + (nn.Dense,)):
        return f'it follows {layer.name} ({type(layer).__name__}), not a Conv1D/2D/3D or Dense layer'
    if layer.act is not None:
        return (f'{layer.name} applies activation {layer.act._act_type!r} before the batch norm, and a '
                f'nonlinearity cannot be folded through')
    if isinstance(layer, nn.Dense):
        ok = axis in (1, -1) if layer._flatten else axis == -1
        return None if ok else (f'{layer.name} puts its units on axis {1 if layer._flatten else -1} '
                                f'(flatten={layer._flatten}), the batch norm normalizes axis {axis}')
    layout = layer._kwargs['layout']
    if not layout.startswith('NC'):
        return f'{layer.name} has layout {layout}; only channel-first layouts (NCW, NCHW, NCDHW) are folded'
    if axis % len(layout) != 1:
        return f'the batch norm normalizes axis {axis}, not the channel axis 1 of {layer.name} ({layout})'
    return None


def fold_layer(layer, bn):
    """A new Conv/Dense layer computing ``bn(layer(x))`` at inference (see :func:`why_not_foldable`)."""
    reason = why_not_foldable(layer, bn)
    if reason:
        raise ValueError(f'cannot fold {bn.name} into {getattr(layer, "name", layer)}: {reason}.')
    weight = layer.weight.data()
    if weight.shape[0] != bn.gamma.shape[0]:
        raise ValueError(f'{layer.name} has {weight.shape[0]} output channels but {bn.name} has '
                         f'{bn.gamma.shape[0]}; the network is inconsistent.')
    bias = None if layer.bias is None else layer.bias.data().asnumpy()
    W, b = fold_weights(weight.asnumpy(), bias, *bn_scale_shift(bn))
    if isinstance(layer, nn.Dense):
        new = nn.Dense(layer._units, flatten=layer._flatten, dtype=weight.dtype, in_units=weight.shape[1])
    else:
        k = layer._kwargs
        new = type(layer)(k['num_filter'], k['kernel'], strides=k['stride'], padding=k['pad'],
                          dilation=k['dilate'], groups=k['num_group'], layout=k['layout'],
                          in_channels=weight.shape[1] * k['num_group'])
    _set(new, {'weight': W, 'bias': b}, layer.weight.list_ctx(), weight.dtype)
    return new


def scale_shift_from(bn):
    """The :class:`ScaleShift` layer equal to ``bn`` at inference."""
    s, t = bn_scale_shift(bn)
    new = ScaleShift(len(s), axis=bn._kwargs.get('axis', 1))
    _set(new, {'scale': s, 'shift': t}, bn.gamma.list_ctx(), bn.gamma.data().dtype)
    return new


def _set(block, values, ctx, dtype):
    block.initialize(mx.init.Zero(), ctx=ctx)
    for name, value in values.items():
        getattr(block, name).set_data(nd.array(value, dtype=dtype))


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
            P = {k: params[f'{layer}.{k}'].asnumpy() for k in ('gamma', 'beta', 'running_mean', 'running_var')}
            s = P['gamma'].astype(np.float64) / np.sqrt(P['running_var'].astype(np.float64) + eps)
            W, b = folded[f'{before}.weight'], folded[f'{before}.bias']
            Wf, bf = fold_weights(W.asnumpy(), b.asnumpy(), s, P['beta'] - s * P['running_mean'])
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
