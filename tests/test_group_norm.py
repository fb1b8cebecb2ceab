"""bn_gluon LayerNorm, InstanceNorm and GroupNorm against their gluon.nn namesakes and numpy."""
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import bn_gluon
from bn_gluon.functional import group_norm, instance_norm, layer_norm

RTOL, ATOL = 1e-5, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-4

# (layer name, constructor arguments, input shape): every layout each gluon layer supports.
CASES = [
    ('LayerNorm', {}, (8, 7)),
    ('LayerNorm', {'axis': 1}, (8, 7)),
    ('LayerNorm', {}, (3, 6, 4, 5)),
    ('LayerNorm', {'axis': 1}, (3, 6, 4, 5)),
    ('LayerNorm', {'axis': -2, 'epsilon': 1e-2}, (3, 6, 4, 5)),
    ('InstanceNorm', {}, (3, 6, 7)),
    ('InstanceNorm', {'scale': True}, (3, 6, 4, 5)),
    ('InstanceNorm', {'scale': True, 'axis': -1}, (3, 6, 4, 5)),
    ('InstanceNorm', {'scale': True, 'epsilon': 1e-3}, (2, 4, 3, 2, 3)),
    ('GroupNorm', {}, (3, 6, 4, 5)),
    ('GroupNorm', {'num_groups': 2}, (3, 6, 7)),
    ('GroupNorm', {'num_groups': 3}, (3, 6, 4, 5)),
    ('GroupNorm', {'num_groups': 6, 'epsilon': 1e-3}, (3, 6, 4, 5)),
    ('GroupNorm', {'num_groups': 5}, (2, 20, 3, 3)),
]


def twins(name, kwargs, hybridize=False):
    ours, ref = getattr(bn_gluon, name)(**kwargs), getattr(gluon.nn, name)(**kwargs)
    for layer in (ours, ref):
        layer.initialize()
        if hybridize:
            layer.hybridize()
    return ours, ref


def step(layer, X, dY):
    """Forward and backward; returns (Y, dX, dgamma, dbeta) as numpy (None for a frozen parameter)."""
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = layer(X)
    Y.backward(dY)
    grads = [p.grad().asnumpy() if p.grad_req != 'null' else None for p in (layer.gamma, layer.beta)]
    return [Y.asnumpy(), X.grad.asnumpy()] + grads


@pytest.mark.parametrize('name,kwargs,shape', CASES)
@pytest.mark.parametrize('hybridize', [False, True])
def test_matches_gluon(name, kwargs, shape, hybridize):
    rng = np.random.RandomState(0)
    ours, ref = twins(name, kwargs, hybridize)
    X = nd.array(rng.normal(2.0, 3.0, size=shape))
    for layer in (ours, ref):
        layer(X)  # deferred initialization
    size = ref.gamma.shape[0]
    gamma, beta = rng.uniform(0.5, 2.0, size), rng.normal(size=size)
    for layer in (ours, ref):
        assert layer.gamma.shape == layer.beta.shape
        layer.gamma.set_data(nd.array(gamma))
        layer.beta.set_data(nd.array(beta))
    assert ours.gamma.shape == ref.gamma.shape
    dY = nd.array(rng.normal(size=shape))
    a, b = step(ours, X, dY), step(ref, X, dY)
    np.testing.assert_allclose(a[0], b[0], rtol=RTOL, atol=ATOL, err_msg='Y')
    for what, x, y in zip(('dX', 'dgamma', 'dbeta'), a[1:], b[1:]):
        if y is None:
            assert x is None, what
        else:
            np.testing.assert_allclose(x, y, rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=what)


