"""bn_gluon.functional.lrn and bn_gluon.LRN against nd.LRN, the article's worked example and direct loops."""
import numpy as np
import pytest
from mxnet import autograd, nd

import bn_gluon
from bn_gluon.functional import lrn

RTOL, ATOL = 1e-5, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5


def inter_loop(a, n, k, alpha, beta):
    """The paper's formula, one channel at a time: the sum runs over max(0, i - n//2) .. min(C-1, i + n//2)."""
    C = a.shape[1]
    b = np.empty_like(a)
    for i in range(C):
        lo, hi = max(0, i - n // 2), min(C - 1, i + n // 2)
        b[:, i] = a[:, i] / (k + alpha * (a[:, lo:hi + 1] ** 2).sum(axis=1)) ** beta
    return b


def intra_loop(a, n, k, alpha, beta):
    """Intra-channel LRN pixel by pixel: the square max(0, x - n//2) .. min(W-1, x + n//2) (same for y)."""
    N, C, H, W = a.shape
    h = n // 2
    b = np.empty_like(a)
    for y in range(H):
        for x in range(W):
            window = a[:, :, max(0, y - h):min(H - 1, y + h) + 1, max(0, x - h):min(W - 1, x + h) + 1]
            b[:, :, y, x] = a[:, :, y, x] / (k + alpha * (window ** 2).sum(axis=(2, 3))) ** beta
    return b


def value_and_grad(f, X, dY):
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = f(X)
    Y.backward(dY)
    return Y.asnumpy(), X.grad.asnumpy()


def test_article_worked_example():
    # (k, alpha, beta, n) = (0, 1, 1, 2): each value is divided by the sum of squares of itself and of the
    # channel before and after it. The article's pixel has 1 in channel 0 and 1 in channel 1, no channel
    # -1: 1 / (1^2 + 1^2) = 0.5. The other channels of that pixel here hold 2 and 1.
    a = np.array([1.0, 1.0, 2.0, 1.0], dtype='float32').reshape((1, 4, 1, 1))
    b = lrn(nd.array(a), n=2, k=0, alpha=1, beta=1).asnumpy().ravel()
    assert b[0] == 0.5
    np.testing.assert_allclose(b, [1 / (1 + 1), 1 / (1 + 1 + 4), 2 / (1 + 4 + 1), 1 / (4 + 1)], rtol=1e-6)
    # nd.LRN sums the same three channels with nsize=3 and scales by alpha / 3.
    np.testing.assert_allclose(nd.LRN(nd.array(a), nsize=3, alpha=3, beta=1, knorm=0).asnumpy().ravel(), b,
                               rtol=1e-6)


def test_article_example_on_a_feature_map_matches_the_loop():
    a = np.random.RandomState(0).randint(0, 4, size=(2, 4, 3, 3)).astype('float32') + 1  # > 0: k=0 is safe
    np.testing.assert_allclose(lrn(nd.array(a), n=2, k=0, alpha=1, beta=1).asnumpy(),
                               inter_loop(a, 2, 0, 1, 1), rtol=1e-6)


@pytest.mark.parametrize('n', [1, 3, 5, 7])
@pytest.mark.parametrize('k,alpha,beta', [(2.0, 1e-4, 0.75), (1.0, 0.5, 0.5), (0.5, 2.0, 1.0)])
def test_mxnet_convention_matches_nd_lrn(n, k, alpha, beta):
    rng = np.random.RandomState(n)
    X = nd.array(rng.normal(scale=3.0, size=(4, 9, 5, 6)))
    dY = nd.array(rng.normal(size=X.shape))
    ours = value_and_grad(lambda x: lrn(x, n, k, alpha, beta, convention='mxnet'), X, dY)
    ref = value_and_grad(lambda x: nd.LRN(x, nsize=n, knorm=k, alpha=alpha, beta=beta), X, dY)
    np.testing.assert_allclose(ours[0], ref[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours[1], ref[1], rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize('n', [3, 5])
def test_alexnet_alpha_is_mxnet_alpha_over_n(n):
    X = nd.array(np.random.RandomState(1).normal(scale=3.0, size=(2, 8, 4, 4)))
    np.testing.assert_allclose(lrn(X, n, 2.0, 0.01, 0.75).asnumpy(),
                               nd.LRN(X, nsize=n, knorm=2.0, alpha=0.01 * n, beta=0.75).asnumpy(),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('n', [1, 2, 3, 4, 5])
@pytest.mark.parametrize('shape', [(3, 6), (3, 6, 4), (2, 7, 3, 4), (2, 5, 2, 3, 2)])
def test_inter_channel_matches_loop(n, shape):
    a = np.random.RandomState(2).normal(scale=2.0, size=shape).astype('float32')
    np.testing.assert_allclose(lrn(nd.array(a), n, 1.0, 0.3, 0.75).asnumpy(), inter_loop(a, n, 1.0, 0.3, 0.75),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('n', [1, 2, 3, 4])
def test_intra_channel_matches_loop(n):
    a = np.random.RandomState(3).normal(scale=2.0, size=(2, 3, 5, 6)).astype('float32')
    np.testing.assert_allclose(lrn(nd.array(a), n, 1.0, 0.2, 0.75, region='intra').asnumpy(),
                               intra_loop(a, n, 1.0, 0.2, 0.75), rtol=RTOL, atol=ATOL)


def test_intra_channel_n2_is_the_3x3_square():
    # The article's intra-channel picture: n = 2 sums the (n+1) x (n+1) = 3 x 3 square around the pixel.
    a = np.zeros((1, 1, 5, 5), dtype='float32')
    a[0, 0, 2, 2] = 1.0
    a[0, 0, 1:4, 1:4] += 1.0                # the 3 x 3 square around (2, 2): 4 at the centre, 1 elsewhere
    a[0, 0, 0, 0] = a[0, 0, 4, 4] = 10.0    # outside it: must not count
    b = lrn(nd.array(a), n=2, k=0, alpha=1, beta=1, region='intra').asnumpy()
    assert b[0, 0, 2, 2] == pytest.approx(2.0 / (4 + 8 * 1))


def test_gradients_match_finite_differences():
    rng = np.random.RandomState(4)
    for region, shape in (('inter', (2, 5, 2, 2)), ('intra', (1, 2, 3, 3))):
        a = rng.normal(size=shape)
        dY = rng.normal(size=shape)
        f = (lambda x: inter_loop(x, 2, 1.0, 0.5, 0.75)) if region == 'inter' else \
            (lambda x: intra_loop(x, 2, 1.0, 0.5, 0.75))
        _, dX = value_and_grad(lambda x: lrn(x, 2, 1.0, 0.5, 0.75, region=region),
                               nd.array(a, dtype='float64'), nd.array(dY, dtype='float64'))
        h, num = 1e-6, np.empty_like(a)
        for idx in np.ndindex(*shape):
            up, down = a.copy(), a.copy()
            up[idx] += h
            down[idx] -= h
            num[idx] = ((f(up) - f(down)) * dY).sum() / (2 * h)
        np.testing.assert_allclose(dX, num, rtol=1e-6, atol=1e-8, err_msg=region)


@pytest.mark.parametrize('region', ['inter', 'intra'])
def test_layer_equals_function_imperative_and_hybridized(region):
    rng = np.random.RandomState(5)
    X = nd.array(rng.normal(scale=3.0, size=(4, 6, 5, 5)))
    dY = nd.array(rng.normal(size=X.shape))
    kwargs = dict(n=3, k=1.5, alpha=0.1, beta=0.6, region=region)
    ref = value_and_grad(lambda x: lrn(x, **kwargs), X, dY)
    for hybridize in (False, True):
        layer = bn_gluon.LRN(**kwargs)
        layer.initialize()
        if hybridize:
            layer.hybridize()
        for a, b in zip(value_and_grad(layer, X, dY), ref):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
        assert not list(layer.collect_params().keys())  # LRN learns nothing


def test_layer_defaults_are_alexnets():
    X = nd.array(np.random.RandomState(6).normal(scale=20.0, size=(2, 8, 3, 3)))
    np.testing.assert_allclose(bn_gluon.LRN()(X).asnumpy(), inter_loop(X.asnumpy(), 5, 2.0, 1e-4, 0.75),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('kwargs,match', [
    (dict(n=2, convention='mxnet'), 'odd n'),
    (dict(n=3, region='intra', convention='mxnet'), 'no intra-channel'),
    (dict(n=0), 'integer >= 1'),
    (dict(n=2.0), 'integer >= 1'),
    (dict(k=-1.0), 'k must be'),
    (dict(alpha=-1e-4), 'alpha must be'),
    (dict(region='across'), 'region must be'),
    (dict(convention='caffe'), 'convention must be'),
])
def test_bad_hyperparameters(kwargs, match):
    X = nd.ones((1, 3, 2, 2))
    with pytest.raises(ValueError, match=match):
        lrn(X, **kwargs)
    with pytest.raises(ValueError, match=match):
        bn_gluon.LRN(**kwargs)


@pytest.mark.parametrize('hybridize', [False, True])
def test_bad_inputs(hybridize):
    layer = bn_gluon.LRN(region='intra')
    layer.initialize()
    if hybridize:
        layer.hybridize()
    with pytest.raises(TypeError, match='int32'):
        layer(nd.ones((1, 3, 2, 2), dtype='int32'))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        layer(nd.ones((1, 3, 4)))
    with pytest.raises(TypeError, match='NDArray'):
        lrn(np.ones((1, 3, 2, 2)))
