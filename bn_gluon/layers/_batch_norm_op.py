"""The scratch batch norm as an MXNet custom operator, so a hybridized graph can run it.

A symbolic graph cannot assign to a Parameter, but an operator may update its auxiliary states, which is
how ``gluon.nn.BatchNorm`` keeps its running statistics. This operator calls the same
:func:`bn_gluon.functional.batch_norm` on NDArrays in ``forward`` and its closed-form gradient in
``backward``; the imperative layer calls the function directly and lets autograd differentiate it.
"""
import mxnet as mx
import numpy as np
from mxnet import nd

from ..functional import batch_norm, batch_norm_backward, stat_axes

OP_TYPE = 'bn_gluon_batch_norm'


class _BatchNormOp(mx.operator.CustomOp):
    def __init__(self, momentum, eps, axis, use_global_stats, scale, center, unbiased_var):
        super().__init__()
        self.momentum, self.eps, self.axis = momentum, eps, axis
        self.use_global_stats, self.scale, self.center = use_global_stats, scale, center
        self.unbiased_var = unbiased_var

    def forward(self, is_train, req, in_data, out_data, aux):
        X, gamma, beta = in_data
        moving_mean, moving_var = aux
        self.training = bool(is_train) and not self.use_global_stats
        Y = batch_norm(X, gamma if self.scale else None, beta if self.center else None, moving_mean, moving_var,
                       training=self.training, momentum=self.momentum, eps=self.eps, axis=self.axis,
                       unbiased_var=self.unbiased_var)
        if self.training:  # keep the batch statistics for backward, where they are needed again
            X32 = X.astype('float32', copy=False)
            axes = stat_axes(X.ndim, self.axis)
            self.mean = X32.mean(axis=axes)
            self.var = ((X32 - self.mean.reshape(_shape(X, self.axis))) ** 2).mean(axis=axes)
        self.assign(out_data[0], req[0], Y)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
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


def _shape(X, axis):
    return tuple(X.shape[a] if a == axis else 1 for a in range(X.ndim))


@mx.operator.register(OP_TYPE)
class _BatchNormProp(mx.operator.CustomOpProp):
    # Custom-operator arguments arrive as strings.
    def __init__(self, momentum='0.9', eps='1e-5', axis='1', use_global_stats='False', scale='True',
                 center='True', unbiased_var='False'):
        super().__init__(need_top_grad=True)
        self.kwargs = dict(momentum=float(momentum), eps=float(eps), axis=int(axis),
                           use_global_stats=use_global_stats == 'True', scale=scale == 'True',
                           center=center == 'True', unbiased_var=unbiased_var == 'True')

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
