"""``BatchNorm``: the scratch batch norm as a Gluon layer that can stand in for ``gluon.nn.BatchNorm``.

Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015.
"""
from mxnet import autograd, nd
from mxnet.gluon import HybridBlock

from ..functional import batch_norm
from ..functional.batch_norm import IMPLS
from . import _batch_norm_op


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
    center, scale : bool, default True
        Learn ``beta`` / ``gamma``; when False the shift is 0 / the scale is 1.
    use_global_stats : bool, default False
        Always normalize with the running statistics, and never update them.
    beta_initializer, gamma_initializer, running_mean_initializer, running_variance_initializer
        Initializers, defaults 'zeros', 'ones', 'zeros', 'ones'.
    in_channels : int, default 0
        Number of channels; 0 infers it from the first input.
    unbiased_var : bool, default False
        Store the unbiased batch variance ``m / (m - 1) * var`` in ``running_var`` (the paper's
        Algorithm 2 and PyTorch) instead of the biased one (MXNet on the CPU).
    renorm : None, True or RenormSchedule, default None
        Batch Renormalization (Ioffe 2017): given, the layer built is a
        :class:`~bn_gluon.layers.batch_renorm.BatchRenorm` (a subclass of this one) that clips r and d by
        this schedule of (rmax, dmax); True takes the paper's schedule. None or False: plain batch norm.
    impl : {None, 'fast', 'reference'}, default None
        How :func:`bn_gluon.functional.batch_norm` computes: 'reference' reads like the paper and lets
        autograd differentiate it; 'fast' gives the same numbers through a few large kernels and the
        closed-form gradient (``benchmarks/bench_bn.py`` measures both). None: 'reference' when called
        imperatively, 'fast' (as a custom operator) when hybridized.

    Notes
    -----
    Hybridized, the layer is a custom operator. In MXNet 1.9 with MKL-DNN, a custom operator inside a
    branching graph (gluoncv's ResNets) was handed output gradients that other operators were still
    writing, so its gradients there are unreliable (its outputs and running statistics are right; a
    test records this as an expected failure). In chains such as the LeNet they match
    ``gluon.nn.BatchNorm`` (tested). ``hybridize(static_alloc=True)`` is no way out: with it MXNet drops
    running-statistics updates, gluon.nn.BatchNorm's included. Imperatively the same happened to
    ``impl='fast'``'s hand-written backward; the default imperative path, 'reference', is plain autograd
    and is not affected, so train branching nets imperatively.
    """

    def __new__(cls, *args, renorm=None, **kwargs):
        # BatchNorm(renorm=...) builds the subclass: renorm keeps a step count that this layer's parameter
        # files, interchangeable with gluon.nn.BatchNorm's, must not carry (see BatchRenorm).
        if renorm is not None and renorm is not False and cls is BatchNorm:
            from .batch_renorm import BatchRenorm  # it imports this module: import it when needed
            cls = BatchRenorm
        return super().__new__(cls)

    def __init__(self, axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True, use_global_stats=False,
                 beta_initializer='zeros', gamma_initializer='ones', running_mean_initializer='zeros',
                 running_variance_initializer='ones', in_channels=0, unbiased_var=False, renorm=None,
                 impl=None, **kwargs):
        if impl is not None and impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}; got {impl!r}.")
        super().__init__(**kwargs)
        self._impl = impl
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
        if str(dtype) in ('float16', "<class 'numpy.float16'>"):
            dtype = 'float32'  # statistics of half-precision activations stay in float32, as in Gluon
        super().cast(dtype)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        k = self._kwargs
        if F is nd:
            training = autograd.is_training() and not k['use_global_stats']
            return batch_norm(x, gamma if k['scale'] else None, beta if k['center'] else None,
                              running_mean, running_var, training=training, momentum=k['momentum'],
                              eps=k['eps'], axis=k['axis'], unbiased_var=k['unbiased_var'],
                              impl=self._impl or 'reference')
        x = _batch_norm_op.default_layout(F, x)  # an MKL-DNN layout reaches custom operators wrong
        return F.Custom(x, gamma, beta, running_mean, running_var, op_type=_batch_norm_op.OP_TYPE,
                        name='fwd', impl=self._impl or 'fast', **{key: str(v) for key, v in k.items()})

    def __repr__(self):
        channels = self.gamma.shape[0] or None
        args = ', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())
        return f'{self.__class__.__name__}({args}, in_channels={channels})'
