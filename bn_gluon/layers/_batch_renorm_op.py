"""Batch renorm as an MXNet custom operator, so a hybridized graph can run it and count its steps.

The twin of :mod:`._batch_norm_op`: ``forward`` calls :func:`bn_gluon.functional.batch_renorm` on
NDArrays, updating the running statistics and the step count (auxiliary states, like BatchNorm's), and
``backward`` is the closed form with r and d held constant::

    dX = batch norm's dX with gamma * r in place of gamma
    dgamma = r * sum(dY * x_hat_bn) + d * sum(dY),  dbeta = sum(dY)
"""
import mxnet as mx
import numpy as np
from mxnet import nd

from ..functional import batch_norm, batch_norm_backward, stat_axes
from ..functional.batch_renorm import RenormSchedule, batch_renorm, renorm_correction

OP_TYPE = 'bn_gluon_batch_renorm'
BN_KEYS = ('momentum', 'eps', 'axis', 'use_global_stats', 'scale', 'center', 'unbiased_var')
SCHEDULE_KEYS = ('rmax', 'dmax', 'warmup_steps', 'rmax_steps', 'dmax_steps')


class _BatchRenormOp(mx.operator.CustomOp):
    def __init__(self, momentum, eps, axis, use_global_stats, scale, center, unbiased_var, schedule):
        super().__init__()
        self.momentum, self.eps, self.axis = momentum, eps, axis
        self.use_global_stats, self.scale, self.center = use_global_stats, scale, center
        self.unbiased_var, self.schedule = unbiased_var, schedule

    def forward(self, is_train, req, in_data, out_data, aux):
        X, gamma, beta = in_data
        moving_mean, moving_var, num_steps = aux
        self.training = bool(is_train) and not self.use_global_stats
        g, b = gamma if self.scale else None, beta if self.center else None
        if not self.training:
            Y = batch_norm(X, g, b, moving_mean, moving_var, training=False, eps=self.eps, axis=self.axis)
        else:  # r and d from the statistics before this step moves them, kept for backward
            rmax, dmax = self.schedule(int(num_steps.asscalar()))
            X32 = X.astype('float32', copy=False)
            axes, shape = stat_axes(X.ndim, self.axis), _shape(X, self.axis)
            self.mean = X32.mean(axis=axes)
            self.var = ((X32 - self.mean.reshape(shape)) ** 2).mean(axis=axes)
            self.r, self.d = renorm_correction(self.mean, self.var, moving_mean, moving_var, rmax, dmax, self.eps)
            Y = batch_renorm(X, g, b, moving_mean, moving_var, training=True, rmax=rmax, dmax=dmax,
                             momentum=self.momentum, eps=self.eps, axis=self.axis, unbiased_var=self.unbiased_var)
            num_steps[:] = num_steps + 1
        self.assign(out_data[0], req[0], Y)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        X, gamma, _ = in_data
        dY = out_grad[0].astype('float32', copy=False)
        X32 = X.astype('float32', copy=False)
        shape, axes = _shape(X, self.axis), stat_axes(X.ndim, self.axis)
        if self.training:
            g = self.r if not self.scale else gamma * self.r
            dX, dgamma_bn, dbeta = batch_norm_backward(dY, X32, g, self.mean, self.var, self.eps, self.axis)
            dgamma = self.r * dgamma_bn + self.d * dbeta
        else:  # fixed statistics: an affine map per channel
            inv_sigma = 1.0 / nd.sqrt(aux[1].reshape(shape) + self.eps)
            X_hat = (X32 - aux[0].reshape(shape)) * inv_sigma
            dX = dY * (gamma.reshape(shape) * inv_sigma if self.scale else inv_sigma)
            dgamma, dbeta = (dY * X_hat).sum(axis=axes), dY.sum(axis=axes)
        self.assign(in_grad[0], req[0], dX.astype(X.dtype, copy=False))
        self.assign(in_grad[1], req[1], dgamma if self.scale else nd.zeros_like(dgamma))
        self.assign(in_grad[2], req[2], dbeta if self.center else nd.zeros_like(dbeta))


def _shape(X, axis):
    return tuple(X.shape[a] if a == axis else 1 for a in range(X.ndim))


@mx.operator.register(OP_TYPE)
class _BatchRenormProp(mx.operator.CustomOpProp):
    # Custom-operator arguments arrive as strings.
    def __init__(self, momentum='0.9', eps='1e-5', axis='1', use_global_stats='False', scale='True',
                 center='True', unbiased_var='False', rmax='3.0', dmax='5.0', warmup_steps='5000',
                 rmax_steps='40000', dmax_steps='25000'):
        super().__init__(need_top_grad=True)
        schedule = RenormSchedule(float(rmax), float(dmax), int(warmup_steps), int(rmax_steps), int(dmax_steps))
        self.kwargs = dict(momentum=float(momentum), eps=float(eps), axis=int(axis),
                           use_global_stats=use_global_stats == 'True', scale=scale == 'True',
                           center=center == 'True', unbiased_var=unbiased_var == 'True', schedule=schedule)

    def list_arguments(self):
        return ['data', 'gamma', 'beta']

    def list_auxiliary_states(self):
        return ['running_mean', 'running_var', 'num_steps']

    def infer_shape(self, in_shape):
        data = in_shape[0]
        channels = (data[self.kwargs['axis'] % len(data)],)
        return [data, channels, channels], [data], [channels, channels, (1,)]

    def infer_type(self, in_type):
        data = in_type[0]
        param = np.float32 if data == np.float16 else data  # half-precision nets keep float32 statistics
        return [data, param, param], [data], [param, param, param]

    def create_operator(self, ctx, shapes, dtypes):
        return _BatchRenormOp(**self.kwargs)
