"""bn_gluon.functional.batch_norm and bn_gluon.BatchNorm against gluon.nn.BatchNorm and finite differences."""
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import bn_gluon
from bn_gluon.functional import batch_norm, batch_norm_backward

RTOL, ATOL = 1e-4, 1e-5


def twins(hybridize=False, **kwargs):
    """A scratch BatchNorm and a gluon.nn.BatchNorm with the same arguments and initial parameters."""
    ours, ref = bn_gluon.BatchNorm(**kwargs), gluon.nn.BatchNorm(**kwargs)
    for net in (ours, ref):
        net.initialize()
        if hybridize:
            net.hybridize()
    return ours, ref


def randomize(layer, C, rng):
    """Non-trivial gamma, beta and running statistics, so a wrong formula cannot pass by accident."""
    layer.gamma.set_data(nd.array(rng.uniform(0.5, 2.0, C)))
    layer.beta.set_data(nd.array(rng.normal(size=C)))
    layer.running_mean.set_data(nd.array(rng.normal(size=C)))
    layer.running_var.set_data(nd.array(rng.uniform(0.5, 2.0, C)))


def step(layer, X, dY, train=True):
    """One forward (and backward when training) pass; returns (Y, dX, dgamma, dbeta) as numpy."""
    X = X.copy()
    X.attach_grad()
    with autograd.record(train_mode=train):
        Y = layer(X)
    Y.backward(dY, train_mode=train)  # backward's own mode defaults to training, even after an eval forward
    grads = [p.grad().asnumpy() if p.grad_req != 'null' else None for p in (layer.gamma, layer.beta)]
    return [Y.asnumpy(), X.grad.asnumpy()] + grads


def assert_same_layer_state(ours, ref):
    for name in ('gamma', 'beta', 'running_mean', 'running_var'):
        a, b = getattr(ours, name).data().asnumpy(), getattr(ref, name).data().asnumpy()
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)


SHAPES = [(8, 5), (3, 7, 11), (3, 7, 5, 9), (2, 3, 4, 3, 5), (16, 20, 6, 6)]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('momentum,eps', [(0.9, 1e-5), (0.5, 1e-3), (0.99, 1e-2)])
def test_matches_gluon_over_several_training_steps(shape, hybridize, momentum, eps):
    rng = np.random.RandomState(1)
    C = shape[1]
    ours, ref = twins(hybridize, momentum=momentum, epsilon=eps)
    for layer in (ours, ref):
        step(layer, nd.zeros(shape), nd.zeros(shape), train=False)  # deferred init
    randomize(ref, C, np.random.RandomState(2))
    randomize(ours, C, np.random.RandomState(2))
    for _ in range(4):
        X = nd.array(rng.normal(3.0, 2.5, size=shape))
        dY = nd.array(rng.normal(size=shape))
        for a, b in zip(step(ours, X, dY), step(ref, X, dY)):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-4)
        assert_same_layer_state(ours, ref)
    # inference with the statistics both have accumulated
    X = nd.array(rng.normal(3.0, 2.5, size=shape))
    dY = nd.array(rng.normal(size=shape))
    for a, b in zip(step(ours, X, dY, train=False), step(ref, X, dY, train=False)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize('center,scale', [(False, True), (True, False), (False, False)])
@pytest.mark.parametrize('hybridize', [False, True])
def test_center_scale_off_match_gluon(center, scale, hybridize):
    shape = (6, 4, 3, 3)
    ours, ref = twins(hybridize, center=center, scale=scale)
    rng = np.random.RandomState(3)
    for layer in (ours, ref):
        step(layer, nd.zeros(shape), nd.zeros(shape), train=False)
        randomize(layer, 4, np.random.RandomState(4))   # a non-zero beta: center=False still adds it
    X, dY = nd.array(rng.normal(size=shape)), nd.array(rng.normal(size=shape))
    for train in (True, False):
        for a, b in zip(step(ours, X, dY, train), step(ref, X, dY, train)):
            if a is None:
                assert b is None
                continue
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-4)
    assert ours.gamma.grad_req == ref.gamma.grad_req and ours.beta.grad_req == ref.beta.grad_req


