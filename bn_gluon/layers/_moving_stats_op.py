"""The one custom operator of the batch-norm layers: it moves the running statistics in a hybridized graph.

A compiled graph cannot assign to a Parameter, and it is built once for training and inference alike, so
two things are known only when it runs: whether this call trains (``is_train``), and the running
statistics to update. This operator holds them as auxiliary states, as ``gluon.nn.BatchNorm`` does, and
outputs, shaped like the batch mean it is given:

- ``training``: ones when the call trains, zeros otherwise (the layer picks its statistics with it);
- ``moving_mean``, ``moving_var``: the running statistics before this call;
- for batch renorm also ``rmax`` and ``dmax`` of its schedule at the current step, which it counts.

In training it sets ``running = momentum * running + (1 - momentum) * batch`` with
:func:`bn_gluon.functional.batch_norm.update_moving_stats`. No gradient passes through it: its inputs
are cut from the graph's gradient (``BlockGrad``), so all gradients of the layer are MXNet's own.
"""
import mxnet as mx
import numpy as np
from mxnet import nd

from ..functional.batch_norm import update_moving_stats, var_correction
from ..functional.batch_renorm import RenormSchedule

OP_TYPE = 'bn_gluon_moving_stats'
SCHEDULE_KEYS = ('rmax', 'dmax', 'warmup_steps', 'rmax_steps', 'dmax_steps')


def moving_stats(F, mean, var, count, running_mean, running_var, *, momentum, unbiased_var, num_steps=None,
                 schedule=None):
    """The operator in a graph: ``(training, moving_mean, moving_var[, rmax, dmax])``, see the module.

    ``count`` is any array with m elements, m the values per channel (for ``unbiased_var``).
    """
    kwargs = dict(momentum=momentum, unbiased_var=unbiased_var)
    aux = [running_mean, running_var]
    if schedule is not None:
        kwargs.update((k, getattr(schedule, k)) for k in SCHEDULE_KEYS)
        aux.append(num_steps)
    cut = [F.BlockGrad(v) for v in (mean, var, F.shape_array(count))]
    return F.Custom(*cut, *aux, op_type=OP_TYPE, **{k: str(v) for k, v in kwargs.items()})


class _MovingStats(mx.operator.CustomOp):
    def __init__(self, momentum, unbiased_var, schedule):
        super().__init__()
        self.momentum, self.unbiased_var, self.schedule = momentum, unbiased_var, schedule

    def forward(self, is_train, req, in_data, out_data, aux):
        mean, var, shape = in_data
        like = mean.shape
        for out, value in zip(out_data[1:3], aux[:2]):
            self.assign(out, req[1], value.reshape(like).astype(out.dtype, copy=False))
        if self.schedule is not None:
            rmax, dmax = self.schedule(int(aux[2].asscalar()))
            self.assign(out_data[3], req[3], nd.full((1,), rmax, dtype=out_data[3].dtype))
            self.assign(out_data[4], req[4], nd.full((1,), dmax, dtype=out_data[4].dtype))
        self.assign(out_data[0], req[0], nd.full(like, float(bool(is_train)), dtype=out_data[0].dtype))
        if is_train:
            # m only matters for the unbiased variance; reading the shape waits for it
            m = int(np.prod(shape.asnumpy())) // mean.size if self.unbiased_var else None
            update_moving_stats(aux[0], aux[1], mean, var, self.momentum, var_correction(m, self.unbiased_var))
            if self.schedule is not None:
                aux[2][:] = aux[2] + 1

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for grad, r in zip(in_grad, req):   # nothing flows back: the inputs are cut by BlockGrad
            self.assign(grad, r, nd.zeros_like(grad))


@mx.operator.register(OP_TYPE)
class _MovingStatsProp(mx.operator.CustomOpProp):
    # Custom-operator arguments arrive as strings.
    def __init__(self, momentum='0.9', unbiased_var='False', **schedule):
        super().__init__(need_top_grad=False)
        self.schedule = None
        if schedule:
            self.schedule = RenormSchedule(*(type(getattr(RenormSchedule, k))(float(schedule[k]))
                                             for k in SCHEDULE_KEYS))
        self.kwargs = dict(momentum=float(momentum), unbiased_var=unbiased_var == 'True', schedule=self.schedule)

    def list_arguments(self):
        return ['mean', 'var', 'shape']

    def list_outputs(self):
        return ['training', 'moving_mean', 'moving_var'] + (['rmax', 'dmax'] if self.schedule else [])

    def list_auxiliary_states(self):
        return ['running_mean', 'running_var'] + (['num_steps'] if self.schedule else [])

    def infer_shape(self, in_shape):
        mean, var, shape = in_shape
        channels = (int(np.prod(mean)),)
        steps = [(1,)] if self.schedule else []
        return [mean, var, shape], [mean, mean, mean] + steps * 2, [channels, channels] + steps

    def infer_type(self, in_type):
        dtype = in_type[0]
        n_out = 5 if self.schedule else 3
        n_aux = 3 if self.schedule else 2
        return [dtype, dtype, in_type[2]], [dtype] * n_out, [dtype] * n_aux

    def create_operator(self, ctx, shapes, dtypes):
        return _MovingStats(**self.kwargs)
