"""The article's LeNet-style CNN as Gluon blocks, with a normalization layer after each convolution.

By default batch norm sits between each convolution and its activation, as in Ioffe and Szegedy, "Batch
Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift", ICML 2015::

    (N, 1, 28, 28) conv 20@5x5 -> BN -> ReLU -> maxpool 2  -> (N, 20, 12, 12)
                   conv 50@3x3 -> BN -> ReLU -> maxpool 2  -> (N, 50, 5, 5)
                   flatten -> dense 128 [-> BN] -> ReLU -> dense 10 -> (N, 10)

``norm_position='after_act'`` moves every normalization behind its activation (conv -> ReLU -> BN ->
maxpool), the other order found in practice, so the two can be compared.

The normalization is a name of :data:`~bn_gluon.models.norms.NORMS` (``lenet('group')``) or, as in
gluoncv's models, a layer passed in: ``LeNet(norm_layer=bn_gluon.BatchNorm, norm_kwargs={'impl': 'fast'})``.
"""
import mxnet as mx
from mxnet import nd
from mxnet.gluon import nn

from .norms import get_norm
from .params import initial_value, named_parameters

# Layer order of both styles; it is also the order in which the initial values are drawn.
ACTIVATIONS = ('relu', 'sigmoid', 'tanh')
NORM_POSITIONS = ('before_act', 'after_act')   # conv -> BN -> act (the paper's), conv -> act -> BN
LAYERS = ('conv1', 'bn1', 'conv2', 'bn2', 'dense1', 'bn3', 'dense2')
INPUT_SHAPE = (1, 28, 28)


class LeNet(nn.HybridBlock):
    """The LeNet-style CNN with a normalization block after each convolution.

    Parameters
    ----------
    norm : str or None
        A key of ``NORMS``: 'scratch' (bn_gluon.BatchNorm), 'gluon' (gluon.nn.BatchNorm), 'none',
        'renorm', 'layer', 'group', 'instance', 'lrn' or 'sync'. None: 'scratch', unless ``norm_layer``
        is given.
    dense_norm : bool
        Normalize after the 128-unit dense layer too (not with 'instance', which needs positions).
    classes : int
        Number of outputs.
    act : str
        The activation after each normalization, one of ``ACTIVATIONS``: 'relu' as in the article, or
        'sigmoid' / 'tanh' to see saturation (饱和) with and without BN.
    norm_layer : callable or None
        Instead of ``norm``: the normalization, called as ``norm_layer(in_channels=C, **norm_kwargs)``
        for each slot (``bn_gluon.BatchNorm``, ``gluon.nn.BatchNorm``, ...), as gluoncv's models take it.
    norm_kwargs : dict or None
        Keyword arguments of every normalization layer; with ``norm``, they update the table's.
    norm_position : str
        'before_act' (default): conv -> norm -> activation, as in the paper and article 004.
        'after_act': conv -> activation -> norm, so the norm sees the activation's output.
    """

    def __init__(self, norm=None, dense_norm=False, classes=10, act='relu', norm_layer=None, norm_kwargs=None,
                 norm_position='before_act', **kwargs):
        super().__init__(**kwargs)
        if norm is not None and norm_layer is not None:
            raise ValueError(f'give the normalization by name (norm={norm!r}) or as a layer (norm_layer='
                             f'{getattr(norm_layer, "__name__", norm_layer)}), not both.')
        if norm_layer is None:
            norm = 'scratch' if norm is None else norm
            norm_layer, defaults = get_norm(norm, dense_norm)
            norm_kwargs = dict(defaults, **(norm_kwargs or {}))
        if act not in ACTIVATIONS:
            raise ValueError(f'unknown activation {act!r}; expected one of {", ".join(ACTIVATIONS)}.')
        check_norm_position(norm_position)
        self.norm, self.dense_norm, self.act, self.norm_position = norm, dense_norm, act, norm_position
        self.norm_layer, self.norm_kwargs = norm_layer, dict(norm_kwargs or {})

        def make_norm(channels):
            return None if norm_layer is None else norm_layer(in_channels=channels, **self.norm_kwargs)

        with self.name_scope():
            self.conv1 = nn.Conv2D(20, kernel_size=5, in_channels=1)
            self.bn1 = make_norm(20)
            self.pool1 = nn.MaxPool2D(pool_size=2, strides=2)
            self.conv2 = nn.Conv2D(50, kernel_size=3, in_channels=20)
            self.bn2 = make_norm(50)
            self.pool2 = nn.MaxPool2D(pool_size=2, strides=2)
            self.dense1 = nn.Dense(128, in_units=50 * 5 * 5)
            self.bn3 = make_norm(128) if dense_norm else None
            self.dense2 = nn.Dense(classes, in_units=128)

    def forward(self, X, *args):
        # Checked here, on the concrete array: inside a hybridized graph a wrong shape surfaces as an
        # MXNetError from deep in the engine, far from the call that caused it.
        if isinstance(X, nd.NDArray):
            check_input(X)
        return super().forward(X, *args)

    def hybrid_forward(self, F, X):
        return self._stages(F, X)['scores']

    def preactivations(self, X):
        """What enters each activation, and the scores, for a batch ``X``; runs the blocks one by one.

        Returns a dict: 'conv1' (N, 20, 24, 24), 'conv2' (N, 50, 10, 10) and 'dense1' (N, 128), each
        after its normalization when there is one before the activation ('before_act'), the layer's own
        output with 'after_act', and 'scores' (N, classes), equal to ``self(X)``.
        Training or inference mode as for ``self(X)`` (inside or outside ``autograd.record()``).
        """
        check_input(X)
        return self._stages(nd, X)

    def _stages(self, F, X):
        out = {}
        out['conv1'], H = self._norm_act(F, self.bn1, self.conv1(X))    # (N, 1, 28, 28) -> (N, 20, 24, 24)
        H = self.pool1(H)                                               # -> (N, 20, 12, 12)
        out['conv2'], H = self._norm_act(F, self.bn2, self.conv2(H))    # -> (N, 50, 10, 10)
        H = self.pool2(H)                                               # -> (N, 50, 5, 5)
        out['dense1'], H = self._norm_act(F, self.bn3, self.dense1(H))  # Dense flattens: -> (N, 128)
        out['scores'] = self.dense2(H)                                  # -> (N, classes)
        return out

    def _norm_act(self, F, norm, Z):
        """(what enters the activation, the stage's output) for a conv/dense output ``Z``, in either order."""
        act = getattr(F, self.act)                                      # F.relu, F.sigmoid or F.tanh
        if self.norm_position == 'before_act':
            Z = _maybe(norm, Z)
            return Z, act(Z)
        return Z, _maybe(norm, act(Z))