@pytest.mark.parametrize('hybridize', [False, True])
def test_center_off_uses_a_loaded_beta_as_gluon_does_in_both_load_directions(tmp_path, hybridize):
    """center=False stops learning beta, not adding it: a non-zero beta from a file acts in both layers."""
    shape = (6, 4, 3, 3)
    rng = np.random.RandomState(7)
    X, dY = nd.array(rng.normal(2.0, 1.5, size=shape)), nd.array(rng.normal(size=shape))
    for src_cls, dst_cls in ((gluon.nn.BatchNorm, bn_gluon.BatchNorm), (bn_gluon.BatchNorm, gluon.nn.BatchNorm)):
        src, dst = src_cls(center=False), dst_cls(center=False)
        for layer in (src, dst):
            layer.initialize()
            step(layer, nd.zeros(shape), nd.zeros(shape), train=False)
        randomize(src, 4, np.random.RandomState(8))
        assert np.abs(src.beta.data().asnumpy()).min() > 0
        path = str(tmp_path / f'{src_cls.__module__}.params')
        src.save_parameters(path)
        dst.load_parameters(path)
        if hybridize:
            src.hybridize()
            dst.hybridize()
        for train in (True, False):
            for a, b in zip(step(src, X, dY, train), step(dst, X, dY, train)):
                if a is not None:
                    np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-4)
        assert dst.beta.grad_req == 'null'


