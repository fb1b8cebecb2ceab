"""``SyncBatchNorm``: batch norm whose statistics span the slices of one batch on several devices.

Ioffe and Szegedy, "Batch Normalization", ICML 2015; synchronized across devices as in Zhang et al.,
"Context Encoding for Semantic Segmentation", CVPR 2018 (where MXNet's
``gluon.contrib.nn.SyncBatchNorm`` comes from).
"""
from mxnet import autograd, nd

from ..functional.batch_norm import update_moving_stats, var_correction
from ..functional.sync_batch_norm import combine_moments, local_moments, normalize_slice
from .. import device_turns
from .batch_norm import BatchNorm


class SyncBatchNorm(BatchNorm):
    """Batch normalization with the statistics of the whole batch across K devices.

    Call the net on every device's slice through :func:`bn_gluon.parallel.lockstep` (which
    :func:`bn_gluon.parallel.forward_backward` does): in training, each device's call hands its
    per-channel ``(count, sum, centred sum of squares)`` to the others, and every device normalizes
    with the mean and variance of all K slices. The backward pass needs no extra step: each device's
    ``sum(dY)`` and ``sum(dY * x_hat)`` flow back to all devices through the same exchange (see
    :func:`bn_gluon.functional.sync_batch_norm.normalize_slice`). With K devices of B examples, outputs, summed
    gradients and running statistics equal those of one device with K*B, and the running statistics are
    the same on every device.

    Outside ``lockstep`` (one device, or inference) it is :class:`bn_gluon.BatchNorm`. It runs
    imperatively only: the exchange happens in Python between the devices' calls, which a hybridized
    graph cannot pause for.

    Parameters
    ----------
    num_devices : int or None
        Optional check, as in ``gluon.contrib.nn.SyncBatchNorm``: the number of devices that must take
        part in a training call.
    axis, momentum, epsilon, center, scale, use_global_stats, ..., unbiased_var
        As in :class:`bn_gluon.BatchNorm`. Momentum is MXNet's:
        ``running = momentum * running + (1 - momentum) * batch`` (PyTorch's 0.1 is 1 - 0.9).
    """

    def __init__(self, num_devices=None, **kwargs):
        super().__init__(**kwargs)
        if num_devices is not None and (not isinstance(num_devices, int) or num_devices < 1):
            raise ValueError(f"num_devices must be a positive int or None; got {num_devices!r}.")
        self.num_devices = num_devices

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if F is not nd:
            raise RuntimeError("SyncBatchNorm exchanges statistics between the devices' calls in Python, so it "
                               "cannot run inside a hybridized graph. Leave the net that holds it unhybridized "
                               "(hybridize its other blocks one by one if needed).")
        k = self._kwargs
        group = device_turns.current()
        training = autograd.is_training() and not k['use_global_stats']
        if not training or group is None:
            if training and len(self.gamma.list_ctx()) > 1:
                raise RuntimeError("SyncBatchNorm lives on several devices but was called on one of them outside "
                                   "bn_gluon.parallel.lockstep, so it cannot see the other slices. Use "
                                   "bn_gluon.parallel.forward_backward(net, loss_fn, X, y, ctxs), or "
                                   "lockstep(net, Xs) under autograd.record().")
            return super().hybrid_forward(F, x, gamma, beta, running_mean, running_var)
        size = group[0].size
        if self.num_devices is not None and self.num_devices != size:
            raise RuntimeError(f"SyncBatchNorm(num_devices={self.num_devices}) was called on {size} devices.")
        ctx, axis = x.context, k['axis']
        moments = device_turns.all_gather(local_moments(x, axis))        # every device's (m, sum, q), device order
        m, mean, var = combine_moments([(m_k, s_k.as_in_context(ctx), q_k.as_in_context(ctx))
                                        for m_k, s_k, q_k in moments])  # the whole batch's, on this device
        update_moving_stats(running_mean, running_var, mean, var, k['momentum'], var_correction(m, k['unbiased_var']))
        return normalize_slice(x, mean, var, gamma if k['scale'] else None, beta, k['eps'], axis)

    def __repr__(self):
        return super().__repr__().replace('(', f'(num_devices={self.num_devices!r}, ', 1)
