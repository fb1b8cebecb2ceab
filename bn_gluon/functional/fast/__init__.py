"""``impl='fast'``: the same batch norm through fewer, larger kernels, opt-in.

Contract: :func:`batch_norm` takes the arguments of :func:`bn_gluon.functional.batch_norm` and returns
the same numbers (to float32 rounding), the same running statistics, and, under autograd, the same
gradients, through a custom operator with a hand-written backward (:mod:`.op`) over compiled kernels
(:mod:`.kernels`). ``tests/test_batch_norm_fast.py`` checks all three against the reference and finite
differences. It is safe in chain networks such as the LeNet; in branching ones (ResNets) use the
reference (see :mod:`.op`). ``benchmarks/bench_bn.py`` measures what it gains.
"""
from mxnet import autograd, nd

from .._checks import check_batch_norm
from ..batch_norm import at_least_float32
from . import kernels
from .op import BRANCHING_WARNING, batch_norm_op

__all__ = ['batch_norm', 'batch_norm_op', 'BRANCHING_WARNING']


def batch_norm(X, gamma, beta, moving_mean, moving_var, *, training, momentum=0.9, eps=1e-5, axis=1,
               unbiased_var=False):
    """:func:`bn_gluon.functional.batch_norm` through the fast kernels: same arguments, same results."""
    axis, C, _ = check_batch_norm(X, gamma, beta, moving_mean, moving_var, training, momentum, eps, axis)
    kwargs = dict(momentum=momentum, eps=eps, axis=axis, unbiased_var=unbiased_var)
    if not autograd.is_recording():   # no backward to come: the kernels alone
        dtype, X32 = X.dtype, at_least_float32(X)
        gamma, beta = (None if v is None else v.astype(X32.dtype, copy=False) for v in (gamma, beta))
        Y, _ = kernels.forward(X32, gamma, beta, moving_mean, moving_var, training=training, for_backward=False,
                               **kwargs)
        return Y.astype(dtype, copy=False)
    param = moving_mean.dtype
    scale = gamma is not None
    gamma = nd.ones(C, ctx=X.context, dtype=param) if gamma is None else gamma
    beta = nd.zeros(C, ctx=X.context, dtype=param) if beta is None else beta
    with autograd.train_mode() if training else autograd.predict_mode():
        return batch_norm_op(nd, X, gamma, beta, moving_mean, moving_var, use_global_stats=not training,
                             scale=scale, **kwargs)