@pytest.mark.filterwarnings('ignore:Cannot decide type')
def test_exported_hybridized_net_loads_back_as_a_symbol_block(tmp_path):
    """export() of a net with the scratch layer, loaded by SymbolBlock.imports (bn_gluon imported)."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(4, 3), bn_gluon.BatchNorm(), gluon.nn.Activation('relu'), gluon.nn.Dense(3))
    net.initialize()
    net.hybridize()
    rng = np.random.RandomState(9)
    for _ in range(2):                                           # moves the running statistics
        X = nd.array(rng.normal(size=(4, 2, 6, 6)))
        with autograd.record():
            loss = net(X).sum()
        loss.backward()
    expected = net(X).asnumpy()
    net.export(str(tmp_path / 'net'))
    back = gluon.SymbolBlock.imports(str(tmp_path / 'net-symbol.json'), ['data'], str(tmp_path / 'net-0000.params'))
    np.testing.assert_allclose(back(X).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    stats = {k: v for k, v in back.collect_params().items() if k.endswith('running_mean')}
    assert len(stats) == 1 and np.abs(next(iter(stats.values())).data().asnumpy()).max() > 0


@pytest.mark.parametrize('hybridize', [False, True])
def test_use_global_stats_matches_gluon_and_freezes_statistics(hybridize):
    shape = (5, 3, 4, 4)
    ours, ref = twins(hybridize, use_global_stats=True)
    rng = np.random.RandomState(5)
    for layer in (ours, ref):
        step(layer, nd.zeros(shape), nd.zeros(shape), train=False)
        randomize(layer, 3, np.random.RandomState(6))
    before = ours.running_mean.data().asnumpy()
    X, dY = nd.array(rng.normal(size=shape)), nd.array(rng.normal(size=shape))
    for a, b in zip(step(ours, X, dY, train=True), step(ref, X, dY, train=True)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-4)
    np.testing.assert_array_equal(ours.running_mean.data().asnumpy(), before)
    assert_same_layer_state(ours, ref)


def test_fully_connected_worked_example():
    # The articles' example: three samples of two features; each column normalizes on its own.
    A = nd.arange(6).reshape((3, 2))
    Y = batch_norm(A, nd.ones(2), nd.zeros(2), nd.zeros(2), nd.ones(2), training=True).asnumpy()
    np.testing.assert_allclose(Y.mean(axis=0), [0, 0], atol=1e-6)
    np.testing.assert_allclose(Y.var(axis=0), [1, 1], rtol=1e-4)   # 1 - eps / var, var = 8/3
    np.testing.assert_allclose(Y[:, 0], [-1.2247427, 0.0, 1.2247427], rtol=1e-5)


def test_convolution_worked_example():
    # One image, two channels of 3x3: statistics per channel over (N, H, W), one gamma/beta per channel.
    B = nd.arange(18).reshape((1, 2, 3, 3))
    Y = batch_norm(B, nd.ones(2), nd.zeros(2), nd.zeros(2), nd.ones(2), training=True).asnumpy()
    np.testing.assert_allclose(Y.mean(axis=(0, 2, 3)), [0, 0], atol=1e-6)
    np.testing.assert_allclose(Y.var(axis=(0, 2, 3)), [1, 1], rtol=1e-4)
    np.testing.assert_allclose(Y[0, 0], Y[0, 1], atol=1e-6)  # the channels differ only by an offset of 9


def test_moving_statistics_follow_mxnet_momentum_convention():
    X = nd.array(np.random.RandomState(0).normal(2.0, 3.0, size=(10, 4)))
    mm, mv = nd.zeros(4), nd.ones(4)
    batch_norm(X, None, None, mm, mv, training=True, momentum=0.9)
    x = X.asnumpy()
    np.testing.assert_allclose(mm.asnumpy(), 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(mv.asnumpy(), 0.9 + 0.1 * x.var(0), rtol=1e-5)


def test_unbiased_option_stores_m_over_m_minus_1_variance():
    X = nd.array(np.random.RandomState(0).normal(size=(3, 2, 2, 2)))  # m = 3 * 2 * 2 = 12 per channel
    mm, mv = nd.zeros(2), nd.zeros(2)
    batch_norm(X, None, None, mm, mv, training=True, momentum=0.0, unbiased_var=True)
    np.testing.assert_allclose(mv.asnumpy(), X.asnumpy().var(axis=(0, 2, 3), ddof=1), rtol=1e-5)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('unbiased', [False, True])
def test_layer_stores_the_variance_asked_for(hybridize, unbiased):
    """The layer's running variance after one step with momentum 0: the batch's, biased or m / (m - 1) times."""
    X = nd.array(np.random.RandomState(0).normal(size=(3, 2, 2, 2)))  # m = 3 * 2 * 2 = 12 per channel
    layer = bn_gluon.BatchNorm(momentum=0.0, unbiased_var=unbiased, in_channels=2)
    layer.initialize()
    if hybridize:
        layer.hybridize()
    with autograd.record():
        layer(X)
    expected = X.asnumpy().var(axis=(0, 2, 3), ddof=1 if unbiased else 0)
    np.testing.assert_allclose(layer.running_var.data().asnumpy(), expected, rtol=1e-5)


def test_inference_uses_moving_statistics_and_updates_nothing():
    X = nd.array(np.random.RandomState(0).normal(size=(4, 3)))
    mm, mv = nd.array([1.0, -1.0, 0.5]), nd.array([4.0, 0.25, 1.0])
    Y = batch_norm(X, nd.array([2.0, 1.0, 1.0]), nd.array([0.0, 1.0, 0.0]), mm, mv, training=False, eps=0.0 + 1e-8)
    expected = (X.asnumpy() - [1.0, -1.0, 0.5]) / np.sqrt([4.0, 0.25, 1.0]) * [2, 1, 1] + [0, 1, 0]
    np.testing.assert_allclose(Y.asnumpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(mm.asnumpy(), [1.0, -1.0, 0.5])
    np.testing.assert_array_equal(mv.asnumpy(), [4.0, 0.25, 1.0])


def test_moving_update_is_outside_the_autograd_graph():
    from mxnet.base import MXNetError

    X = nd.array(np.random.RandomState(0).normal(size=(4, 3)))
    X.attach_grad()
    mm, mv = nd.zeros(3), nd.ones(3)
    with autograd.record():
        batch_norm(X, None, None, mm, mv, training=True)
        Z = (mm * 2 + mv).sum()
    # Had the update been recorded, Z would depend on X and X.grad would be 0.2 everywhere.
    with pytest.raises(MXNetError, match='not in a computational graph'):
        Z.backward()
    np.testing.assert_array_equal(X.grad.asnumpy(), 0)


def _finite_difference(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = (f(xp) - f(xm)) / (2 * h)
    return grad


@pytest.mark.parametrize('shape', [(4, 3), (2, 2, 3, 2)])
def test_gradients_match_finite_differences_in_float64(shape):
    rng = np.random.RandomState(7)
    x0, w = rng.normal(size=shape), rng.normal(size=shape)  # loss = sum(w * Y)
    gamma0, beta0 = rng.uniform(0.5, 2, shape[1]), rng.normal(size=shape[1])

    def loss(x, gamma=gamma0, beta=beta0):
        C = shape[1]
        Y = batch_norm(nd.array(x, dtype='float64'), nd.array(gamma, dtype='float64'),
                       nd.array(beta, dtype='float64'), nd.zeros(C, dtype='float64'),
                       nd.ones(C, dtype='float64'), training=True)
        return float((Y * nd.array(w, dtype='float64')).sum().asscalar())

    X, G, B = (nd.array(a, dtype='float64') for a in (x0, gamma0, beta0))
    for v in (X, G, B):
        v.attach_grad()
    with autograd.record():
        Y = batch_norm(X, G, B, nd.zeros(shape[1], dtype='float64'), nd.ones(shape[1], dtype='float64'),
                       training=True)
    Y.backward(nd.array(w, dtype='float64'))
    np.testing.assert_allclose(X.grad.asnumpy(), _finite_difference(loss, x0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(G.grad.asnumpy(), _finite_difference(lambda g: loss(x0, g), gamma0), rtol=1e-5)
    np.testing.assert_allclose(B.grad.asnumpy(), _finite_difference(lambda b: loss(x0, beta=b), beta0), rtol=1e-5)

    # The closed form used by the hybridized layer agrees with autograd.
    axes = tuple(a for a in range(len(shape)) if a != 1)
    dX, dgamma, dbeta = batch_norm_backward(nd.array(w, dtype='float64'), X, G,
                                            nd.array(x0.mean(axes), dtype='float64'),
                                            nd.array(x0.var(axes), dtype='float64'), 1e-5)
    np.testing.assert_allclose(dX.asnumpy(), X.grad.asnumpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dgamma.asnumpy(), G.grad.asnumpy(), rtol=1e-8)
    np.testing.assert_allclose(dbeta.asnumpy(), B.grad.asnumpy(), rtol=1e-8)


def test_float16_input_returns_float16_with_float32_statistics():
    X = nd.array(np.random.RandomState(0).normal(100.0, 50.0, size=(64, 3, 8, 8)))
    mm, mv = nd.zeros(3), nd.ones(3)
    Y16 = batch_norm(X.astype('float16'), nd.ones(3), nd.zeros(3), mm, mv, training=True)
    Y32 = batch_norm(X.astype('float16').astype('float32'), nd.ones(3), nd.zeros(3), nd.zeros(3), nd.ones(3),
                     training=True)
    assert Y16.dtype == np.float16 and mm.dtype == np.float32
    np.testing.assert_allclose(Y16.asnumpy().astype(np.float32), Y32.asnumpy(), atol=5e-3)


def test_float16_layer_keeps_float32_parameters():
    layer = bn_gluon.BatchNorm(in_channels=3)
    layer.initialize()
    layer.cast('float16')
    assert layer.running_var.data().dtype == np.float32
    with autograd.record():
        Y = layer(nd.ones((4, 3), dtype='float16') * nd.arange(4, dtype='float16').reshape((4, 1)))
    assert Y.dtype == np.float16


def test_recorded_forward_moves_running_stats_without_backward():
    """The documented difference from MXNet's CPU operator, which moves them only in backward."""
    ours, ref = twins()
    X = nd.array(np.random.RandomState(0).normal(5.0, 1.0, size=(8, 3)))
    for layer in (ours, ref):
        with autograd.record():
            layer(X)
    assert np.all(ours.running_mean.data().asnumpy() > 0.4)
    np.testing.assert_array_equal(ref.running_mean.data().asnumpy(), 0)


