"""``BatchNorm``: the scratch batch norm as a Gluon layer that can stand in for ``gluon.nn.BatchNorm``.

Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015.
"""
import warnings

from mxnet import autograd, nd
from mxnet.gluon import HybridBlock

from ..functional import fast
from ..functional._checks import check_eps, check_momentum
from ..functional._shapes import tie_shape
from ..functional.batch_norm import as_rows, batch_moments, batch_norm, center, from_rows, normalize
from ._moving_stats_op import moving_stats

IMPLS = ('reference', 'fast')


class BatchNorm(HybridBlock):
    """Batch normalization over the channel axis, written with ``mxnet.ndarray``.

    Same constructor, Parameter names (``gamma``, ``beta``, ``running_mean``, ``running_var``) and
    train/inference switch (``autograd.is_training()``) as ``gluon.nn.BatchNorm``, so parameter files
    load both ways and gluoncv model_zoo constructors accept it as ``norm_layer=``.

    One difference on purpose: the running statistics move in the forward pass of a training step, as
    in the paper. MXNet's CPU operator moves them in the backward pass, so a recorded forward without
    ``backward()`` changes them here but not there; after forward + backward the two agree.

    Parameters
    ----------
    axis : int, default 1
        The channel axis (1 for NCHW and for (N, C) inputs).
    momentum : float, default 0.9
        MXNet convention: ``running = momentum * running + (1 - momentum) * batch``
        (PyTorch's ``momentum=0.1`` is ``1 - momentum`` here).
    epsilon : float, default 1e-5
        Added to the variance before the square root.
    center : bool, default True
        Learn ``beta``. As in ``gluon.nn.BatchNorm``, False only stops learning it: beta is still added.
    scale : bool, default True
        Learn ``gamma``; False uses gamma = 1, as ``gluon.nn.BatchNorm`` does.
    use_global_stats : bool, default False
        Always normalize with the running statistics, and never update them.
    beta_initializer, gamma_initializer, running_mean_initializer, running_variance_initializer
        Initializers, defaults 'zeros', 'ones', 'zeros', 'ones'.
    in_channels : int, default 0
        Number of channels; 0 infers it from the first input.
    unbiased_var : bool, default False
        Store the unbiased batch variance ``m / (m - 1) * var`` in ``running_var`` (the paper's
        Algorithm 2 and PyTorch) instead of the biased one (MXNet on the CPU).
    impl : {'reference', 'fast'}, default 'reference'
        'reference' runs :func:`bn_gluon.functional.batch_norm`'s formulas, differentiated by MXNet,
        imperatively and hybridized. 'fast' (:mod:`bn_gluon.functional.fast`) gives the same numbers
        through a custom operator with a hand-written backward; it is for chain networks such as the
        LeNet, not for branching ones (ResNets).
    """

    def __new__(cls, *args, renorm=None, **kwargs):
        if renorm is not None and renorm is not False and cls is BatchNorm:
            warnings.warn("BatchNorm(renorm=...) is deprecated and will be removed in the next release; build "
                          "bn_gluon.BatchRenorm(schedule=...) instead.", FutureWarning, stacklevel=2)
            from .batch_renorm import BatchRenorm  # it imports this module: import it when needed
            cls = BatchRenorm
        return super().__new__(cls)

    def __init__(self, axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True, use_global_stats=False,
                 beta_initializer='zeros', gamma_initializer='ones', running_mean_initializer='zeros',
                 running_variance_initializer='ones', in_channels=0, unbiased_var=False, impl='reference',
                 **kwargs):
        kwargs.pop('renorm', None)   # taken by __new__
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}; got {impl!r}.")
        check_momentum(momentum)
        check_eps(epsilon)
        if not isinstance(axis, int):
            raise TypeError(f"axis must be an int (the channel axis); got {axis!r}.")
        if not isinstance(in_channels, int) or in_channels < 0:
            raise ValueError(f"in_channels must be an int >= 0 (0: inferred from the first input); got "
                             f"{in_channels!r}.")
        super().__init__(**kwargs)
        self._impl, self._half = impl, False
        self._kwargs = dict(axis=axis, momentum=momentum, eps=epsilon, use_global_stats=use_global_stats,
                            scale=scale, center=center, unbiased_var=unbiased_var)
        if in_channels != 0:
            self.in_channels = in_channels
        param = dict(shape=(in_channels,), allow_deferred_init=True)
        self.gamma = self.params.get('gamma', grad_req='write' if scale else 'null', init=gamma_initializer,
                                     differentiable=scale, **param)
        self.beta = self.params.get('beta', grad_req='write' if center else 'null', init=beta_initializer,
                                    differentiable=center, **param)
        self.running_mean = self.params.get('running_mean', grad_req='null', init=running_mean_initializer,
                                            differentiable=False, **param)
        self.running_var = self.params.get('running_var', grad_req='null', init=running_variance_initializer,
                                           differentiable=False, **param)

    def cast(self, dtype):
        self._half = str(dtype) in ('float16', "<class 'numpy.float16'>")
        super().cast('float32' if self._half else dtype)  # half-precision nets keep float32 statistics

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray) and x.size == 0:  # MXNet's own error would come from deep in a graph
            raise ValueError(f"{self.name} got an input of shape {x.shape}: a batch with no values has no "
                             f"statistics to normalize with. Skip empty batches (e.g. drop a short last batch).")
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        k = self._kwargs
        if self._impl == 'fast':
            return fast.batch_norm_op(F, x, gamma, beta, running_mean, running_var, momentum=k['momentum'],
                                      eps=k['eps'], axis=k['axis'], use_global_stats=k['use_global_stats'],
                                      scale=k['scale'], unbiased_var=k['unbiased_var'])
        if F is not nd:
            return self._graph(F, x, gamma, beta, running_mean, running_var)
        gamma = gamma if k['scale'] else None                    # scale=False: gamma is 1, as in gluon
        # imperative: the function as the articles write it, statistics updated in place
        return batch_norm(x, gamma, beta, running_mean, running_var,
                          training=autograd.is_training() and not k['use_global_stats'],
                          momentum=k['momentum'], eps=k['eps'], axis=k['axis'], unbiased_var=k['unbiased_var'])

    def _graph(self, F, x, gamma, beta, running_mean, running_var, *state):
        """The same formulas in a hybridized graph, where training or not is known only when it runs.

        ``state``: further Parameters of a subclass, handed on to :meth:`_graph_normalize`.
        """
        k = self._kwargs
        X = F.cast(x, 'float32') if self._half else x
        rows = as_rows(F, X, k['axis'])                                          # (N, C, H, W) -> (N*C, H*W)
        channels = F.reshape(F.slice_axis(rows.grid, axis=0, begin=0, end=1), shape=(-1,))   # (C,), for shapes
        scale, beta = tie_shape(F, (gamma, beta), channels)
        gamma = scale if k['scale'] else None                    # scale=False: gamma is 1, as in gluon
        if k['use_global_stats']:
            mean, var = tie_shape(F, (running_mean, running_var), channels)
            for v in state:                                      # unread here, but Gluon looks for them
                mean = F.broadcast_add(mean, F.zeros_like(v))
            Y = normalize(F, center(F, rows, mean), var, gamma, beta, k['eps'], rows)
        else:
            mean, var, _ = batch_moments(F, rows)                                # (1, C) each
            Y = self._graph_normalize(F, rows, mean, var, gamma, beta, x, running_mean, running_var, *state)
        Y = from_rows(F, Y, X, k['axis'])
        return F.cast(Y, 'float16') if self._half else Y

    def _graph_normalize(self, F, rows, mean, var, gamma, beta, x, running_mean, running_var):
        """Normalize with the batch statistics in training, else the running ones; move the running ones."""
        k = self._kwargs
        training, moving_mean, moving_var = moving_stats(
            F, mean, var, x, running_mean, running_var, momentum=k['momentum'], unbiased_var=k['unbiased_var'])
        mean = F.where(training, mean, moving_mean)              # the batch's in training, else the running
        var = F.where(training, var, moving_var)
        return normalize(F, center(F, rows, mean), var, gamma, beta, k['eps'], rows)

    def __repr__(self):
        channels = self.gamma.shape[0] or None
        args = ', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())
        return f'{self.__class__.__name__}({args}, in_channels={channels}, impl={self._impl!r})'
