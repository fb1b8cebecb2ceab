"""The article's LeNet-style CNN with batch norm, written twice: as Gluon blocks and as raw nd code.

Batch norm sits between each convolution and its activation, as in Ioffe and Szegedy, "Batch
Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift", ICML 2015::

    (N, 1, 28, 28) conv 20@5x5 -> BN -> ReLU -> maxpool 2  -> (N, 20, 12, 12)
                   conv 50@3x3 -> BN -> ReLU -> maxpool 2  -> (N, 50, 5, 5)
                   flatten -> dense 128 [-> BN] -> ReLU -> dense 10 -> (N, 10)

The Gluon style takes any normalization of ``NORMS`` in the BN slots (batch, layer, group, instance,
local response, batch renorm); the raw style is the article's program and knows batch norm only.

Both styles name their parameters the way ``save_parameters`` does (``conv1.weight``, ``bn1.gamma``,
``bn1.running_mean``, ``dense1.weight``, ...), so a raw dict, a Gluon net and a ``.params`` file are the
same thing in three forms. Dense weights have Gluon's (out, in) layout in both.
"""
import math

import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from .functional import RenormSchedule, batch_norm, fast
from .layers import LRN, BatchNorm, GroupNorm, InstanceNorm, SyncBatchNorm

# The paper's renorm schedule (5k steps of plain BN, rmax 3 by 40k, dmax 5 by 25k) shrunk to our runs,
# which take thousands of steps rather than Inception's hundreds of thousands: the default run (6 epochs at
# batch 128) has 2,814, so plain BN for the first 100 (the moving averages, momentum 0.9, have settled by
# then), rmax 3 after about a third and dmax 5 after about a fifth. Runs with small batches reach the full
# clips within an epoch.
LENET_RENORM_SCHEDULE = RenormSchedule(rmax=3, dmax=5, warmup_steps=100, rmax_steps=1000, dmax_steps=600)


def group_count(channels):
    """Groups of at least 4 channels, with as few channels as that allows: 20 -> 5, 50 -> 10, 128 -> 32.

    Wu and He use G = 32 (or groups of 16 channels); LeNet's 20 and 50 channels allow neither, and
    groups of 4-5 channels sit between instance norm (1) and layer norm (all).
    """
    size = next((s for s in range(4, channels + 1) if channels % s == 0), channels)
    return channels // size


# name -> callable(channels) returning the normalization block, or None for no layer. Add a
# normalization by adding an entry; lenet(norm=name) then builds with it.
NORMS = {
    'scratch': lambda channels: BatchNorm(in_channels=channels),
    'gluon': lambda channels: nn.BatchNorm(in_channels=channels),
    'none': lambda channels: None,
    # Batch norm corrected towards its moving statistics (Ioffe 2017), for small or non-i.i.d. batches.
    'renorm': lambda channels: BatchNorm(in_channels=channels, renorm=LENET_RENORM_SCHEDULE),
    # Per example over all of (C, H, W): group norm with one group (gamma and beta are one value each).
    'layer': lambda channels: GroupNorm(num_groups=1),
    'group': lambda channels: GroupNorm(num_groups=group_count(channels)),
    # Per example and channel over (H, W); gamma learned, which gluon's default (scale=False) would not.
    'instance': lambda channels: InstanceNorm(scale=True, in_channels=channels),
    # AlexNet's constants; here before the ReLU like every norm of the LeNet (AlexNet puts it after).
    'lrn': lambda channels: LRN(n=5, k=2.0, alpha=1e-4, beta=0.75),
    # Batch norm over the whole batch when it is split across devices (--ctx cpu:0,cpu:1); on one device
    # it is 'scratch'. It exchanges statistics in Python, so it runs imperatively (never hybridized).
    'sync': lambda channels: SyncBatchNorm(in_channels=channels),
}
IMPERATIVE_NORMS = ('sync',)          # cannot sit inside a hybridized graph
RAW_NORMS = ('scratch', 'none')       # the raw network writes the article's batch norm out by hand
NEEDS_POSITIONS = ('instance',)       # statistics over (H, W): nothing to average after the dense layer

