"""``LayerNorm``, ``InstanceNorm`` and ``GroupNorm``: drop-ins for their ``gluon.nn`` namesakes.

Ba, Kiros and Hinton, "Layer Normalization", 2016; Ulyanov, Vedaldi and Lempitsky, "Instance
Normalization", 2016; Wu and He, "Group Normalization", ECCV 2018. The math is in
:mod:`bn_gluon.functional.group_norm`; these layers hold gamma and beta only, since the statistics come
from each example and nothing is kept between calls. Same constructors and Parameter names (``gamma``,
``beta``, with gluon's shapes) as ``gluon.nn.LayerNorm``, ``InstanceNorm`` and ``GroupNorm`` in MXNet
1.9.1, so parameter files load both ways.

As in gluon, ``scale=False`` / ``center=False`` freeze gamma / beta (``grad_req='null'``) at their
initial values, 1 and 0 by default, rather than drop them from the formula: the output then equals
gluon's for any parameter file.
"""
from mxnet import nd
from mxnet.gluon import HybridBlock
from mxnet.gluon.parameter import DeferredInitializationError

from ..functional._checks import check_eps
from ..functional.group_norm import (check_group_norm, check_instance_norm, check_layer_norm, check_num_groups,
                                     group_norm, instance_norm, layer_norm)


class _ExampleNorm(HybridBlock):
    """gamma and beta of ``size`` values, and the input checks; subclasses give ``_norm`` and ``_check``."""

    def __init__(self, epsilon, center, scale, beta_initializer, gamma_initializer, size, **kwargs):
        super().__init__(**kwargs)
        check_eps(epsilon)
        self._eps, self._center, self._scale = epsilon, center, scale
        self.gamma = self.params.get('gamma', grad_req='write' if scale else 'null', shape=(size,),
                                     init=gamma_initializer, allow_deferred_init=True)
        self.beta = self.params.get('beta', grad_req='write' if center else 'null', shape=(size,),
                                    init=beta_initializer, allow_deferred_init=True)

    def forward(self, x, *args):
        # Check here, before shape inference or a hybridized graph (which sees Symbols) can fail less clearly.
        if isinstance(x, nd.NDArray):
            ctx = x.context
            self._check(x, _value(self.gamma, ctx), _value(self.beta, ctx))
        return super().forward(x, *args)

    def hybrid_forward(self, F, x, gamma, beta):
        return self._norm(x, gamma, beta)

    def _settings(self):
        return dict(eps=self._eps, center=self._center, scale=self._scale)

    def __repr__(self):
        args = ', '.join(f'{k}={v!r}' for k, v in self._settings().items())
        return f'{self.__class__.__name__}({args}, in_channels={self.gamma.shape[0] or None})'


def _value(param, ctx):
    """The parameter on ``ctx``, or None while its shape waits for the first input."""
    try:
        return param.data(ctx)
    except DeferredInitializationError:
        return None


class _AxisNorm(_ExampleNorm):
    """A per-example norm set by one axis: ``_checker`` and ``_function`` are its functional pair."""

    def _check(self, x, gamma, beta):
        self._checker(x, gamma, beta, self._axis, self._eps)

    def _norm(self, x, gamma, beta):
        return self._function(x, gamma, beta, axis=self._axis, eps=self._eps)

    def _settings(self):
        return dict(axis=self._axis, **super()._settings())


class LayerNorm(_AxisNorm):
    """Layer normalization along one axis, as ``gluon.nn.LayerNorm``.

    Parameters
    ----------
    axis : int, default -1
        The axis standardized (the features of an (N, D) input). For the paper's layer norm of a conv
        feature map over all of (C, H, W), use ``GroupNorm(num_groups=1)``.
    epsilon : float, default 1e-5
        Added to the variance before the square root.
    center, scale : bool, default True
        Learn ``beta`` / ``gamma``; when False they stay at their initial values.
    beta_initializer, gamma_initializer
        Initializers, defaults 'zeros' and 'ones'.
    in_channels : int, default 0
        Length of ``axis``; 0 infers it from the first input.
    """

    _checker, _function = staticmethod(check_layer_norm), staticmethod(layer_norm)

    def __init__(self, axis=-1, epsilon=1e-5, center=True, scale=True, beta_initializer='zeros',
                 gamma_initializer='ones', in_channels=0, **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, in_channels, **kwargs)
        self._axis = axis


class InstanceNorm(_AxisNorm):
    """Instance normalization: every channel of every example over its own positions, as
    ``gluon.nn.InstanceNorm``.

    Parameters
    ----------
    axis : int, default 1
        The channel axis (1 for NCHW); the statistics run over every axis but 0 and this one.
    epsilon : float, default 1e-5
        Added to the variance before the square root.
    center : bool, default True
        Learn ``beta``; when False it stays at its initial value.
    scale : bool, default False
        Learn ``gamma``; when False it stays at its initial value (gluon's default for this layer).
    beta_initializer, gamma_initializer
        Initializers, defaults 'zeros' and 'ones'.
    in_channels : int, default 0
        Number of channels; 0 infers it from the first input.
    """

    _checker, _function = staticmethod(check_instance_norm), staticmethod(instance_norm)

    def __init__(self, axis=1, epsilon=1e-5, center=True, scale=False, beta_initializer='zeros',
                 gamma_initializer='ones', in_channels=0, **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, in_channels, **kwargs)
        self._axis = axis


class GroupNorm(_ExampleNorm):
    """Group normalization over groups of ``C / num_groups`` channels, as ``gluon.nn.GroupNorm``.

    As in MXNet 1.9.1, ``gamma`` and ``beta`` have one value per group, shape (num_groups,) (the paper
    has one per channel). The channel axis is 1.

    Parameters
    ----------
    num_groups : int, default 1
        G, which must divide the number of channels; 1 is layer norm over (C, H, W).
    epsilon : float, default 1e-5
        Added to the variance before the square root.
    center, scale : bool, default True
        Learn ``beta`` / ``gamma``; when False they stay at their initial values.
    beta_initializer, gamma_initializer
        Initializers, defaults 'zeros' and 'ones'.
    """

    def __init__(self, num_groups=1, epsilon=1e-5, center=True, scale=True, beta_initializer='zeros',
                 gamma_initializer='ones', **kwargs):
        check_num_groups(num_groups)
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, num_groups, **kwargs)
        self._num_groups = num_groups

    def _check(self, x, gamma, beta):
        check_group_norm(x, gamma, beta, self._num_groups, self._eps)

    def _norm(self, x, gamma, beta):
        return group_norm(x, gamma, beta, num_groups=self._num_groups, eps=self._eps)

    def _settings(self):
        return dict(num_groups=self._num_groups, **super()._settings())

    def __repr__(self):
        args = ', '.join(f'{k}={v!r}' for k, v in self._settings().items())
        return f'{self.__class__.__name__}({args})'