@pytest.mark.parametrize('name,kwargs,shape', [CASES[3], CASES[6], CASES[11]])
def test_parameter_files_load_both_ways(name, kwargs, shape, tmp_path):
    rng = np.random.RandomState(1)
    X = nd.array(rng.normal(size=shape))
    ours, ref = twins(name, kwargs)
    for layer in (ours, ref):
        layer(X)
    assert sorted(ours._collect_params_with_prefix()) == sorted(ref._collect_params_with_prefix())
    for src, dst in ((ours, ref), (ref, ours)):
        size = src.gamma.shape[0]
        src.gamma.set_data(nd.array(rng.uniform(0.5, 2.0, size)))
        src.beta.set_data(nd.array(rng.normal(size=size)))
        src.save_parameters(str(tmp_path / 'p.params'))
        dst.load_parameters(str(tmp_path / 'p.params'))
        np.testing.assert_allclose(dst(X).asnumpy(), src(X).asnumpy(), rtol=RTOL, atol=ATOL)


def np_standardize(x, axes, eps=1e-5):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def test_group_norm_per_group_gamma_and_2d_input_against_numpy():
    rng = np.random.RandomState(2)
    gamma, beta = np.array([0.5, 2.0, 3.0]), np.array([-1.0, 0.0, 1.0])
    for shape in ((5, 6), (3, 6, 4, 5)):  # 2-D goes beyond gluon.nn.GroupNorm, which wants 3-D or more
        x = rng.normal(1.0, 2.0, size=shape)
        xg = x.reshape(shape[0], 3, -1)  # (N, C, H, W) -> (N, G, C/G*H*W)
        expected = (np_standardize(xg, 2) * gamma[:, None] + beta[:, None]).reshape(shape)
        y = group_norm(nd.array(x), nd.array(gamma), nd.array(beta), num_groups=3).asnumpy()
        np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