def check_norm_position(norm_position):
    """Raise ValueError unless ``norm_position`` is one of ``NORM_POSITIONS``."""
    if norm_position not in NORM_POSITIONS:
        raise ValueError(f"unknown norm_position {norm_position!r}; expected 'before_act' (conv -> norm -> "
                         f"activation, the paper's order) or 'after_act' (conv -> activation -> norm).")


def check_input(X):
    """Raise ValueError unless ``X`` is a non-empty batch of (1, 28, 28) images."""
    if X.ndim != 4 or X.shape[1:] != INPUT_SHAPE or X.shape[0] == 0:
        raise ValueError(f'the LeNet takes images of shape (N, 1, 28, 28) with N >= 1; got {X.shape}. '
                         '(bn_gluon.data.to_nd gives that shape.)')


def _maybe(block, X):
    return X if block is None else block(X)


def lenet(norm=None, dense_norm=False, article_init=False, ctx=None, classes=10, act='relu', norm_layer=None,
          norm_kwargs=None, norm_position='before_act'):
    """A :class:`LeNet` built and initialized on ``ctx``: Xavier weights, gamma 1, beta 0, moving variance 1.

    ``norm`` / ``norm_layer`` and ``norm_kwargs`` choose the normalization and ``norm_position`` its place
    ('before_act' or 'after_act' the activation) as in :class:`LeNet` (default 'scratch', before).
    ``article_init=True`` draws every weight, bias, gamma and beta from N(0, 0.01) and starts the moving
    variance at 0, as the article did. The values come from :func:`initial_value` in
    ``LAYERS`` order, so after the same ``mx.random.seed`` this net and ``init_raw_lenet`` hold the same
    numbers.
    """
    ctx = ctx or mx.cpu()
    net = LeNet(norm, dense_norm, classes, act, norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                norm_position=norm_position)
    net.initialize(mx.init.Zero(), ctx=ctx)                      # draws nothing: the values come next
    for name, p in named_parameters(net).items():
        p.set_data(initial_value(name, p.shape, article_init, ctx))
    return net
