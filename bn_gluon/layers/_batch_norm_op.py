"""The scratch batch norm as an MXNet custom operator, so a hybridized graph can run it.

A symbolic graph cannot assign to a Parameter, but an operator may update its auxiliary states, which is
how ``gluon.nn.BatchNorm`` keeps its running statistics. With ``impl='fast'`` the operator runs
:mod:`bn_gluon.functional.batch_norm_fast`, writing its output and gradients straight into the arrays
the graph gives it; with ``impl='reference'`` it calls :func:`bn_gluon.functional.batch_norm` forward and
the closed-form :func:`bn_gluon.functional.batch_norm_backward`.
"""
import mxnet as mx
import numpy as np
from mxnet import nd

from ..functional import batch_norm, batch_norm_backward, stat_axes
from ..functional.batch_norm_fast import backward as fast_backward, forward as fast_forward

OP_TYPE = 'bn_gluon_batch_norm'


class _BatchNormOp(mx.operator.CustomOp):
    def __init__(self, momentum, eps, axis, use_global_stats, scale, center, unbiased_var, impl):
        super().__init__()
        self.momentum, self.eps, self.axis = momentum, eps, axis
        self.use_global_stats, self.scale, self.center = use_global_stats, scale, center
        self.unbiased_var, self.impl = unbiased_var, impl
        self.saved = None

    def forward(self, is_train, req, in_data, out_data, aux):
        self.training = bool(is_train) and not self.use_global_stats
        if self.impl == 'fast':
            self._fast_forward(req, in_data, out_data, aux)
        else:
            self._reference_forward(req, in_data, out_data, aux)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        if self.impl == 'fast':
            self._fast_backward(req, out_grad, in_data, out_data, in_grad, aux)
        else:
            self._reference_backward(req, out_grad, in_data, in_grad, aux)

    # --- fast: one compiled graph each way, results written in place -----------------------------

    def _fast_forward(self, req, in_data, out_data, aux, for_backward=None):
        """Y into out_data[0]; in training also what backward needs.

        In inference nothing is kept: a backward then (rare: frozen statistics under autograd) runs
        this again with ``for_backward=True``.
        """
        X, gamma, beta = in_data
        Xf = _at_least_float32(X)  # float16 nets keep float32 statistics
        direct = req[0] == 'write' and Xf is X
        Y, self.saved = fast_forward(
            Xf, gamma if self.scale else None, beta if self.center else None, aux[0], aux[1],
            training=self.training, momentum=self.momentum, eps=self.eps, axis=self.axis,
            unbiased_var=self.unbiased_var, for_backward=self.training if for_backward is None else for_backward,
            out=out_data[0] if direct else None)
        if not direct:
            self.assign(out_data[0], req[0], Y.astype(X.dtype, copy=False))

    def _fast_backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        if self.saved is None:
            self._fast_forward(['null'], in_data, [None], aux, for_backward=True)
        dY = _at_least_float32(out_grad[0])
        has = (True, self.scale, self.center)
        if all(r == 'write' and g.dtype == dY.dtype and h for r, g, h in zip(req, in_grad, has)):
            fast_backward(dY, self.saved, out=in_grad)
            return
        grads = fast_backward(dY, self.saved)
        for i, (g, h) in enumerate(zip(grads[:3], has)):
            self.assign(in_grad[i], req[i], g.astype(in_grad[i].dtype, copy=False) if h else g * 0)

    # --- reference: the paper's formulas --------------------------------------------------------------

    def _reference_forward(self, req, in_data, out_data, aux):
        X, gamma, beta = in_data
        moving_mean, moving_var = aux
        Y = batch_norm(X, gamma if self.scale else None, beta if self.center else None, moving_mean, moving_var,
                       training=self.training, momentum=self.momentum, eps=self.eps, axis=self.axis,
                       unbiased_var=self.unbiased_var, impl='reference')
        if self.training:  # keep the batch statistics for backward, where they are needed again
            X32 = X.astype('float32', copy=False)
            axes = stat_axes(X.ndim, self.axis)
            self.mean = X32.mean(axis=axes)
            self.var = ((X32 - self.mean.reshape(_shape(X, self.axis))) ** 2).mean(axis=axes)
        self.assign(out_data[0], req[0], Y)

    def _reference_backward(self, req, out_grad, in_data, in_grad, aux):
        X, gamma, _ = in_data
        dY = out_grad[0].astype('float32', copy=False)
        X32 = X.astype('float32', copy=False)
        g = gamma if self.scale else None
        if self.training:
            dX, dgamma, dbeta = batch_norm_backward(dY, X32, g, self.mean, self.var, self.eps, self.axis)
        else:  # fixed statistics: an affine map per channel
            shape = _shape(X, self.axis)
            inv_sigma = 1.0 / nd.sqrt(aux[1].reshape(shape) + self.eps)
            X_hat = (X32 - aux[0].reshape(shape)) * inv_sigma
            axes = stat_axes(X.ndim, self.axis)
            dX = dY * (inv_sigma if g is None else g.reshape(shape) * inv_sigma)
            dgamma, dbeta = (dY * X_hat).sum(axis=axes), dY.sum(axis=axes)
        self.assign(in_grad[0], req[0], dX.astype(X.dtype, copy=False))
        self.assign(in_grad[1], req[1], dgamma if self.scale else nd.zeros_like(dgamma))
        self.assign(in_grad[2], req[2], dbeta if self.center else nd.zeros_like(dbeta))


