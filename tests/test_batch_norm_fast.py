"""bn_gluon.functional.fast and bn_gluon.BatchNorm(impl='fast') against the reference implementation.

The reference path reads like the paper and is differentiated by autograd; the fast path computes the
same numbers with other kernels and a hand-derived gradient. Both run on the same inputs here, in
2-D, 3-D and 4-D, float32 and float64, training and inference, imperative and hybridized.
"""
import functools
import subprocess
import sys
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import bn_gluon
from bn_gluon.functional import batch_norm, fast
from test_batch_norm import _finite_difference

IMPLS = {'fast': fast.batch_norm, 'reference': batch_norm}

SHAPES = [(16, 5), (3, 4, 7), (4, 3, 5, 6), (3, 2, 16, 8)]   # the last scales by convolution (S >= 128)
TOL = {'float32': dict(rtol=1e-4, atol=1e-5), 'float64': dict(rtol=1e-10, atol=1e-12)}


def run(impl, x, gamma, beta, mean, var, dY, *, training, dtype, **kwargs):
    """One recorded call of ``batch_norm`` and its backward; everything that came out, as numpy."""
    X, G, B, M, V = (nd.array(a, dtype=dtype) for a in (x, gamma, beta, mean, var))
    inputs = [X, G, B]
    for v in inputs:
        v.attach_grad()
    with autograd.record():
        Y = IMPLS[impl](X, G, B, M, V, training=training, **kwargs)
    Y.backward(nd.array(dY, dtype=dtype))
    return [Y.asnumpy()] + [v.grad.asnumpy() for v in inputs] + [M.asnumpy(), V.asnumpy()]


def random_case(shape, rng, offset=3.0, axis=1):
    C = shape[axis]
    return (rng.normal(offset, 2.0, shape), rng.uniform(0.5, 2.0, C), rng.normal(size=C),
            rng.normal(size=C), rng.uniform(0.5, 2.0, C), rng.normal(size=shape))


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('training', [True, False])
def test_function_matches_reference(shape, dtype, training):
    """Output, gradients of X, gamma and beta, running stats."""
    case = random_case(shape, np.random.RandomState(0))
    kwargs = dict(training=training, dtype=dtype, momentum=0.8, eps=1e-3)
    names = ['Y', 'dX', 'dgamma', 'dbeta', 'mean', 'var']
    for name, a, b in zip(names, run('fast', *case, **kwargs), run('reference', *case, **kwargs)):
        np.testing.assert_allclose(a, b, err_msg=name, **TOL[dtype])


@pytest.mark.parametrize('shape,axis', [((6, 4, 5), 2), ((3, 5, 2, 4), -1), ((4, 3, 5, 6), 0)])
def test_function_matches_reference_on_other_channel_axes(shape, axis):
    case = random_case(shape, np.random.RandomState(1), axis=axis)
    fast = run('fast', *case, training=True, dtype='float64', axis=axis, unbiased_var=True)
    ref = run('reference', *case, training=True, dtype='float64', axis=axis, unbiased_var=True)
    for name, a, b in zip(['Y', 'dX', 'dgamma', 'dbeta', 'mean', 'var'], fast, ref):
        np.testing.assert_allclose(a, b, err_msg=name, **TOL['float64'])


@pytest.mark.parametrize('shape', [(64, 3), (16, 3, 6, 6), (4, 3, 16, 8)])
def test_large_offset_keeps_float32_accurate(shape):
    """1e4 + x: a one-pass E[x^2] - E[x]^2 would lose every digit; the shifted one keeps them.

    The truth is float64 on the float32 input: rounding 1e4 + x to float32 moves it by up to 5e-4, more
    than the arithmetic may.
    """
    x, gamma, beta, mean, var, dY = random_case(shape, np.random.RandomState(2), offset=1e4)
    x = x.astype(np.float32).astype(np.float64)
    truth = run('reference', x, gamma, beta, mean, var, dY, training=True, dtype='float64')
    fast = run('fast', x, gamma, beta, mean, var, dY, training=True, dtype='float32')
    for name, a, b in zip(['Y', 'dX', 'dgamma', 'dbeta', 'mean', 'var'], fast, truth):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize('shape', [(5, 3), (2, 2, 3, 2)])