# Layer order of both styles; it is also the order in which the initial values are drawn.
ACTIVATIONS = ('relu', 'sigmoid', 'tanh')
LAYERS = ('conv1', 'bn1', 'conv2', 'bn2', 'dense1', 'bn3', 'dense2')
RUNNING_STATS = ('running_mean', 'running_var')


class LeNet(nn.HybridBlock):
    """The LeNet-style CNN with a normalization block from ``NORMS`` after each convolution.

    Parameters
    ----------
    norm : str
        A key of ``NORMS``: 'scratch' (bn_gluon.BatchNorm), 'gluon' (gluon.nn.BatchNorm), 'none',
        'renorm', 'layer', 'group', 'instance' or 'lrn'.
    dense_norm : bool
        Normalize after the 128-unit dense layer too (not with 'instance', which needs positions).
    classes : int
        Number of outputs.
    act : str
        The activation after each normalization, one of ``ACTIVATIONS``: 'relu' as in the article, or
        'sigmoid' / 'tanh' to see saturation (饱和) with and without BN.
    """

    def __init__(self, norm='scratch', dense_norm=False, classes=10, act='relu', **kwargs):
        super().__init__(**kwargs)
        make_norm = get_norm(norm, dense_norm)
        if act not in ACTIVATIONS:
            raise ValueError(f'unknown activation {act!r}; expected one of {", ".join(ACTIVATIONS)}.')
        self.norm, self.dense_norm, self.act = norm, dense_norm, act
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
        after its normalization when there is one, and 'scores' (N, classes), equal to ``self(X)``.
        Training or inference mode as for ``self(X)`` (inside or outside ``autograd.record()``).
        """
        check_input(X)
        return self._stages(nd, X)

    def _stages(self, F, X):
        act = getattr(F, self.act)                                # F.relu, F.sigmoid or F.tanh
        out = {'conv1': _maybe(self.bn1, self.conv1(X))}          # (N, 1, 28, 28) -> (N, 20, 24, 24)
        H = self.pool1(act(out['conv1']))                         # -> (N, 20, 12, 12)
        out['conv2'] = _maybe(self.bn2, self.conv2(H))            # -> (N, 50, 10, 10)
        H = self.pool2(act(out['conv2']))                         # -> (N, 50, 5, 5)
        out['dense1'] = _maybe(self.bn3, self.dense1(H))          # Dense flattens: -> (N, 128)
        out['scores'] = self.dense2(act(out['dense1']))           # -> (N, classes)
        return out


INPUT_SHAPE = (1, 28, 28)


def check_input(X):
    """Raise ValueError unless ``X`` is a non-empty batch of (1, 28, 28) images."""
    if X.ndim != 4 or X.shape[1:] != INPUT_SHAPE or X.shape[0] == 0:
        raise ValueError(f'the LeNet takes images of shape (N, 1, 28, 28) with N >= 1; got {X.shape}. '
                         '(bn_gluon.data.to_nd gives that shape.)')


def _maybe(block, X):
    return X if block is None else block(X)


def get_norm(name, dense_norm=False):
    """The factory registered under ``name`` in ``NORMS``; ``dense_norm``: it must also fit (N, 128)."""
    if name not in NORMS:
        raise ValueError(f'unknown norm {name!r}; registered: {", ".join(sorted(NORMS))}.')
    if dense_norm and name in NEEDS_POSITIONS:
        raise ValueError(f"norm {name!r} normalizes over the positions (H, W) of a feature map, and the dense "
                         f"layer's (N, 128) output has none; turn dense_norm off (--no-dense-norm) or use "
                         f"another norm.")
    return NORMS[name]


def lenet(norm='scratch', dense_norm=False, article_init=False, ctx=None, classes=10, act='relu'):
    """A LeNet built and initialized on ``ctx``: Xavier weights, gamma 1, beta 0, moving variance 1.

    ``article_init=True`` draws every weight, bias, gamma and beta from N(0, 0.01) and starts the moving
    variance at 0, as the article did. The values come from :func:`initial_value` in ``LAYERS`` order,
    so after the same ``mx.random.seed`` this net and :func:`init_raw_lenet` hold the same numbers.
    """
    ctx = ctx or mx.cpu()
    net = LeNet(norm, dense_norm, classes, act)
    net.initialize(mx.init.Zero(), ctx=ctx)                      # draws nothing: the values come next
    for name, p in named_parameters(net).items():
        p.set_data(initial_value(name, p.shape, article_init, ctx))
    return net


def initial_value(name, shape, article_init=False, ctx=None):
    """The starting value of the parameter called ``name`` (e.g. 'conv1.weight', 'bn2.running_var')."""
    ctx = ctx or mx.cpu()
    kind = name.rsplit('.', 1)[1]
    if article_init and kind != 'running_mean':   # the article: N(0, 0.01) everywhere, moving variance 0
        if kind == 'running_var':
            return nd.zeros(shape, ctx=ctx)
        return nd.random.normal(0, 0.01, shape=shape, ctx=ctx)
    if kind == 'weight':
        # Xavier (Glorot) uniform, fan = inputs or outputs of one unit: keeps the signal's variance stable.
        receptive = math.prod(shape[2:])                          # 5 * 5 for conv1, 1 for a dense layer
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return nd.random.uniform(-bound, bound, shape=shape, ctx=ctx)
    if kind in ('gamma', 'running_var'):
        return nd.ones(shape, ctx=ctx)                           # start as the identity transform
    return nd.zeros(shape, ctx=ctx)                              # bias, beta, running_mean


def _raw_shapes(norm, dense_norm, classes):
    """Parameter names and shapes of the raw network, in ``LAYERS`` order."""
    shapes = {'conv1': {'weight': (20, 1, 5, 5), 'bias': (20,)}, 'bn1': 20,
              'conv2': {'weight': (50, 20, 3, 3), 'bias': (50,)}, 'bn2': 50,
              'dense1': {'weight': (128, 1250), 'bias': (128,)}, 'bn3': 128 if dense_norm else 0,
              'dense2': {'weight': (classes, 128), 'bias': (classes,)}}
    out = {}
    for layer in LAYERS:
        s = shapes[layer]
        if isinstance(s, int):                                   # a normalization layer with s channels
            if norm == 'none' or not s:
                continue
            s = {k: (s,) for k in ('gamma', 'beta') + RUNNING_STATS}
        out.update({f'{layer}.{k}': shape for k, shape in s.items()})
    return out


def init_raw_lenet(norm='scratch', dense_norm=False, article_init=False, ctx=None, classes=10):
    """The raw network's parameters: a dict name -> NDArray, moving statistics included.

    Weights, biases, gamma and beta have gradients attached; the moving statistics do not (they are
    averaged, never learned).
    """
    if norm not in RAW_NORMS:
        raise ValueError(f"the raw network supports norm 'scratch' or 'none'; got {norm!r}. The other "
                         f"normalizations are Gluon blocks: build_net(norm, style='gluon').")
    params = {}
    for name, shape in _raw_shapes(norm, dense_norm, classes).items():
        params[name] = initial_value(name, shape, article_init, ctx)
        if not is_running_stat(name):
            params[name].attach_grad()
    return params


def is_running_stat(name):
    return name.rsplit('.', 1)[1] in RUNNING_STATS


def raw_lenet_forward(params, X, training, momentum=0.9, eps=1e-5, impl='reference'):
    """The same network as :class:`LeNet` in plain nd calls; moving statistics updated when ``training``.

    ``impl='reference'`` normalizes with the article's formula as written (``functional.batch_norm``);
    ``impl='fast'`` with the same numbers through ``functional.fast.batch_norm``.
    """
    P = params
    H = nd.Convolution(X, P['conv1.weight'], P['conv1.bias'], kernel=(5, 5), num_filter=20)  # -> (N, 20, 24, 24)
    H = _raw_norm(P, 'bn1', H, training, momentum, eps, impl)
    H = nd.Pooling(nd.relu(H), kernel=(2, 2), stride=(2, 2), pool_type='max')                 # -> (N, 20, 12, 12)
    H = nd.Convolution(H, P['conv2.weight'], P['conv2.bias'], kernel=(3, 3), num_filter=50)  # -> (N, 50, 10, 10)
    H = _raw_norm(P, 'bn2', H, training, momentum, eps, impl)
    H = nd.Pooling(nd.relu(H), kernel=(2, 2), stride=(2, 2), pool_type='max')                 # -> (N, 50, 5, 5)
    H = H.reshape((0, -1))                                                                    # -> (N, 1250)
    H = nd.dot(H, P['dense1.weight'], transpose_b=True) + P['dense1.bias']                   # -> (N, 128)
    H = nd.relu(_raw_norm(P, 'bn3', H, training, momentum, eps, impl))
    return nd.dot(H, P['dense2.weight'], transpose_b=True) + P['dense2.bias']                # -> (N, classes)


def _raw_norm(P, layer, X, training, momentum, eps, impl):
    if f'{layer}.gamma' not in P:                                  # norm 'none', or no BN after dense1
        return X
    norm = {'reference': batch_norm, 'fast': fast.batch_norm}[impl]
    return norm(X, P[f'{layer}.gamma'], P[f'{layer}.beta'], P[f'{layer}.running_mean'],
                P[f'{layer}.running_var'], training=training, momentum=momentum, eps=eps)


def named_parameters(net):
    """name -> gluon.Parameter under the names ``save_parameters`` writes (works for RawLeNet too)."""
    if isinstance(net, RawLeNet):
        return dict(net.parameters)
    return net._collect_params_with_prefix()  # the same names save_parameters uses


def raw_to_gluon(params, net):
    """Copy a raw parameter dict into a Gluon LeNet (shapes and names must match exactly)."""
    target = named_parameters(net)
    if set(target) != set(params):
        raise ValueError(f'parameter names differ: only in the raw dict {sorted(set(params) - set(target))}, '
                         f'only in the net {sorted(set(target) - set(params))}. Build both with the same '
                         f'norm and dense_norm.')
    for name, p in target.items():
        if p.shape != params[name].shape:
            raise ValueError(f'{name}: the raw dict has shape {params[name].shape}, the net {p.shape}.')
    for name, p in target.items():
        p.set_data(params[name])
    return net


def gluon_to_raw(net, ctx=None):
    """The parameters of a Gluon LeNet as a fresh raw dict (gradients attached to the trainable ones)."""
    params = {}
    for name, p in named_parameters(net).items():
        params[name] = p.data().copyto(ctx or p.list_ctx()[0])
        if not is_running_stat(name):
            params[name].attach_grad()
    return params


class RawLeNet:
    """Lets ``fit`` and ``evaluate`` drive the raw network like a Gluon block.

    Each array lives in a ``gluon.Parameter`` (moving statistics with ``grad_req='null'``), so gradients,
    the optimizers and the checkpoints treat both styles alike; ``self.params`` is the raw dict that
    :func:`raw_lenet_forward` reads, holding the very arrays the Parameters own.
    """

    def __init__(self, params, ctx=None):
        ctx = ctx or mx.cpu()
        self.parameters, self.params = {}, {}
        for name, value in params.items():
            stat = is_running_stat(name)
            p = gluon.Parameter(name, shape=value.shape, grad_req='null' if stat else 'write',
                                differentiable=not stat)
            p.initialize(ctx=ctx)
            p.set_data(value)
            self.parameters[name] = p
            self.params[name] = p.data(ctx)

    def __call__(self, X):
        check_input(X)
        return raw_lenet_forward(self.params, X, training=autograd.is_training())

    def hybridize(self, *args, **kwargs):
        raise TypeError('the raw network is plain nd code and cannot be hybridized; use style gluon.')


def build_net(norm='scratch', style='gluon', dense_norm=False, article_init=False, ctx=None):
    """A ready network of either style: a Gluon :class:`LeNet` or a :class:`RawLeNet` around a raw dict."""
    if style == 'gluon':
        return lenet(norm, dense_norm, article_init, ctx)
    if style == 'raw':
        return RawLeNet(init_raw_lenet(norm, dense_norm, article_init, ctx), ctx)
    raise ValueError(f"style must be 'gluon' or 'raw'; got {style!r}.")
