"""``impl='fast'`` as an MXNet custom operator: one node with a hand-written backward.

The operator runs :func:`.kernels.forward` and :func:`.kernels.backward`, writing its output and gradients
straight into the arrays MXNet gives it, and keeps the running statistics as auxiliary states, as
``gluon.nn.BatchNorm`` does. It serves both imperative calls (``nd.Custom``) and hybridized graphs.

Where it is safe: chains such as the LeNet, where its gradients match ``gluon.nn.BatchNorm``'s (tested).
In a branching network (gluoncv's ResNets) MXNet 1.9 can hand a custom operator output gradients that
other operators are still writing, imperatively and hybridized (with the naive engine the same gradients
are right), so its gradients there are wrong; it warns when used. The default, ``impl='reference'``, has
no operator in the gradient path. ``docs/performance.md`` has the measurements.
"""
import warnings

import mxnet as mx
import numpy as np

from ..batch_norm import at_least_float32
from . import kernels

OP_TYPE = 'bn_gluon_batch_norm_fast'
BRANCHING_WARNING = ("impl='fast' is for chain networks such as the LeNet: inside a branching network (a ResNet) "
                     "MXNet 1.9 can hand its custom operator output gradients that are still being written, "
                     "imperatively or hybridized. Use the default impl='reference' there. See docs/performance.md.")


def batch_norm_op(F, X, gamma, beta, running_mean, running_var, *, momentum, eps, axis, use_global_stats, scale,
                  unbiased_var):
    """The operator on ``X`` (NDArray or Symbol); training or not is MXNet's ``is_train`` when it runs.

    ``scale=False`` uses gamma = 1, as ``gluon.nn.BatchNorm`` does; beta is always added.
    """
    warnings.warn(BRANCHING_WARNING, UserWarning, stacklevel=3)   # shown once per place it is called from
    X = default_layout(F, X)
    kwargs = dict(momentum=momentum, eps=eps, axis=axis, use_global_stats=use_global_stats, scale=scale,
                  unbiased_var=unbiased_var)
    return F.Custom(X, gamma, beta, running_mean, running_var, op_type=OP_TYPE,
                    **{k: str(v) for k, v in kwargs.items()})


def default_layout(F, x):
    """``x`` through a reshape to its own shape: the same values, in MXNet's default memory layout.

    MXNet 1.9's MKL-DNN operators may leave their output in a blocked layout; a custom operator given
    such an array gets a copy that does not reliably hold the producer's values (docs/performance.md).
    Reshape, an ordinary operator, writes a default-layout array; on one already in it, it runs in place.
    """
    return F.reshape_like(F.reshape(x, shape=(-1,)), x)


class _BatchNormOp(mx.operator.CustomOp):
    def __init__(self, momentum, eps, axis, use_global_stats, scale, unbiased_var):
        super().__init__()
        self.kwargs = dict(momentum=momentum, eps=eps, axis=axis, unbiased_var=unbiased_var)
        self.use_global_stats, self.scale = use_global_stats, scale
        self.saved = None

    def forward(self, is_train, req, in_data, out_data, aux, for_backward=None):
        """Y into out_data[0]; in training also what backward needs (in inference, only when asked)."""
        X, gamma, beta = in_data
        self.training = bool(is_train) and not self.use_global_stats
        Xf = at_least_float32(X)  # float16 nets keep float32 statistics
        direct = req[0] == 'write' and Xf is X
        Y, self.saved = kernels.forward(
            Xf, gamma if self.scale else None, beta, aux[0], aux[1], training=self.training,
            for_backward=self.training if for_backward is None else for_backward,
            out=out_data[0] if direct else None, **self.kwargs)
        if not direct:
            self.assign(out_data[0], req[0], Y.astype(X.dtype, copy=False))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        if self.saved is None:  # an inference-mode forward kept nothing: run it again, keeping it
            self.forward(False, ['null'], in_data, [None], aux, for_backward=True)
        dY = at_least_float32(out_grad[0])
        if all(r == 'write' and g.dtype == dY.dtype for r, g in zip(req, in_grad)) and self.scale:
            kernels.backward(dY, self.saved, out=in_grad)
            return
        dX, dgamma, dbeta = kernels.backward(dY, self.saved)
        for i, g in enumerate((dX, dgamma if self.scale else dgamma * 0, dbeta)):
            self.assign(in_grad[i], req[i], g.astype(in_grad[i].dtype, copy=False))


@mx.operator.register(OP_TYPE)
class _BatchNormProp(mx.operator.CustomOpProp):
    # Custom-operator arguments arrive as strings.
    def __init__(self, momentum='0.9', eps='1e-5', axis='1', use_global_stats='False', scale='True',
                 unbiased_var='False'):
        super().__init__(need_top_grad=True)
        self.kwargs = dict(momentum=float(momentum), eps=float(eps), axis=int(axis),
                           use_global_stats=use_global_stats == 'True', scale=scale == 'True',
                           unbiased_var=unbiased_var == 'True')

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
