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

from mxnet import autograd, nd

from ._checks import check_batch_norm
from .batch_norm import (as_rows, at_least_float32, batch_moments, batch_norm, from_rows, normalize,
                         update_moving_stats, var_correction)


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
    dtype, X = X.dtype, at_least_float32(X)
    rows = as_rows(nd, X, axis)                                  # (N, C, H, W) -> (N*C, H*W)
    mean, var, centered = batch_moments(nd, rows)                # (1, C), (1, C), x - mean
    with autograd.pause():  # r and d are constants of the step: no gradient flows through them
        r, d = renorm_correction(nd, mean, var, moving_mean.reshape_like(mean), moving_var.reshape_like(mean),
                                 rmax, dmax, eps)
    update_moving_stats(moving_mean, moving_var, mean, var, momentum, var_correction(m, unbiased_var))
    Y = renormalize(nd, centered, var, r, d, gamma, beta, eps, rows)
    return from_rows(nd, Y, X, axis).astype(dtype, copy=False)


def renormalize(F, centered, var, r, d, gamma, beta, eps, rows):
    """``gamma * (x_hat * r + d) + beta``: batch norm's :func:`normalize` with the scale ``gamma * r`` and
    the shift ``gamma * d + beta`` (``centered = x - mean``; var, r and d (1, C); gamma / beta (C,) or None)."""
    scale = r if gamma is None else F.broadcast_mul(F.reshape_like(gamma, r), r)
    shift = d if gamma is None else F.broadcast_mul(F.reshape_like(gamma, d), d)
    if beta is not None:
        shift = F.broadcast_add(shift, F.reshape_like(beta, d))
    return normalize(F, centered, var, scale, shift, eps, rows)


def renorm_correction(F, mean, var, moving_mean, moving_var, rmax, dmax, eps):
    """``(r, d)`` of batch renorm from the batch and moving statistics (arrays of one shape).

    ``r = clip(sigma_B / sigma, 1 / rmax, rmax)``, ``d = clip((mean - moving_mean) / sigma, -dmax, dmax)``
    with ``sigma_B = sqrt(var + eps)`` and ``sigma = sqrt(moving_var + eps)``; ``rmax`` and ``dmax`` are
    numbers, or (1,) arrays inside a graph. The caller keeps both out of the gradient: the paper treats
    them as constants.
    """
    sigma = F.sqrt(moving_var + eps)
    if isinstance(rmax, (int, float)):
        return F.clip(F.sqrt(var + eps) / sigma, 1.0 / rmax, rmax), F.clip((mean - moving_mean) / sigma, -dmax, dmax)
    r = F.broadcast_minimum(F.broadcast_maximum(F.sqrt(var + eps) / sigma, 1 / rmax), rmax)
    d = F.broadcast_minimum(F.broadcast_maximum((mean - moving_mean) / sigma, -dmax), dmax)
    return r, d


def check_renorm_limits(rmax, dmax):
    for name, v, low, why in (('rmax', rmax, 1, 'r is clipped to [1/rmax, rmax]'),
                              ('dmax', dmax, 0, 'd is clipped to [-dmax, dmax]')):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= low:
            raise ValueError(f"{name} must be a real number >= {low} ({why}); got {v!r}.")
