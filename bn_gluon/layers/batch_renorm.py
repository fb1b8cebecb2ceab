"""``BatchRenorm``: batch norm corrected towards its moving statistics, as a Gluon layer.

Ioffe, "Batch Renormalization: Towards Reducing Minibatch Dependence in Batch-Normalized Models",
NIPS 2017. The math is in :mod:`bn_gluon.functional.batch_renorm`.
"""
from mxnet import autograd, nd

from ..functional.batch_norm import batch_norm, center
from ..functional.batch_renorm import RenormSchedule, batch_renorm, renorm_correction, renormalize
from ._moving_stats_op import moving_stats
from .batch_norm import BatchNorm


class BatchRenorm(BatchNorm):
    """Batch renormalization: ``BatchNorm``'s constructor and Parameters, plus a schedule and a step count.

    Why a class of its own rather than an option of ``BatchNorm``: renorm keeps one more piece of state,
    the number of training steps taken, which drives the schedule of (rmax, dmax). It is a Parameter,
    ``num_steps`` (``grad_req='null'``), so it is saved with the running statistics and a resumed run
    continues the schedule where it stopped; adding it to ``BatchNorm`` would break that
    layer's parameter-file interchange with ``gluon.nn.BatchNorm``. As a subclass this layer takes the same
    arguments and holds the same ``gamma``, ``beta``, ``running_mean`` and ``running_var``: a BatchNorm
    file loads into it with ``load_parameters(..., allow_missing=True)`` (the count then starts at 0),
    and its files load into ``BatchNorm`` or ``gluon.nn.BatchNorm`` with ``ignore_extra=True``.

    Inference (a plain call, or ``use_global_stats=True``) is exactly BatchNorm. Every training forward
    (under ``autograd.record()``) normalizes with ``(rmax, dmax) = schedule(num_steps)``, moves the running
    statistics as BatchNorm does, and adds 1 to ``num_steps``; hybridized, the small operator that moves
    the running statistics also counts the steps and gives the schedule's (rmax, dmax).
    ``int(layer.num_steps.data().asscalar())`` reads the count (exact in float32 up to 2**24 steps).

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`BatchNorm` (``axis``, ``momentum`` in MXNet's convention, ``epsilon``, ...).
    schedule : RenormSchedule, default RenormSchedule()
        (rmax, dmax) as a function of the step; the default is the paper's (5k steps of plain BN, rmax
        to 3 by 40k steps, dmax to 5 by 25k). ``RenormSchedule.constant(rmax, dmax)`` fixes them.
    renorm : True or RenormSchedule, default True
        Deprecated, what ``BatchNorm(renorm=...)`` passes on: a schedule stands for ``schedule``.
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
        if F is not nd:
            return self._graph(F, x, gamma, beta, running_mean, running_var, num_steps)
        g = gamma if k['scale'] else None                        # scale=False: gamma is 1, as in gluon
        if not autograd.is_training() or k['use_global_stats']:
            return batch_norm(x, g, beta, running_mean, running_var, training=False, eps=k['eps'], axis=k['axis'])
        rmax, dmax = self.schedule(int(num_steps.asscalar()))
        Y = batch_renorm(x, g, beta, running_mean, running_var, training=True, rmax=rmax, dmax=dmax,
                         momentum=k['momentum'], eps=k['eps'], axis=k['axis'], unbiased_var=k['unbiased_var'])
        with autograd.pause():
            num_steps[:] = num_steps + 1
        return Y

    def _graph_normalize(self, F, rows, mean, var, gamma, beta, x, running_mean, running_var, num_steps):
        """Batch renorm in training; in inference batch norm with the running statistics (r = 1, d = 0)."""
        k = self._kwargs
        training, moving_mean, moving_var, rmax, dmax = moving_stats(
            F, mean, var, x, running_mean, running_var, momentum=k['momentum'], unbiased_var=k['unbiased_var'],
            num_steps=num_steps, schedule=self.schedule)
        r, d = renorm_correction(F, F.BlockGrad(mean), F.BlockGrad(var), moving_mean, moving_var, rmax, dmax,
                                 k['eps'])
        r, d = F.where(training, r, F.ones_like(r)), F.where(training, d, F.zeros_like(d))
        mean, var = F.where(training, mean, moving_mean), F.where(training, var, moving_var)
        return renormalize(F, center(F, rows, mean), var, r, d, gamma, beta, k['eps'], rows)

    def __repr__(self):
        return f'{super().__repr__()[:-1]}, schedule={self.schedule!r})'