def default_layout(F, x):
    """``x`` through a reshape to its own shape: the same values, in MXNet's default memory layout.

    For use in ``hybrid_forward`` on a custom operator's data input. MXNet 1.9's MKL-DNN operators
    (convolution, activation, ...) may leave their output in a blocked layout; a custom operator given
    such an array in a hybridized graph gets a copy made as it starts (``AllocateNDArrayCopy`` in
    ``src/operator/custom/custom.cc``), and that copy does not reliably hold the producer's values:
    gluoncv's ResNets came out wrong by up to 1e35 (MXNET_MKLDNN_ENABLED=0 or the naive engine: right).
    Reshape, an ordinary graph operator, writes a default-layout array; on an array already in the
    default layout it runs in place and costs nothing.
    """
    return F.reshape_like(F.reshape(x, shape=(-1,)), x)


def _at_least_float32(X):
    return X.astype('float32') if X.dtype == np.float16 else X


def _shape(X, axis):
    return tuple(X.shape[a] if a == axis else 1 for a in range(X.ndim))


@mx.operator.register(OP_TYPE)
class _BatchNormProp(mx.operator.CustomOpProp):
    # Custom-operator arguments arrive as strings.
    def __init__(self, momentum='0.9', eps='1e-5', axis='1', use_global_stats='False', scale='True',
                 center='True', unbiased_var='False', impl='fast'):
        super().__init__(need_top_grad=True)
        self.kwargs = dict(momentum=float(momentum), eps=float(eps), axis=int(axis),
                           use_global_stats=use_global_stats == 'True', scale=scale == 'True',
                           center=center == 'True', unbiased_var=unbiased_var == 'True', impl=impl)

    def list_arguments(self):
        return ['data', 'gamma', 'beta']

    def list_auxiliary_states(self):
        return ['running_mean', 'running_var']

    def infer_shape(self, in_shape):
        data = in_shape[0]
        channels = (data[self.kwargs['axis'] % len(data)],)
        return [data, channels, channels], [data], [channels, channels]

    def infer_type(self, in_type):
        data = in_type[0]
        param = np.float32 if data == np.float16 else data  # half-precision nets keep float32 statistics
        return [data, param, param], [data], [param, param]

    def create_operator(self, ctx, shapes, dtypes):
        return _BatchNormOp(**self.kwargs)