@pytest.mark.parametrize('training', [True, False])
def test_fast_gradients_match_finite_differences_in_float64(shape, training):
    x0, gamma0, beta0, mean, var, w = random_case(shape, np.random.RandomState(3))

    def loss(x=x0, gamma=gamma0, beta=beta0):
        Y = fast.batch_norm(*(nd.array(a, dtype='float64') for a in (x, gamma, beta, mean, var)),
                            training=training)
        return float((Y * nd.array(w, dtype='float64')).sum().asscalar())

    _, dX, dgamma, dbeta, *_ = run('fast', x0, gamma0, beta0, mean, var, w, training=training, dtype='float64')
    np.testing.assert_allclose(dX, _finite_difference(loss, x0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dgamma, _finite_difference(lambda g: loss(gamma=g), gamma0), rtol=1e-5)
    np.testing.assert_allclose(dbeta, _finite_difference(lambda b: loss(beta=b), beta0), rtol=1e-5)


@pytest.mark.parametrize('scale,center', [(False, True), (True, False), (False, False)])
def test_function_without_gamma_or_beta_matches_reference(scale, center):
    x, gamma, beta, mean, var, dY = random_case((6, 4, 3, 3), np.random.RandomState(4))
    out = {}
    for impl in ('fast', 'reference'):
        X = nd.array(x)
        X.attach_grad()
        M, V = nd.array(mean), nd.array(var)
        with autograd.record():
            Y = IMPLS[impl](X, nd.array(gamma) if scale else None, nd.array(beta) if center else None, M, V,
                            training=True)
        Y.backward(nd.array(dY))
        out[impl] = [Y.asnumpy(), X.grad.asnumpy(), M.asnumpy(), V.asnumpy()]
    for a, b in zip(out['fast'], out['reference']):
        np.testing.assert_allclose(a, b, **TOL['float32'])


def test_function_outside_autograd_matches_reference():
    x, gamma, beta, mean, var, _ = random_case((8, 3, 4, 4), np.random.RandomState(5))
    for training in (True, False):
        out = {}
        for impl in ('fast', 'reference'):
            M, V = nd.array(mean), nd.array(var)
            Y = IMPLS[impl](nd.array(x), nd.array(gamma), nd.array(beta), M, V, training=training)
            out[impl] = [Y.asnumpy(), M.asnumpy(), V.asnumpy()]
        for a, b in zip(out['fast'], out['reference']):
            np.testing.assert_allclose(a, b, **TOL['float32'])


@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('wanted', ['gamma beta', 'beta', 'X beta', 'X', 'gamma'])
def test_gradients_of_some_inputs_only_match_reference(training, wanted):
    """Only the inputs in ``wanted`` take a gradient: X straight from the data, a frozen gamma, ...

    Every requested gradient must arrive, with the reference's value.
    """
    x, gamma, beta, mean, var, dY = random_case((4, 3, 5, 6), np.random.RandomState(11))
    wanted = wanted.split()
    out = {}
    for impl in ('fast', 'reference'):
        arrays = {k: nd.array(a) for k, a in zip(['X', 'gamma', 'beta', 'mean', 'var'], (x, gamma, beta, mean, var))}
        for k in wanted:
            arrays[k].attach_grad()
        with autograd.record():
            Y = IMPLS[impl](*arrays.values(), training=training)
        Y.backward(nd.array(dY))
        out[impl] = [arrays[k].grad.asnumpy() for k in wanted]
    for k, a, b in zip(wanted, out['fast'], out['reference']):
        np.testing.assert_allclose(a, b, err_msg=k, **TOL['float32'])


def gluon_twins(C, rng, grad_reqs):
    """bn_gluon.BatchNorm(impl='fast') and gluon.nn.BatchNorm with the same parameters and grad_reqs."""
    nets = [bn_gluon.BatchNorm(in_channels=C, impl='fast'), gluon.nn.BatchNorm(in_channels=C)]
    gamma, beta = rng.uniform(0.5, 2.0, C), rng.normal(size=C)
    for net in nets:
        net.initialize()
        net.gamma.set_data(nd.array(gamma))
        net.beta.set_data(nd.array(beta))
        net.gamma.grad_req, net.beta.grad_req = grad_reqs
    return nets


@pytest.mark.parametrize('grad_reqs', [('write', 'write'), ('null', 'write'), ('write', 'null'), ('add', 'add')])
@pytest.mark.parametrize('x_grad', [False, True])
def test_layer_gradients_match_gluon_whatever_needs_a_gradient(grad_reqs, x_grad):
    """Two training steps of a layer on the input data (X without a gradient, as a first layer), with a
    frozen gamma or beta, or accumulating gradients (grad_req='add'), against ``gluon.nn.BatchNorm``."""
    rng = np.random.RandomState(12)
    xs, dYs = rng.normal(2.0, 3.0, (2, 4, 3, 5, 6)), rng.normal(size=(2, 4, 3, 5, 6))
    out = []
    for net in gluon_twins(3, rng, grad_reqs):
        got = []
        for x, dY in zip(xs, dYs):
            X = nd.array(x)
            if x_grad:
                X.attach_grad()
            with autograd.record():
                Y = net(X)
            Y.backward(nd.array(dY))
            got += [Y.asnumpy()] + ([X.grad.asnumpy()] if x_grad else [])
            got += [p.grad().asnumpy() for p in (net.gamma, net.beta) if p.grad_req != 'null']
        out.append(got + [net.running_mean.data().asnumpy(), net.running_var.data().asnumpy()])
    for i, (a, b) in enumerate(zip(*out)):
        np.testing.assert_allclose(a, b, err_msg=f'result {i}', rtol=1e-4, atol=1e-4)


# --- the layer: imperative and hybridized --------------------------------------------------------------

def layer(impl, hybridize, dtype, C, rng):
    net = bn_gluon.BatchNorm(in_channels=C, impl=impl, momentum=0.7)
    net.initialize()
    net.cast(dtype)
    net.gamma.set_data(nd.array(rng.uniform(0.5, 2.0, C), dtype=dtype))
    net.beta.set_data(nd.array(rng.normal(size=C), dtype=dtype))
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def layer_steps(net, xs, dYs, dtype, train=True):
    """Forward + backward on each batch; per batch Y, dX, dgamma, dbeta and the running statistics."""
    out = []
    for x, dY in zip(xs, dYs):
        X = nd.array(x, dtype=dtype)
        X.attach_grad()
        with autograd.record(train_mode=train):
            Y = net(X)
        Y.backward(nd.array(dY, dtype=dtype), train_mode=train)
        out.append([Y.asnumpy(), X.grad.asnumpy(), net.gamma.grad().asnumpy(), net.beta.grad().asnumpy(),
                    net.running_mean.data().asnumpy(), net.running_var.data().asnumpy()])
    return out


@pytest.mark.parametrize('shape', [(16, 5), (4, 3, 5, 6), (2, 3, 16, 8)])
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('offset', [3.0, 1e4])
def test_layer_matches_reference_layer(shape, dtype, hybridize, offset):
    """Three training steps, then one in inference; the reference layer runs imperative.

    With the large offset the reference runs in float64: in float32 it is itself off by about 1e-3.
    """
    rng = np.random.RandomState(6)
    xs = [rng.normal(offset, 2.0, shape) for _ in range(4)]
    dYs = [rng.normal(size=shape) for _ in range(4)]
    ref_dtype, tol = (dtype, TOL[dtype]) if offset < 100 else ('float64', dict(rtol=1e-3, atol=2e-3))
    fast = layer('fast', hybridize, dtype, shape[1], np.random.RandomState(7))
    ref = layer('reference', False, ref_dtype, shape[1], np.random.RandomState(7))
    got = layer_steps(fast, xs[:3], dYs[:3], dtype) + layer_steps(fast, xs[3:], dYs[3:], dtype, train=False)
    want = (layer_steps(ref, xs[:3], dYs[:3], ref_dtype)
            + layer_steps(ref, xs[3:], dYs[3:], ref_dtype, train=False))
    for step, (a, b) in enumerate(zip(got, want)):
        for name, u, v in zip(['Y', 'dX', 'dgamma', 'dbeta', 'running_mean', 'running_var'], a, b):
            np.testing.assert_allclose(u, v, err_msg=f'{name} at step {step}', **tol)


@pytest.mark.parametrize('hybridize', [False, True])
def test_layers_of_one_shape_keep_their_own_saved_statistics(hybridize):
    """Two fast layers on the same shape, both forwards before both backwards, as in a deeper net."""
    rng = np.random.RandomState(8)
    x, dY = rng.normal(size=(8, 3, 4, 4)), rng.normal(size=(8, 3, 4, 4))
    results = {}
    for impl in ('fast', 'reference'):
        nets = [layer(impl, hybridize and impl == 'fast', 'float32', 3, np.random.RandomState(k)) for k in (9, 10)]
        X = nd.array(x)
        X.attach_grad()
        with autograd.record():
            Y = nets[1](nd.relu(nets[0](X)))
        Y.backward(nd.array(dY))
        results[impl] = [Y.asnumpy(), X.grad.asnumpy()] + [n.gamma.grad().asnumpy() for n in nets]
    for a, b in zip(results['fast'], results['reference']):
        np.testing.assert_allclose(a, b, **TOL['float32'])


@pytest.mark.parametrize('hybridize', [False, True])
def test_a_second_backward_through_one_graph_matches_the_reference(hybridize):
    """retain_graph=True: the second backward reads again what the forward kept, and accumulates."""
    x = np.random.RandomState(14).normal(size=(6, 3, 4, 4))
    grads = {}
    for impl in ('fast', 'reference'):
        net = layer(impl, hybridize and impl == 'fast', 'float32', 3, np.random.RandomState(13))
        X = nd.array(x)
        X.attach_grad(grad_req='add')
        with autograd.record():
            Y = (net(X) ** 2).sum()
        Y.backward(retain_graph=True)
        Y.backward()
        grads[impl] = X.grad.asnumpy()
    np.testing.assert_allclose(grads['fast'], grads['reference'], **TOL['float32'])


def test_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="impl must be one of .* got 'fused'"):
        bn_gluon.BatchNorm(impl='fused')


