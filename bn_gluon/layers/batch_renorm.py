"""``BatchRenorm``: batch norm corrected towards its moving statistics, as a Gluon layer.

Ioffe, "Batch Renormalization: Towards Reducing Minibatch Dependence in Batch-Normalized Models",
NIPS 2017. The math is in :mod:`bn_gluon.functional.batch_renorm`.
"""
from mxnet import autograd, nd

from ..functional import batch_norm
from ..functional.batch_renorm import RenormSchedule, batch_renorm
from . import _batch_norm_op, _batch_renorm_op
from .batch_norm import BatchNorm


class BatchRenorm(BatchNorm):
    """Batch renormalization: ``BatchNorm``'s constructor and Parameters, plus a schedule and a step count.

    ``BatchNorm(..., renorm=schedule)`` builds this layer: renorm is an option of the scratch batch norm.
    Why a class of its own behind that option rather than a branch inside ``BatchNorm``: renorm keeps one
    more piece of state, the number of training steps taken, which drives the schedule of (rmax, dmax). It is a
    Parameter, ``num_steps`` (``grad_req='null'``), so it is saved with the running statistics and a
    resumed run continues the schedule where it stopped; adding it to ``BatchNorm`` would break that
    layer's parameter-file interchange with ``gluon.nn.BatchNorm``. As a subclass this layer takes the same
    arguments and holds the same ``gamma``, ``beta``, ``running_mean`` and ``running_var``: a BatchNorm
    file loads into it with ``load_parameters(..., allow_missing=True)`` (the count then starts at 0),
    and its files load into ``BatchNorm`` or ``gluon.nn.BatchNorm`` with ``ignore_extra=True``.

    Inference (a plain call, or ``use_global_stats=True``) is exactly BatchNorm. Every training forward
    (under ``autograd.record()``) normalizes with ``(rmax, dmax) = schedule(num_steps)``, moves the running
    statistics as BatchNorm does, and adds 1 to ``num_steps``; hybridized, a custom operator does the same.
    ``int(layer.num_steps.data().asscalar())`` reads the count (exact in float32 up to 2**24 steps).

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`BatchNorm` (``axis``, ``momentum`` in MXNet's convention, ``epsilon``, ...).
    schedule : RenormSchedule, default RenormSchedule()
        (rmax, dmax) as a function of the step; the default is the paper's (5k steps of plain BN, rmax
        to 3 by 40k steps, dmax to 5 by 25k). ``RenormSchedule.constant(rmax, dmax)`` fixes them.
    renorm : True or RenormSchedule, default True
        What ``BatchNorm(renorm=...)`` passes on: a schedule stands for ``schedule``; True for the default.
    """

    def __init__(self, *args, schedule=None, renorm=True, **kwargs):
        if renorm is not True:
            if renorm is None or renorm is False:
                raise ValueError(f"renorm={renorm!r} asks for plain batch norm, but this is BatchRenorm; use "
                                 f"BatchNorm(...) or leave renorm out.")
            if schedule is not None:
                raise ValueError(f"two schedules, schedule={schedule!r} and renorm={renorm!r}; give one.")
            schedule = renorm
        super().__init__(*args, **kwargs)
        schedule = RenormSchedule() if schedule is None else schedule
        if not isinstance(schedule, RenormSchedule):  # the hybridized operator rebuilds it from its fields
            raise TypeError(f"schedule must be a RenormSchedule; got {type(schedule).__name__}. Use e.g. "
                            f"RenormSchedule(rmax=3, dmax=5, warmup_steps=500, rmax_steps=4000, dmax_steps=2500).")
        self.schedule = schedule
        self.num_steps = self.params.get('num_steps', grad_req='null', shape=(1,), init='zeros',
                                         differentiable=False)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var, num_steps):
        k = self._kwargs
        if F is not nd:  # custom-operator arguments travel as strings
            op_kwargs = {key: str(k[key]) for key in _batch_renorm_op.BN_KEYS}
            op_kwargs.update((key, str(getattr(self.schedule, key))) for key in _batch_renorm_op.SCHEDULE_KEYS)
            x = _batch_norm_op.default_layout(F, x)  # an MKL-DNN layout reaches custom operators wrong
            return F.Custom(x, gamma, beta, running_mean, running_var, num_steps, op_type=_batch_renorm_op.OP_TYPE,
                            name='fwd', **op_kwargs)
        g, b = gamma if k['scale'] else None, beta if k['center'] else None
        if not autograd.is_training() or k['use_global_stats']:
            return batch_norm(x, g, b, running_mean, running_var, training=False, eps=k['eps'], axis=k['axis'])
        rmax, dmax = self.schedule(int(num_steps.asscalar()))
        Y = batch_renorm(x, g, b, running_mean, running_var, training=True, rmax=rmax, dmax=dmax,
                         momentum=k['momentum'], eps=k['eps'], axis=k['axis'], unbiased_var=k['unbiased_var'])
        with autograd.pause():
            num_steps[:] = num_steps + 1
        return Y

    def __repr__(self):
        return f'{super().__repr__()[:-1]}, schedule={self.schedule!r})'