def test_parameters_interchange_with_gluon_batch_norm(tmp_path):
    def net(norm):
        n = gluon.nn.HybridSequential()
        n.add(gluon.nn.Conv2D(4, 3), norm(), gluon.nn.Activation('relu'), gluon.nn.Dense(3))
        n.initialize()
        return n

    X = nd.array(np.random.RandomState(0).normal(size=(6, 2, 7, 7)))
    src = net(bn_gluon.BatchNorm)
    for _ in range(3):
        with autograd.record():
            loss = src(X).sum()
        loss.backward()  # moves the running statistics away from their initial values
    src.save_parameters(str(tmp_path / 'ours.params'))
    dst = net(gluon.nn.BatchNorm)
    dst.load_parameters(str(tmp_path / 'ours.params'))
    np.testing.assert_allclose(src(X).asnumpy(), dst(X).asnumpy(), rtol=1e-5, atol=1e-6)

    dst.save_parameters(str(tmp_path / 'gluon.params'))
    back = net(bn_gluon.BatchNorm)
    back.load_parameters(str(tmp_path / 'gluon.params'))
    np.testing.assert_allclose(back(X).asnumpy(), dst(X).asnumpy(), rtol=1e-5, atol=1e-6)


def test_hybridized_and_imperative_give_the_same_numbers():
    X = nd.array(np.random.RandomState(0).normal(size=(5, 3, 4, 4)))
    results = []
    for hybridize in (False, True):
        layer = bn_gluon.BatchNorm()
        layer.initialize()
        if hybridize:
            layer.hybridize()
        out = step(layer, X, X * 0.5)
        results.append(out + [layer.running_mean.data().asnumpy(), layer.running_var.data().asnumpy(),
                              layer(X).asnumpy()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['cifar_resnet20_v1', 'cifar_resnet20_v2'])
def test_gluoncv_resnet_with_scratch_norm_layer_matches_gluon_twin(name, tmp_path):
    from gluoncv.model_zoo import get_model

    ours = get_model(name, norm_layer=bn_gluon.BatchNorm)
    ref = get_model(name)
    X = nd.array(np.random.RandomState(0).normal(size=(4, 3, 32, 32)))
    ref.initialize()
    ref(X)
    ref.save_parameters(str(tmp_path / 'ref.params'))
    ours.load_parameters(str(tmp_path / 'ref.params'))
    np.testing.assert_allclose(ours(X).asnumpy(), ref(X).asnumpy(), rtol=1e-4, atol=1e-4)  # inference
    outs = []
    X.attach_grad()  # so backward reaches the first BN, where MXNet's CPU op updates its statistics
    for net in (ours, ref):
        with autograd.record():
            y = net(X)
        y.backward()
        outs.append(y.asnumpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-4)  # training mode
    for (k, p), (k2, q) in zip(sorted(ours.collect_params().items()), sorted(ref.collect_params().items())):
        np.testing.assert_allclose(p.data().asnumpy(), q.data().asnumpy(), rtol=1e-4, atol=1e-5, err_msg=k)


# --- bad input: a clear error, and nothing moved -----------------------------------------------------

def _state():
    return nd.ones(3), nd.zeros(3), nd.zeros(3), nd.ones(3)


BAD = [
    (nd.ones((4,)), {}, ValueError, 'expected one of'),
    (nd.ones((2, 3, 2, 2, 2, 2)), {}, ValueError, '6-D'),
    (nd.ones((4, 3), dtype='int32'), {}, TypeError, "astype('float32')"),
    (nd.ones((4, 3), dtype='uint8'), {}, TypeError, 'uint8'),
    (np.ones((4, 3), dtype='float32'), {}, TypeError, 'NDArray'),
    (nd.ones((4, 5)), {}, ValueError, 'expected shape (5,)'),
    (nd.ones((1, 3)), {}, ValueError, 'variance is undefined'),
    (nd.ones((1, 3, 1, 1)), {}, ValueError, 'larger batch'),
    (nd.ones((4, 3)), {'momentum': 1.5}, ValueError, 'momentum must be in [0, 1]'),
    (nd.ones((4, 3)), {'momentum': -0.1}, ValueError, 'momentum'),
    (nd.ones((4, 3)), {'eps': 0.0}, ValueError, 'eps must be > 0'),
]


@pytest.mark.parametrize('X,kwargs,error,words', BAD)
def test_bad_input_is_refused_before_anything_moves(X, kwargs, error, words):
    gamma, beta, mm, mv = _state()
    mm[:] = 0.25
    with pytest.raises(error) as info:
        batch_norm(X, gamma, beta, mm, mv, training=True, **kwargs)
    assert words in str(info.value)
    np.testing.assert_array_equal(mm.asnumpy(), 0.25)
    np.testing.assert_array_equal(mv.asnumpy(), 1.0)


def test_mismatched_parameter_shapes_name_the_parameter():
    X = nd.ones((4, 3))
    for i, name in enumerate(('gamma', 'beta', 'moving_mean', 'moving_var')):
        args = list(_state())
        args[i] = nd.ones(2)
        with pytest.raises(ValueError, match=f'{name} has shape'):
            batch_norm(X, *args, training=False)


def test_batch_of_one_in_inference_is_fine():
    gamma, beta, mm, mv = _state()
    Y = batch_norm(nd.array([[1.0, 2.0, 3.0]]), gamma, beta, mm, mv, training=False)
    np.testing.assert_allclose(Y.asnumpy(), [[1.0, 2.0, 3.0]] / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_layer_refuses_a_batch_of_one_in_training_and_keeps_its_statistics():
    layer = bn_gluon.BatchNorm(in_channels=3)
    layer.initialize()
    with pytest.raises(ValueError, match='variance is undefined'):
        with autograd.record():
            layer(nd.ones((1, 3)))
    np.testing.assert_array_equal(layer.running_mean.data().asnumpy(), 0)


def test_layer_with_declared_channels_refuses_other_channel_counts():
    layer = bn_gluon.BatchNorm(in_channels=3)
    layer.initialize()
    with pytest.raises(ValueError, match='expected shape'):
        layer(nd.ones((4, 5)))


@pytest.mark.parametrize('kwargs,words', [(dict(momentum=1.5), 'momentum must be in \\[0, 1\\].*got 1.5'),
                                          (dict(epsilon=0), 'eps must be > 0'),
                                          (dict(impl='slow'), "impl must be one of .*got 'slow'"),
                                          (dict(in_channels=-2), 'in_channels must be an int >= 0')])
def test_bad_constructor_arguments_are_refused_at_construction(kwargs, words):
    with pytest.raises(ValueError, match=words):
        bn_gluon.BatchNorm(**kwargs)


@pytest.mark.parametrize('hybridize', [False, True])
def test_an_empty_batch_is_refused_in_words(hybridize):
    layer = bn_gluon.BatchNorm(in_channels=3)
    layer.initialize()
    if hybridize:
        layer.hybridize()
    empty = nd.array(np.zeros((0, 3)))               # e.g. the slice past the end of a data set
    with pytest.raises(ValueError, match=r'shape \(0, 3\): a batch with no values'):
        with autograd.record():
            layer(empty)
    with pytest.raises(ValueError, match=r'X has shape \(0, 3\): a batch with no values'):
        batch_norm(empty, None, None, nd.zeros(3), nd.ones(3), training=False)