def test_hybridized_fast_layer_says_it_is_for_chains():
    net = layer('fast', True, 'float32', 3, np.random.RandomState(15))
    with pytest.warns(UserWarning, match='chain networks'):
        net(nd.ones((4, 3, 2, 2)))


AFTER_HYBRIDIZED = """
import bn_gluon
from mxnet import autograd, nd
from bn_gluon.functional.fast import kernels
layer = bn_gluon.BatchNorm(in_channels=20, impl='fast')
layer.initialize()
layer.hybridize()
X = nd.random.normal(1, 2, shape=(128, 20, 24, 24))
X.attach_grad()
gamma, beta, mean, var = nd.ones(20), nd.zeros(20), nd.zeros(20), nd.ones(20)
for _ in range(2):
    with autograd.record():
        Y = layer(X)
    Y.backward(X)
for _ in range(2):  # at once, while the hybridized layer's custom operators have not run yet
    Y, saved = kernels.forward(X, gamma, beta, mean, var, training=True, momentum=0.9, eps=1e-5, axis=1,
                               unbiased_var=False)
    kernels.backward(Y, saved)
nd.waitall()
"""


def test_the_fast_functions_right_after_a_hybridized_layer_finish():
    """The kernels called on the main thread while the hybridized layer's custom operators (on another
    thread) have not run yet must not deadlock MXNet's engine. In a fresh process, with a time limit far
    above the second it takes, so that a hang fails instead of stalling the run."""
    nd.waitall()   # no work of this process may run while it forks
    subprocess.run([sys.executable, '-c', AFTER_HYBRIDIZED], check=True, timeout=300)


