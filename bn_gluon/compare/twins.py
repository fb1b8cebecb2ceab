"""Real architectures and saved files: gluoncv ResNets with the scratch layer, and parameter interchange.

gluoncv's model_zoo constructors take ``norm_layer=``; passing ``bn_gluon.BatchNorm`` builds the same
network with the hand-written layer in every place (the v2 ResNets also use it with ``scale=False,
center=False`` straight on the input). With the same parameters the twins must agree in inference mode,
in training mode, and over a few SGD steps. Parameter files must load across the two layers both ways.
"""
import os
import tempfile

import mxnet as mx
import numpy as np
from mxnet import nd

from .. import BatchNorm
from ..models import copy_parameters, is_running_stat, named_parameters
from ..optim import SGD
from .twin_training import dtype_of, max_abs_diff, parameter_differences, sgd_step, train_twins

RESNETS = ('cifar_resnet20_v1', 'cifar_resnet20_v2')


def cifar_like(n, seed=0, ctx=None, classes=10):
    """(X (n, 3, 32, 32), y (n,)): CIFAR-shaped images whose colour and brightness depend on the class."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, classes, size=n)
    colour = rng.normal(0, 1, size=(classes, 3, 1, 1))              # one mean colour per class
    X = colour[y] + rng.normal(0, 1, size=(n, 3, 32, 32))
    return nd.array(X, ctx=ctx), nd.array(y, ctx=ctx)


def resnet_twins(name, ctx=None, seed=0, float64=False):
    """(ours, ref): gluoncv's ``name`` with ``bn_gluon.BatchNorm`` and with ``gluon.nn.BatchNorm``.

    ``ref`` is initialized from ``seed``; ``ours`` gets a copy of every parameter. With ``float64``
    ``ours`` is instead ``ref``'s float64 copy, also with ``gluon.nn.BatchNorm``: the yardstick of how
    far float32 rounding alone moves the numbers.
    """
    from gluoncv.model_zoo import get_model   # gluoncv is slow to import; only this section needs it
    ctx = ctx or mx.cpu()
    mx.random.seed(seed)
    ref = get_model(name)
    ours = get_model(name) if float64 else get_model(name, norm_layer=BatchNorm)
    probe = nd.zeros((1, 3, 32, 32), ctx=ctx)
    for net in (ref, ours):
        net.initialize(mx.init.Xavier(), ctx=ctx)
        net(probe)                                                   # inference mode: shapes only
    if float64:
        ours.cast('float64')
    return copy_parameters(ref, ours), ref


def compare_resnet(name, steps=3, batch_size=8, lr=0.05, momentum=0.9, seed=0, ctx=None, input_grad=True,
                   hybridize=False, float64=False):
    """Outputs of the twins in inference and training mode, then ``steps`` SGD steps side by side.

    Returns a dict: ``inference`` (max |output difference| before training), ``training`` (the
    history of :func:`bn_gluon.compare.twin_training.train_twins`; its first ``output`` entry is the
    training-mode difference from equal parameters) and ``inference_after`` (after the steps).
    ``input_grad`` is passed on to ``train_twins``: without it the first batch norm of a v2 ResNet never
    updates its running statistics under MXNet's CPU operator, and the twins drift apart there.
    ``hybridize`` compiles both networks (the scratch layer's formulas then run in one graph);
    ``float64`` compares gluon's float32 network with its float64 copy instead (:func:`resnet_twins`).
    """
    ctx = ctx or mx.cpu()
    ours, ref = resnet_twins(name, ctx, seed, float64)
    if hybridize:
        ours.hybridize()
        ref.hybridize()
    X_test, _ = cifar_like(batch_size, seed + 1, ctx)

    def inference_difference():
        return float(max_abs_diff(ours(X_test.astype(dtype_of(ours))), ref(X_test)).asscalar())

    before = inference_difference()
    batches = [cifar_like(batch_size, seed + 2 + i, ctx) for i in range(steps)]
    history = train_twins(ours, ref, batches, lr, momentum, input_grad=input_grad)
    return {'name': name, 'inference': before, 'training': history, 'inference_after': inference_difference()}


def distances_to_float64(name, steps=3, seeds=range(5), batch_size=8, lr=0.05, momentum=0.9, ctx=None):
    """How far each float32 ResNet moves from the float64 one over ``steps`` SGD steps, per seed.

    For each seed, three copies of gluoncv's ``name`` start from the same parameters: with
    ``bn_gluon.BatchNorm`` ('scratch'), with ``gluon.nn.BatchNorm`` ('gluon', both float32) and gluon's
    float64 copy, the answer. All three take the same steps (batches of :func:`cifar_like`, the
    hand-written SGD, input gradients as in :func:`compare_resnet`). Comparing the two float32 networks
    with each other mixes the rounding of both; measured against the float64 copy, each
    shows its own.

    Returns ``{'scratch': [...], 'gluon': [...]}``: per seed, the largest difference of any learned
    parameter from the float64 copy after each step.
    """
    ctx = ctx or mx.cpu()
    result = {'scratch': [], 'gluon': []}
    for seed in seeds:
        scratch, gluon32 = resnet_twins(name, ctx, seed)
        exact = resnet_twins(name, ctx, seed, float64=True)[0]
        nets = {'scratch': scratch, 'gluon': gluon32, 'exact': exact}
        optimizers = {k: SGD(named_parameters(net), lr, momentum) for k, net in nets.items()}
        history = {'scratch': [], 'gluon': []}
        for i in range(steps):
            X, y = cifar_like(batch_size, seed + 2 + i, ctx)
            for k, net in nets.items():
                sgd_step(net, optimizers[k], X, y, input_grad=True)
            for k in history:
                diffs = parameter_differences(nets[k], exact)
                history[k].append(max(d for n, d in diffs.items() if not is_running_stat(n)))
        for k in history:
            result[k].append(history[k])
    return result


def interchange(src, dst, X):
    """Save ``src``'s parameters, load them into ``dst`` (built with the other layer) and predict ``X``.

    Returns max |logit difference| and the fraction of equal predicted classes, in inference mode.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'net.params')
        src.save_parameters(path)
        dst.load_parameters(path, ctx=X.context)
    diffs, same, n = [], 0, 0
    for i in range(0, X.shape[0], 1000):                           # inference batches: memory only
        a, b = src(X[i:i + 1000]), dst(X[i:i + 1000])
        diffs.append(float(nd.abs(a - b).max().asscalar()))
        same += int((a.argmax(axis=1) == b.argmax(axis=1)).sum().asscalar())
        n += a.shape[0]
    return {'max_logit_difference': max(diffs), 'same_prediction': same / n, 'n': n}
