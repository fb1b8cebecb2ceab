"""Parameter utilities shared by both styles of the LeNet: names, initial values, and loading arrays.

Both styles name their parameters the way ``save_parameters`` does (``conv1.weight``, ``bn1.gamma``,
``bn1.running_mean``, ``dense1.weight``, ...), so a raw dict, a Gluon net and a ``.params`` file are the
same thing in three forms, and :func:`load_arrays` is the one way any of them goes into a network.
"""
import math

import mxnet as mx
from mxnet import nd
from mxnet.gluon import Block

RUNNING_STATS = ('running_mean', 'running_var')


def named_parameters(net):
    """name -> gluon.Parameter under the names ``save_parameters`` writes (works for RawLeNet too)."""
    if isinstance(net, Block):
        return net._collect_params_with_prefix()  # the same names save_parameters uses
    return dict(net.parameters)                   # RawLeNet keeps its Parameters in a dict of those names


def is_running_stat(name):
    """True for a moving statistic ('bn1.running_mean'): averaged during training, never learned."""
    return name.rsplit('.', 1)[1] in RUNNING_STATS


def load_arrays(net, arrays, source='the arrays'):
    """Set every parameter of ``net`` from ``arrays`` (name -> NDArray, ``save_parameters`` names); return net.

    Everything is checked before anything is set: the names must be the same and every shape must
    match, so a failed load leaves the network as it was.

    Parameters
    ----------
    net : Block or RawLeNet
    arrays : dict
        name -> NDArray, e.g. ``nd.load`` of a ``.params`` file, a raw parameter dict, or another net's values.
    source : str
        What ``arrays`` came from, for the error messages (a file path, 'the raw dict', ...).
    """
    params = named_parameters(net)
    missing, unexpected = sorted(set(params) - set(arrays)), sorted(set(arrays) - set(params))
    if missing or unexpected:
        raise ValueError(f'{source} does not fit this network: missing {missing} (in the network only), '
                         f'unexpected {unexpected} (in {source} only). Build the network as {source} was '
                         f'built (for the LeNet: the same norm and dense_norm).')
    for name, p in params.items():
        if p.shape != arrays[name].shape:
            raise ValueError(f'{source}: {name} has shape {arrays[name].shape}, the network needs {p.shape}.')
    for name, p in params.items():
        p.set_data(arrays[name])
    return net


def copy_parameters(src, dst):
    """Give every parameter of ``dst`` the value of the same-named parameter of ``src``; return ``dst``.

    The two networks must have the same structure; their normalization layers may differ (a scratch
    LeNet and its twin with ``gluon.nn.BatchNorm``), and so may their dtypes.
    """
    values = {name: p.data() for name, p in named_parameters(src).items()}
    return load_arrays(dst, values, source='the source network')


def initial_value(name, shape, article_init=False, ctx=None):
    """The starting value of the parameter called ``name`` (e.g. 'conv1.weight', 'bn2.running_var').

    Xavier weights, gamma 1, beta 0, moving variance 1; ``article_init=True`` draws every weight, bias,
    gamma and beta from N(0, 0.01) and starts the moving variance at 0, as the article did.
    """
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