def test_the_old_module_name_warns_and_still_works():
    import importlib
    import sys as _sys
    _sys.modules.pop('bn_gluon.functional.batch_norm_fast', None)
    with pytest.warns(FutureWarning, match='moved to bn_gluon.functional.fast'):
        old = importlib.import_module('bn_gluon.functional.batch_norm_fast')
    X = nd.array(np.random.RandomState(16).normal(size=(6, 3)))
    Y_old = old.batch_norm_fast(X, None, None, nd.zeros(3), nd.ones(3), training=True)
    Y_new = fast.batch_norm(X, None, None, nd.zeros(3), nd.ones(3), training=True)
    np.testing.assert_array_equal(Y_old.asnumpy(), Y_new.asnumpy())


@contextmanager
def _refusing(category):
    """Warnings of ``category`` raised as errors inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter('error', category)
        yield


@pytest.mark.parametrize('impl', ['fast', 'reference'])
def test_the_old_impl_argument_warns_and_still_chooses(impl):
    """``functional.batch_norm(..., impl=...)`` keeps working for one release, warning where to go."""
    X, dY = (nd.array(a) for a in np.random.RandomState(17).normal(3.0, 2.0, size=(2, 4, 3, 5, 6)))
    results = {}
    for name, call in [('old', functools.partial(batch_norm, impl=impl)), ('new', IMPLS[impl])]:
        X.attach_grad()
        warned = pytest.warns(FutureWarning, match='functional.fast.batch_norm')
        with warned if name == 'old' else _refusing(FutureWarning):
            with autograd.record():
                Y = call(X, None, None, nd.zeros(3), nd.ones(3), training=True)
        Y.backward(dY)
        results[name] = Y.asnumpy(), X.grad.asnumpy()
    for old, new in zip(results['old'], results['new']):
        np.testing.assert_array_equal(old, new)


def test_an_unknown_old_impl_argument_is_refused():
    with pytest.raises(ValueError, match="'reference' or 'fast', got 'fastest'"):
        batch_norm(nd.ones((4, 3)), None, None, nd.zeros(3), nd.ones(3), training=True, impl='fastest')


@pytest.mark.parametrize('style', ['gluon', 'raw'])
def test_the_impl_option_reaches_the_network(style):
    from bn_gluon.config import TrainConfig
    from bn_gluon.models import build_net
    net = build_net('scratch', style, impl='fast')
    if style == 'gluon':
        assert {net.bn1._impl, net.bn2._impl} == {'fast'}
    else:
        assert net.impl == 'fast'
    assert TrainConfig(impl='fast').validate().impl == 'fast'
    with pytest.raises(ValueError, match='--impl fast chooses how the scratch batch norm computes; it needs '
                                         '--norm scratch, got --norm gluon'):
        TrainConfig(impl='fast', norm='gluon').validate()
    with pytest.raises(ValueError, match='--impl must be one of reference, fast'):
        TrainConfig(impl='fused').validate()
