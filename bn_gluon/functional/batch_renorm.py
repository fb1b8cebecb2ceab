"""Batch Renormalization: batch norm whose training output does not hinge on the rest of the batch.

Ioffe, "Batch Renormalization: Towards Reducing Minibatch Dependence in Batch-Normalized Models",
NIPS 2017, Algorithm 1. Batch norm trains with the batch statistics and infers with the moving ones; with
small or non-i.i.d. batches the two differ and the network meets other activations at test time. Batch
renorm corrects every training output towards the moving statistics (mu, sigma)::

    sigma_B = sqrt(var_B + eps),  sigma = sqrt(moving_var + eps)
    r = stop_gradient(clip(sigma_B / sigma, 1 / rmax, rmax))
    d = stop_gradient(clip((mu_B - mu) / sigma, -dmax, dmax))
    x_hat = (x - mu_B) / sigma_B * r + d
    y = gamma * x_hat + beta

Unclipped, x_hat = (x - mu) / sigma: the inference formula. r and d are constants of the step, so the
gradient is batch norm's, times r; rmax = 1, dmax = 0 give r = 1, d = 0: plain batch norm. Inference is
batch norm with the moving statistics. The moving statistics move as in batch norm, after r and d are
taken, with MXNet's momentum convention ``moving = momentum * moving + (1 - momentum) * batch``
(PyTorch's ``momentum=0.1`` is 0.9 here); the paper averages sigma itself, here the variance is averaged,
as ``gluon.nn.BatchNorm`` keeps it, and sigma = sqrt(moving_var + eps).

The paper keeps r = 1, d = 0 while the moving statistics settle, then relaxes the clips
(:class:`RenormSchedule`).
"""
import numbers
from dataclasses import dataclass

import numpy as np
from mxnet import autograd, nd

from .batch_norm import batch_norm, check_batch_norm, scale_shift, stat_axes, update_moving_stats


@dataclass(frozen=True)
class RenormSchedule:
    """``(rmax, dmax)`` as a function of the training step: plain batch norm first, then linear ramps.

    The defaults are the paper's (Inception on ImageNet, batch 32): r = 1, d = 0 for 5k steps, then rmax
    reaches 3 at 40k steps and dmax 5 at 25k. Scale the step counts to the length of your training.
    ``RenormSchedule.constant(rmax, dmax)`` holds fixed clips from the first step.
    """
    rmax: float = 3.0          # the final clip of r = sigma_B / sigma, >= 1
    dmax: float = 5.0          # the final clip of d = (mu_B - mu) / sigma, >= 0
    warmup_steps: int = 5000   # rmax = 1, dmax = 0 until here: the moving statistics need time to settle
    rmax_steps: int = 40000    # rmax reaches its final value here
    dmax_steps: int = 25000    # dmax reaches its final value here

    def __post_init__(self):
        check_renorm_limits(self.rmax, self.dmax)
        for name in ('warmup_steps', 'rmax_steps', 'dmax_steps'):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {v!r}.")
        for name in ('rmax_steps', 'dmax_steps'):
            if getattr(self, name) < self.warmup_steps:
                raise ValueError(f"{name}={getattr(self, name)} comes before warmup_steps={self.warmup_steps}; "
                                 f"the ramps start when the warm-up ends.")

    @classmethod
    def constant(cls, rmax, dmax):
        """Fixed clips from step 0 on (``constant(1, 0)`` is batch norm)."""
        return cls(rmax=rmax, dmax=dmax, warmup_steps=0, rmax_steps=0, dmax_steps=0)

    def __call__(self, step):
        """``(rmax, dmax)`` at training step ``step``, counted from 0."""
        rmax = 1.0 + (self.rmax - 1.0) * _ramp(step, self.warmup_steps, self.rmax_steps)
        dmax = self.dmax * _ramp(step, self.warmup_steps, self.dmax_steps)
        return float(rmax), float(dmax)


def _ramp(step, start, end):
    """0 up to ``start``, 1 from ``end`` on, linear in between."""
    if step >= end:
        return 1.0
    if step <= start:
        return 0.0
    return (step - start) / (end - start)


def batch_renorm(X, gamma, beta, moving_mean, moving_var, *, training, rmax, dmax, momentum=0.9, eps=1e-5,
                 axis=1, unbiased_var=False):
    """Batch norm corrected towards the moving statistics by the clipped constants r and d.

    Arguments as :func:`~bn_gluon.functional.batch_norm`, plus:

    Parameters
    ----------
    rmax : float
        r = sigma_B / sigma is clipped to [1 / rmax, rmax]; rmax >= 1.
    dmax : float
        d = (mu_B - mu) / sigma is clipped to [-dmax, dmax]; dmax >= 0.
    """
    check_renorm_limits(rmax, dmax)
    axis, C, m = check_batch_norm(X, gamma, beta, moving_mean, moving_var, training, momentum, eps, axis)
    if not training:  # inference is batch norm's: the moving statistics alone
        return batch_norm(X, gamma, beta, moving_mean, moving_var, training=False, momentum=momentum, eps=eps,
                          axis=axis)
    dtype = X.dtype
    if dtype == np.float16:  # half precision overflows in the sum of squares: work in float32
        X = X.astype('float32')
    axes = stat_axes(X.ndim, axis)
    shape = tuple(C if a == axis else 1 for a in range(X.ndim))  # (1, C, 1, 1) for (N, C, H, W)

    mean = X.mean(axis=axes, keepdims=True)                      # (N, C, H, W) -> (1, C, 1, 1)
    var = ((X - mean) ** 2).mean(axis=axes, keepdims=True)       # biased: divides by m = N*H*W
    sigma_B = nd.sqrt(var + eps)
    with autograd.pause():  # r and d are constants of the step: no gradient flows through them
        r, d = renorm_correction(mean, var, moving_mean.reshape(shape).astype(X.dtype, copy=False),
                                 moving_var.reshape(shape).astype(X.dtype, copy=False), rmax, dmax, eps)
        update_moving_stats(moving_mean, moving_var, mean.reshape((C,)), var.reshape((C,)),
                            momentum, m / (m - 1) if unbiased_var else 1.0)

    X_hat = (X - mean) / sigma_B * r + d
    return scale_shift(X_hat, gamma, beta, shape).astype(dtype, copy=False)


def renorm_correction(mean, var, moving_mean, moving_var, rmax, dmax, eps):
    """``(r, d)`` of batch renorm from the batch and moving statistics (arrays of one shape).

    ``r = clip(sigma_B / sigma, 1 / rmax, rmax)``, ``d = clip((mean - moving_mean) / sigma, -dmax, dmax)``
    with ``sigma_B = sqrt(var + eps)`` and ``sigma = sqrt(moving_var + eps)``. Call under
    ``autograd.pause()`` or on detached arrays: the paper treats both as constants.
    """
    sigma = nd.sqrt(moving_var + eps)
    r = nd.clip(nd.sqrt(var + eps) / sigma, 1.0 / rmax, rmax)
    d = nd.clip((mean - moving_mean) / sigma, -dmax, dmax)
    return r, d


def check_renorm_limits(rmax, dmax):
    for name, v, low, why in (('rmax', rmax, 1, 'r is clipped to [1/rmax, rmax]'),
                              ('dmax', dmax, 0, 'd is clipped to [-dmax, dmax]')):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= low:
            raise ValueError(f"{name} must be a real number >= {low} ({why}); got {v!r}.")