def test_the_family_relations():
    x = np.random.RandomState(3).normal(size=(3, 6, 4, 5))
    X = nd.array(x)
    # one group: the paper's layer norm over (C, H, W); C groups: instance norm
    np.testing.assert_allclose(group_norm(X, None, None, num_groups=1).asnumpy(), np_standardize(x, (1, 2, 3)),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(group_norm(X, None, None, num_groups=6).asnumpy(),
                               instance_norm(X, None, None).asnumpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(instance_norm(X, None, None).asnumpy(), np_standardize(x, (2, 3)),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer_norm(X, None, None, axis=1).asnumpy(), np_standardize(x, 1),
                               rtol=RTOL, atol=ATOL)


def test_group_count_that_does_not_divide_the_channels():
    X = nd.ones((2, 20, 3, 3))
    for f in (lambda: group_norm(X, None, None, num_groups=3), lambda: bn_gluon.GroupNorm(num_groups=3)):
        try:
            layer = f()
        except ValueError as e:
            message = str(e)
        else:
            layer.initialize()
            with pytest.raises(ValueError) as info:
                layer(X)
            message = str(info.value)
        assert 'C=20' in message and 'num_groups=3' in message and '[1, 2, 4, 5, 10, 20]' in message


@pytest.mark.parametrize('name,kwargs,bad_shape', [
    ('LayerNorm', {}, (7,)),
    ('InstanceNorm', {}, (4, 6)),
    ('GroupNorm', {'num_groups': 2}, (6,)),
    ('GroupNorm', {'num_groups': 2}, (1, 2, 3, 3, 3, 3)),
])
@pytest.mark.parametrize('hybridize', [False, True])
def test_wrong_ndim_and_integer_dtype(name, kwargs, bad_shape, hybridize):
    layer = getattr(bn_gluon, name)(**kwargs)
    layer.initialize()
    if hybridize:
        layer.hybridize()
    with pytest.raises(ValueError, match=r'expected one of'):
        layer(nd.ones(bad_shape))
    with pytest.raises(TypeError, match='int32.*floating point'):
        layer(nd.ones((2, 6, 4, 4), dtype='int32'))
    if name != 'GroupNorm':
        assert layer.gamma.shape == (0,)  # nothing happened: the shape still waits for a valid input


@pytest.mark.parametrize('hybridize', [False, True])
def test_parameter_shape_mismatch(hybridize):
    for layer, X in ((bn_gluon.LayerNorm(in_channels=5), nd.ones((2, 6))),
                     (bn_gluon.InstanceNorm(in_channels=4, scale=True), nd.ones((2, 6, 3, 3)))):
        layer.initialize()
        if hybridize:
            layer.hybridize()
        with pytest.raises(ValueError, match=r'gamma has shape \((5|4),\)'):
            layer(X)
    with pytest.raises(ValueError, match=r'beta has shape \(4,\), but num_groups=2'):
        group_norm(nd.ones((2, 6, 3)), nd.ones(2), nd.ones(4), num_groups=2)


def test_bad_settings():
    for make in (lambda: bn_gluon.LayerNorm(epsilon=0), lambda: bn_gluon.InstanceNorm(epsilon=-1e-5),
                 lambda: bn_gluon.GroupNorm(epsilon=0.0)):
        with pytest.raises(ValueError, match='eps must be > 0'):
            make()
    with pytest.raises(ValueError, match='eps must be > 0'):
        layer_norm(nd.ones((2, 3)), None, None, eps=0)
    for g in (0, 2.0, True):
        with pytest.raises(ValueError, match='num_groups must be an integer'):
            bn_gluon.GroupNorm(num_groups=g)
    with pytest.raises(ValueError, match='axis 0 is the batch axis'):
        instance_norm(nd.ones((2, 3, 4)), None, None, axis=0)
    with pytest.raises(ValueError, match='out of range'):
        layer_norm(nd.ones((2, 3)), None, None, axis=2)


def test_sets_of_one_value_are_refused():
    # Standardizing a single value gives 0, so the layer would output beta whatever came in.
    layer = bn_gluon.InstanceNorm()
    layer.initialize()
    with pytest.raises(ValueError, match='sets of 1 value'):
        layer(nd.ones((8, 4, 1, 1)))  # a 1 x 1 map, e.g. after global pooling
    with pytest.raises(ValueError, match='sets of 1 value'):
        group_norm(nd.ones((8, 4)), None, None, num_groups=4)
    with pytest.raises(ValueError, match='sets of 1 value'):
        layer_norm(nd.ones((8, 4, 1)), None, None)


@pytest.mark.parametrize('hybridize', [False, True])
def test_center_and_scale_off_freeze_beta_and_gamma_as_gluon_does(hybridize):
    X = nd.array(np.random.RandomState(4).normal(size=(2, 4, 3, 3)))
    ours, ref = twins('GroupNorm', dict(num_groups=2, center=False, scale=False), hybridize)
    for layer in (ours, ref):
        layer.gamma.set_data(nd.array([3.0, 4.0]))  # as from a parameter file: frozen, but still applied
        layer.beta.set_data(nd.array([1.0, 2.0]))
        assert layer.gamma.grad_req == layer.beta.grad_req == 'null'
    np.testing.assert_allclose(ours(X).asnumpy(), ref(X).asnumpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours(X).asnumpy(), group_norm(X, nd.array([3.0, 4.0]), nd.array([1.0, 2.0]),
                                                            num_groups=2).asnumpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('hybridize', [False, True])
def test_deferred_shapes_inside_a_hybridized_network(hybridize):
    # A hybridized parent infers every deferred parameter shape from its own graph, not the child's.
    def net(nn):
        seq = gluon.nn.HybridSequential()
        seq.add(nn.LayerNorm(axis=1), nn.InstanceNorm(axis=-1, scale=True), nn.GroupNorm(num_groups=2),
                nn.LayerNorm())
        seq.initialize()
        if hybridize:
            seq.hybridize()
        return seq
    rng = np.random.RandomState(5)
    X = nd.array(rng.normal(1.0, 2.0, size=(3, 6, 4, 5)))
    ours, ref = net(bn_gluon), net(gluon.nn)
    for seq in (ours, ref):
        seq(X)
    for a, b in zip(ours, ref):
        assert a.gamma.shape == b.gamma.shape
        gamma, beta = rng.uniform(0.5, 2.0, b.gamma.shape), rng.normal(size=b.beta.shape)
        for layer in (a, b):
            layer.gamma.set_data(nd.array(gamma))
            layer.beta.set_data(nd.array(beta))
    np.testing.assert_allclose(ours(X).asnumpy(), ref(X).asnumpy(), rtol=RTOL, atol=ATOL)
