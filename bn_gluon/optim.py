"""Stochastic gradient descent written out, and ``gluon.Trainer`` behind the same three methods.

The loss of a batch is summed over its examples, so every update divides the gradient by the batch size:
the learning rate then applies to the mean gradient and does not change meaning with the batch size.
Momentum and weight decay follow ``mxnet.optimizer.SGD``::

    g = grad / batch_size + weight_decay * w
    v = momentum * v - lr * g          # momentum = 0: no v, w -= lr * g
    w = w + v
"""
import math
import os

from mxnet import gluon, nd


def sgd_update(weight, grad, lr, batch_size, momentum=0.0, weight_decay=0.0, velocity=None):
    """One SGD step on one array, in place: ``weight[:] -= lr * grad / batch_size`` and its variants.

    Parameters
    ----------
    weight, grad : NDArray
        The parameter and the gradient of the batch's summed loss.
    lr : float
        Learning rate.
    batch_size : int
        Examples in the batch; turns the summed gradient into the mean one.
    momentum : float
        Fraction of the previous step kept; needs ``velocity`` when > 0.
    weight_decay : float
        L2 penalty ``weight_decay / 2 * ||w||^2`` added to the loss.
    velocity : NDArray or None
        The running step, updated in place.
    """
    grad = grad / batch_size                                # summed-loss gradient -> mean-loss gradient
    if weight_decay:
        grad = grad + weight_decay * weight
    if velocity is None:
        weight[:] -= lr * grad
    else:
        velocity[:] = momentum * velocity - lr * grad
        weight[:] += velocity


def cosine_lr(lr, t, T):
    """Learning rate at step ``t`` of ``T``: from ``lr`` down to 0 along half a cosine.

    Large steps early to move fast, small steps late to settle in a minimum instead of bouncing around it
    (with a constant rate the test accuracy of this LeNet wanders by about half a point from epoch to
    epoch). Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    """
    return lr * 0.5 * (1 + math.cos(math.pi * t / T))


def constant_lr(lr, t, T):
    """The same learning rate at every step."""
    return lr


LR_SCHEDULES = {'cosine': cosine_lr, 'constant': constant_lr}


def trainable(params):
    """The parameters an optimizer may touch: running statistics (``grad_req='null'``) are left out."""
    return {name: p for name, p in params.items() if p.grad_req != 'null'}


class SGD:
    """The hand-written SGD over a dict name -> ``gluon.Parameter``; keeps one velocity per parameter.

    Parameters
    ----------
    params : dict
        name -> gluon.Parameter, e.g. ``bn_gluon.models.named_parameters(net)``.
    lr, momentum, weight_decay : float
        As in :func:`sgd_update`.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = trainable(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = {name: nd.zeros_like(p.data()) for name, p in self.params.items()} if momentum else {}

    def set_learning_rate(self, lr):
        self.lr = lr

    def step(self, batch_size):
        for name, p in self.params.items():
            sgd_update(p.data(), p.grad(), self.lr, batch_size, self.momentum, self.weight_decay,
                       self.velocity.get(name))

    def save_states(self, path):
        nd.save(path, self.velocity)

    def load_states(self, path):
        states = nd.load(path) if self.momentum else {}
        if set(states) != set(self.velocity):
            raise ValueError(f'{path} holds optimizer states for {sorted(states)}; this optimizer needs '
                             f'{sorted(self.velocity)}. Was it saved with the same network and momentum?')
        for name, v in states.items():
            self.velocity[name][:] = v


class TrainerSGD:
    """``gluon.Trainer('sgd')`` with the same lr, momentum and weight-decay meaning as :class:`SGD`."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = trainable(params)
        self.trainer = gluon.Trainer(list(self.params.values()), 'sgd',
                                     {'learning_rate': lr, 'momentum': momentum, 'wd': weight_decay},
                                     kvstore=None)  # one device: no key-value store to go through

    @property
    def lr(self):
        return self.trainer.learning_rate

    def set_learning_rate(self, lr):
        self.trainer.set_learning_rate(lr)

    def step(self, batch_size):
        self.trainer.step(batch_size)                       # rescales the gradient by 1 / batch_size

    def save_states(self, path):
        self.trainer.save_states(path)

    def load_states(self, path):
        if not os.path.isfile(path):
            raise ValueError(f'no optimizer states at {path}.')
        self.trainer.load_states(path)


OPTIMIZERS = {'sgd': SGD, 'trainer': TrainerSGD}


def make_optimizer(kind, params, lr, momentum=0.0, weight_decay=0.0):
    """``SGD`` ('sgd') or ``TrainerSGD`` ('trainer') over ``params`` (name -> gluon.Parameter)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {kind!r}.")
    return OPTIMIZERS[kind](params, lr, momentum, weight_decay)
