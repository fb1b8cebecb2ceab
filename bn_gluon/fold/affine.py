"""One layer and the batch norm after it: the inference map ``s * x + t`` and its fold into the layer.

The math is in the package docstring (:mod:`bn_gluon.fold`).
"""
import mxnet as mx
import numpy as np
from mxnet import nd
from mxnet.gluon import nn

from ..functional import inference_affine

CONVS = (nn.Conv1D, nn.Conv2D, nn.Conv3D)


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
    scaled = k['scale'] if 'scale' in k else not k['fix_gamma']   # scale=False: gamma is 1; beta always added
    return inference_affine(gamma if scaled else None, beta, mean, var, k['eps'])


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
