"""The articles' LeNet as raw ``nd`` code: a dict of NDArrays and a forward function, batch norm by hand.

The same network as :class:`~bn_gluon.models.lenet.LeNet`, under the same parameter names, with
Gluon's (out, in) layout for dense weights; it knows batch norm only (norm 'scratch' or 'none').
:class:`RawLeNet` lets the training loop drive it like a Gluon block, and :func:`raw_to_gluon` /
:func:`gluon_to_raw` move values between the two styles.
"""
import mxnet as mx
from mxnet import autograd, gluon, nd

from ..functional import fast
from ..functional.batch_norm import batch_norm
from .lenet import LAYERS, check_input
from .norms import RAW_NORMS
from .params import RUNNING_STATS, initial_value, is_running_stat, load_arrays, named_parameters


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


def raw_to_gluon(params, net):
    """Copy a raw parameter dict into a Gluon LeNet (shapes and names must match exactly)."""
    return load_arrays(net, params, source='the raw dict')


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

    def __init__(self, params, ctx=None, impl='reference'):
        ctx = ctx or mx.cpu()
        self.impl = impl
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
        return raw_lenet_forward(self.params, X, training=autograd.is_training(), impl=self.impl)

    def hybridize(self, *args, **kwargs):
        raise TypeError('the raw network is plain nd code and cannot be hybridized; use style gluon.')
