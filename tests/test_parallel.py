"""Data parallelism and synchronized batch norm on two CPU contexts of one process.

References: gluon.nn.BatchNorm on one device with the whole batch (K*B), finite differences, and
gluon.contrib.nn.SyncBatchNorm(num_devices=2). The latter runs on CPU contexts in MXNet 1.9.1 as a lone
layer; inside a conv -> BN -> relu -> pool -> dense net on cpu(0), cpu(1) it deadlocks (its operator
waits inside MXNet's engine), so it is compared layer against layer only.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

import bn_gluon
from bn_gluon import parallel
from bn_gluon.config import parse_ctxs
from bn_gluon.functional import batch_norm, sync_batch_norm, sync_batch_norm_backward
from bn_gluon.functional.sync_batch_norm import combine_moments, local_moments

CTXS = [mx.cpu(0), mx.cpu(1)]
RTOL, ATOL = 1e-4, 1e-5


def shifted_batch(rng, shape, shift=3.0):
    """A batch whose two halves differ in distribution: the second is shifted and wider."""
    X = rng.normal(size=shape)
    X[shape[0] // 2:] = X[shape[0] // 2:] * 2.0 + shift
    return X


def run(layer, X, dY, ctxs):
    """A training step of ``layer`` over ``X`` split across ``ctxs``: (Y, dX, summed dgamma, summed dbeta)."""
    Xs, dYs = parallel.split_batch(nd.array(X), nd.array(dY), ctxs)
    for X_k in Xs:
        X_k.attach_grad()
    with autograd.record():
        Ys = parallel.lockstep(layer, Xs)
    autograd.backward(Ys, dYs)
    cat = lambda arrays: np.concatenate([a.asnumpy() for a in arrays])  # noqa: E731
    return (cat(Ys), cat([X_k.grad for X_k in Xs]), sum(g.asnumpy() for g in layer.gamma.list_grad()),
            sum(g.asnumpy() for g in layer.beta.list_grad()))


def stats(layer):
    return [(layer.running_mean.data(c).asnumpy(), layer.running_var.data(c).asnumpy())
            for c in layer.running_mean.list_ctx()]


# ---- the pure functions -------------------------------------------------------------------------------

@pytest.mark.parametrize('sizes', [(4, 4), (3, 5), (1, 2, 5)])
def test_combined_moments_equal_those_of_the_whole_batch(sizes):
    rng = np.random.RandomState(0)
    X = rng.normal(100.0, 0.5, (sum(sizes), 3, 4, 4))  # a large mean: the raw E[x^2] - E[x]^2 would fail
    bounds = np.cumsum((0,) + sizes)
    parts = [local_moments(nd.array(X[a:b])) for a, b in zip(bounds, bounds[1:])]
    m, mean, var = combine_moments(parts)
    assert m == X.size // 3
    np.testing.assert_allclose(mean.asnumpy(), X.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(var.asnumpy(), X.var(axis=(0, 2, 3)), rtol=1e-3)


@pytest.mark.parametrize('shape,split', [((8, 3, 4, 4), 4), ((7, 5), 3)])
def test_sync_batch_norm_function_equals_batch_norm_of_the_whole_batch(shape, split):
    rng = np.random.RandomState(1)
    C = shape[1]
    X, dY = shifted_batch(rng, shape), rng.normal(size=shape)
    gamma, beta = rng.uniform(0.5, 2, C), rng.normal(size=C)
    # one device, the whole batch
    Xr, Gr, Br = nd.array(X), nd.array(gamma), nd.array(beta)
    mm_r, mv_r = nd.zeros(C), nd.ones(C)
    for v in (Xr, Gr, Br):
        v.attach_grad()
    with autograd.record():
        Yr = batch_norm(Xr, Gr, Br, mm_r, mv_r, training=True)
    Yr.backward(nd.array(dY))
    # two devices, uneven slices
    Xs = [nd.array(X[:split], ctx=CTXS[0]), nd.array(X[split:], ctx=CTXS[1])]
    dYs = [nd.array(dY[:split], ctx=CTXS[0]), nd.array(dY[split:], ctx=CTXS[1])]
    Gs, Bs = [nd.array(gamma, ctx=c) for c in CTXS], [nd.array(beta, ctx=c) for c in CTXS]
    mms, mvs = [nd.zeros(C, ctx=c) for c in CTXS], [nd.ones(C, ctx=c) for c in CTXS]
    for v in Xs + Gs + Bs:
        v.attach_grad()
    with autograd.record():
        Ys = sync_batch_norm(Xs, Gs, Bs, mms, mvs, training=True)
    autograd.backward(Ys, dYs)
    cat = lambda arrays: np.concatenate([a.asnumpy() for a in arrays])  # noqa: E731
    np.testing.assert_allclose(cat(Ys), Yr.asnumpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(cat([x.grad for x in Xs]), Xr.grad.asnumpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(sum(g.grad.asnumpy() for g in Gs), Gr.grad.asnumpy(), rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(sum(b.grad.asnumpy() for b in Bs), Br.grad.asnumpy(), rtol=RTOL, atol=1e-4)
    for mm, mv in zip(mms, mvs):
        np.testing.assert_allclose(mm.asnumpy(), mm_r.asnumpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(mv.asnumpy(), mv_r.asnumpy(), rtol=RTOL, atol=ATOL)

    # The closed-form backward (the two sums that cross devices) gives what autograd gave.
    axes = tuple(a for a in range(X.ndim) if a != 1)
    mean, var = nd.array(X.mean(axis=axes)), nd.array(X.var(axis=axes))
    dXs, dgammas, dbetas = sync_batch_norm_backward(dYs, Xs, Gs, mean, var, 1e-5)
    np.testing.assert_allclose(cat(dXs), Xr.grad.asnumpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(sum(g.asnumpy() for g in dgammas), Gr.grad.asnumpy(), rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(sum(b.asnumpy() for b in dbetas), Br.grad.asnumpy(), rtol=RTOL, atol=1e-4)
    for d, g in zip(dgammas, Gs):  # each device's share is its own part, not the total
        np.testing.assert_allclose(d.asnumpy(), g.grad.asnumpy(), rtol=RTOL, atol=1e-4)


def test_sync_batch_norm_function_rejects_bad_input():
    C = 3
    one = [nd.ones(C)]
    with pytest.raises(TypeError, match='list of NDArrays'):
        sync_batch_norm(nd.ones((4, C)), one, one, one, one, training=True)
    with pytest.raises(ValueError, match='differ only in their first'):
        sync_batch_norm([nd.ones((2, C)), nd.ones((2, C + 1))], one * 2, one * 2, one * 2, one * 2, training=True)
    with pytest.raises(ValueError, match='one gamma'):
        sync_batch_norm([nd.ones((2, C))] * 2, one, one, one, one, training=True)
    with pytest.raises(ValueError, match='undefined'):
        sync_batch_norm([nd.ones((1, C))], one, one, one, one, training=True)


# ---- the layer ------------------------------------------------------------------------------------------

def test_sync_layer_on_two_devices_equals_one_device_with_the_whole_batch():
    rng = np.random.RandomState(2)
    shape, C = (8, 3, 5, 5), 3
    sync, ref = bn_gluon.SyncBatchNorm(in_channels=C), gluon.nn.BatchNorm(in_channels=C)
    sync.initialize(ctx=CTXS)
    ref.initialize()
    gamma, beta = nd.array(rng.uniform(0.5, 2, C)), nd.array(rng.normal(size=C))
    for layer in (sync, ref):
        layer.gamma.set_data(gamma)
        layer.beta.set_data(beta)
    for _ in range(3):
        X, dY = shifted_batch(rng, shape), rng.normal(size=shape)
        for a, b in zip(run(sync, X, dY, CTXS), run(ref, X, dY, [mx.cpu()])):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-4)
        (rm_r, rv_r), = stats(ref)
        (rm0, rv0), (rm1, rv1) = stats(sync)
        np.testing.assert_array_equal(rm0, rm1)  # the same numbers on both devices, bit for bit
        np.testing.assert_array_equal(rv0, rv1)
        np.testing.assert_allclose(rm0, rm_r, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(rv0, rv_r, rtol=RTOL, atol=ATOL)
    # inference: each device with its running statistics, the same as the reference's
    X = rng.normal(size=shape)
    Ys = [sync(x) for x in parallel.split_batch(nd.array(X), nd.zeros(shape[0]), CTXS)[0]]
    np.testing.assert_allclose(np.concatenate([y.asnumpy() for y in Ys]), ref(nd.array(X)).asnumpy(),
                               rtol=RTOL, atol=ATOL)


def test_sync_layer_gradients_match_finite_differences_across_devices():
    rng = np.random.RandomState(7)
    shape, C = (4, 2, 3), 2
    x0, w = rng.normal(size=shape), rng.normal(size=shape)          # loss = sum(w * Y)
    layer = bn_gluon.SyncBatchNorm(in_channels=C)
    layer.initialize(ctx=CTXS)
    layer.cast('float64')
    layer.gamma.set_data(nd.array([1.5, 0.5], dtype='float64'))

    def loss(x):
        Xs = [nd.array(x[:2], ctx=CTXS[0], dtype='float64'), nd.array(x[2:], ctx=CTXS[1], dtype='float64')]
        with autograd.train_mode():
            Ys = parallel.lockstep(layer, Xs)
        return sum(float((Y.as_in_context(mx.cpu()) * nd.array(w[i:i + 2], dtype='float64')).sum().asscalar())
                   for Y, i in zip(Ys, (0, 2)))

    Xs = [nd.array(x0[:2], ctx=CTXS[0], dtype='float64'), nd.array(x0[2:], ctx=CTXS[1], dtype='float64')]
    for X in Xs:
        X.attach_grad()
    with autograd.record():
        Ys = parallel.lockstep(layer, Xs)
    autograd.backward(Ys, [nd.array(w[a:b], ctx=c, dtype='float64') for a, b, c in ((0, 2, CTXS[0]), (2, 4, CTXS[1]))])
    dX = np.concatenate([X.grad.asnumpy() for X in Xs])
    numeric = np.zeros_like(x0)
    for i in np.ndindex(shape):
        xp, xm = x0.copy(), x0.copy()
        xp[i] += 1e-6
        xm[i] -= 1e-6
        numeric[i] = (loss(xp) - loss(xm)) / 2e-6
    np.testing.assert_allclose(dX, numeric, rtol=1e-5, atol=1e-7)


def test_sync_layer_matches_gluon_contrib_sync_batch_norm():
    rng = np.random.RandomState(3)
    shape, C = (6, 4, 3, 3), 4
    ours = bn_gluon.SyncBatchNorm(in_channels=C, momentum=0.8)
    theirs = gluon.contrib.nn.SyncBatchNorm(in_channels=C, num_devices=2, momentum=0.8)
    for layer in (ours, theirs):
        layer.initialize(ctx=CTXS)
        layer.gamma.set_data(nd.array(np.linspace(0.5, 1.5, C)))
    for _ in range(3):
        X, dY = shifted_batch(rng, shape), rng.normal(size=shape)
        for a, b in zip(run(ours, X, dY, CTXS), run(theirs, X, dY, CTXS)):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-4)
        for c in CTXS:  # per-device gradient shares and statistics, not only their sums
            np.testing.assert_allclose(ours.gamma.grad(c).asnumpy(), theirs.gamma.grad(c).asnumpy(),
                                       rtol=RTOL, atol=1e-4)
        for (rm, rv), (rm_t, rv_t) in zip(stats(ours), stats(theirs)):
            np.testing.assert_allclose(rm, rm_t, rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(rv, rv_t, rtol=RTOL, atol=ATOL)


def test_plain_bn_keeps_per_device_statistics_that_differ_from_the_global_ones():
    rng = np.random.RandomState(4)
    shape, C = (8, 2, 4, 4), 2
    plain, sync = bn_gluon.BatchNorm(in_channels=C, momentum=0.0), bn_gluon.SyncBatchNorm(in_channels=C, momentum=0.0)
    for layer in (plain, sync):
        layer.initialize(ctx=CTXS)
    X, dY = shifted_batch(rng, shape, shift=3.0), rng.normal(size=shape)   # device 1's half is shifted by 3
    Y_plain = run(plain, X, dY, CTXS)[0]
    Y_sync = run(sync, X, dY, CTXS)[0]
    (m0, v0), (m1, v1) = stats(plain)
    np.testing.assert_allclose(m0, X[:4].mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)   # momentum 0: the batch's
    np.testing.assert_allclose(m1, X[4:].mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert np.all(m1 - m0 > 2.0) and np.all(v1 > 2.0 * v0)
    for m, v in stats(sync):
        np.testing.assert_allclose(m, X.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(v, X.var(axis=(0, 2, 3)), rtol=1e-4)
    # plain BN erases the shift: each half comes out with mean 0; synchronized BN keeps it
    assert abs(Y_plain[4:].mean()) < 1e-4 and Y_sync[4:].mean() > 0.5
    # averaging per-device statistics recovers the global mean exactly, the variance only within slices
    params = {'running_mean': plain.running_mean, 'running_var': plain.running_var}
    parallel.reconcile_running_stats(params)
    for m, v in stats(plain):
        np.testing.assert_allclose(m, (m0 + m1) / 2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v, (v0 + v1) / 2, rtol=1e-5)
        assert np.all(v < X.var(axis=(0, 2, 3)))


def test_training_call_on_one_device_outside_lockstep_is_refused_in_words():
    layer = bn_gluon.SyncBatchNorm(in_channels=2)
    layer.initialize(ctx=CTXS)
    X = nd.ones((4, 2), ctx=CTXS[0])
    with pytest.raises(RuntimeError, match='outside bn_gluon.parallel.lockstep'):
        with autograd.record():
            layer(X)
    layer(X)                                   # inference needs no other device
    single = bn_gluon.SyncBatchNorm(in_channels=2)
    single.initialize()
    with autograd.record():                    # one device alone: plain batch norm
        Y = single(nd.array([[1.0, 2.0], [3.0, 6.0]]))
    np.testing.assert_allclose(Y.asnumpy(), [[-1, -1], [1, 1]], atol=1e-5)


def test_lockstep_fails_cleanly_when_devices_fall_out_of_step_or_raise():
    layer = bn_gluon.SyncBatchNorm(in_channels=2)
    layer.initialize(ctx=CTXS)
    Xs = [nd.ones((2, 2), ctx=c) for c in CTXS]

    def uneven(X):                             # device 1 runs the layer twice, device 0 once
        Y = layer(X)
        return layer(Y) if X.context == CTXS[1] else Y

    # A device left waiting for its turn would end in TimeoutError instead: the errors below come first.
    with pytest.raises(RuntimeError, match='out of step') as info:
        with autograd.record():
            parallel.lockstep(uneven, Xs, timeout=20)
    assert not isinstance(info.value, TimeoutError)

    def broken(X):
        if X.context == CTXS[0]:
            raise ValueError('device 0 failed')
        return layer(X)

    with pytest.raises(ValueError, match='device 0 failed'):
        with autograd.record():
            parallel.lockstep(broken, Xs, timeout=20)
    three = bn_gluon.SyncBatchNorm(num_devices=3, in_channels=2)
    three.initialize(ctx=CTXS)
    with pytest.raises(RuntimeError, match='num_devices=3'):
        with autograd.record():
            parallel.lockstep(three, Xs)


def test_hybridizing_a_net_with_sync_bn_is_refused_in_words():
    net = small_net(bn_gluon.SyncBatchNorm, CTXS)
    net.hybridize()
    with pytest.raises(RuntimeError, match='hybridized'):
        parallel.forward_backward(net, gluon.loss.SoftmaxCrossEntropyLoss(), nd.ones((4, 1, 8, 8)),
                                  nd.zeros(4), CTXS)


def test_sync_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match='num_devices'):
        bn_gluon.SyncBatchNorm(num_devices=0)
    with pytest.raises(ValueError, match='at least one device'):
        parallel.lockstep(lambda x: x, [])


# ---- data parallel training ---------------------------------------------------------------------------

def small_net(norm, ctxs, seed=0):
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3, in_channels=1), norm(in_channels=4), nn.Activation('relu'),
            nn.MaxPool2D(2), nn.Dense(3, in_units=4 * 3 * 3))
    net.initialize(mx.init.Xavier(), ctx=ctxs)
    return net


def train(net, ctxs, steps=3, batch=8, momentum=0.9, seed=0):
    rng = np.random.RandomState(seed)
    params = net._collect_params_with_prefix()
    optimizer = parallel.DataParallelSGD(params, lr=0.3, momentum=momentum)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        X = nd.array(shifted_batch(rng, (batch, 1, 8, 8), shift=2.0))
        y = nd.array(rng.randint(0, 3, batch))
        loss, y_hat, y_all = parallel.forward_backward(net, loss_fn, X, y, ctxs)
        assert loss.shape == (batch,) and y_hat.shape == (batch, 3) and loss.context == ctxs[0]
        optimizer.step(batch)
        for name, p in optimizer.params.items():                  # equal copies after every step
            assert all((d == p.list_data()[0]).min() == 1 for d in p.list_data()), name
    return params


def test_two_devices_with_sync_bn_train_like_one_device_with_the_whole_batch():
    two = train(small_net(bn_gluon.SyncBatchNorm, CTXS), CTXS)
    one = train(small_net(bn_gluon.BatchNorm, [mx.cpu()]), [mx.cpu()])
    for name, p in two.items():
        copies = [d.asnumpy() for d in p.list_data()]
        np.testing.assert_array_equal(copies[0], copies[1], err_msg=f'{name} differs between the devices')
        np.testing.assert_allclose(copies[0], one[name].data().asnumpy(), rtol=1e-3, atol=1e-5, err_msg=name)


@pytest.mark.parametrize('hybridize', [False, True])
def test_two_devices_with_plain_bn_stay_identical_but_differ_from_one_device(hybridize):
    net = small_net(bn_gluon.BatchNorm, CTXS)
    if hybridize:
        net.hybridize()
    two = train(net, CTXS)
    one = train(small_net(bn_gluon.BatchNorm, [mx.cpu()]), [mx.cpu()])
    for name, p in two.items():
        if p.grad_req != 'null':
            copies = [d.asnumpy() for d in p.list_data()]
            np.testing.assert_array_equal(copies[0], copies[1], err_msg=name)
    # each device normalized its half (ghost batches): the weights took another path than one device's
    w2, w1 = two['0.weight'].data(CTXS[0]).asnumpy(), one['0.weight'].data().asnumpy()
    assert np.abs(w2 - w1).max() > 1e-3
    # and the statistics are per device until reconciled
    rm = [d.asnumpy() for d in two['1.running_mean'].list_data()]
    assert np.abs(rm[0] - rm[1]).max() > 1e-2
    parallel.reconcile_running_stats(two, how='first')
    np.testing.assert_array_equal(*[d.asnumpy() for d in two['1.running_mean'].list_data()])


def test_gradient_sum_over_devices_equals_the_gradient_of_the_whole_batch():
    identity = lambda in_channels: nn.HybridLambda(lambda F, x: x)  # noqa: E731  no BN: a plain sum over examples
    net2, net1 = small_net(identity, CTXS), small_net(identity, [mx.cpu()])
    X = nd.array(np.random.RandomState(6).normal(size=(6, 1, 8, 8)))
    y = nd.array([0, 1, 2, 0, 1, 2])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        loss = loss_fn(net1(X), y)
    loss.backward()
    Xs, ys = parallel.split_batch(X, y, CTXS)
    with autograd.record():
        losses = [loss_fn(net2(x), t) for x, t in zip(Xs, ys)]
    autograd.backward(losses)
    params2, params1 = net2._collect_params_with_prefix(), net1._collect_params_with_prefix()
    before = params2['0.weight'].grad(CTXS[0]).asnumpy()
    parallel.reduce_gradients(params2)
    for name, p in params2.items():
        for g in p.list_grad():
            np.testing.assert_allclose(g.asnumpy(), params1[name].grad().asnumpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(before - params1['0.weight'].grad().asnumpy()).max() > 1e-3   # one device had only its half


def test_split_batch_and_contexts():
    X, y = nd.arange(10).reshape((10, 1)), nd.arange(10)
    Xs, ys = parallel.split_batch(X, y, [mx.cpu(0), mx.cpu(1), mx.cpu(2)])
    assert [x.shape[0] for x in Xs] == [3, 3, 4]
    assert [x.context for x in Xs] == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    np.testing.assert_array_equal(np.concatenate([t.asnumpy() for t in ys]), np.arange(10))
    with pytest.raises(ValueError, match='at least 3'):
        parallel.split_batch(X[:2], y[:2], [mx.cpu(0), mx.cpu(1), mx.cpu(2)])
    with pytest.raises(ValueError, match='10 examples but y 9'):
        parallel.split_batch(X, y[:9], CTXS)
    assert parse_ctxs('cpu:0, cpu:1') == CTXS
    assert parse_ctxs('cpu') == [mx.cpu(0)]
    with pytest.raises(ValueError, match='not a device'):
        parse_ctxs('cpu0,tpu:1')
    with pytest.raises(ValueError, match='repeats'):
        parse_ctxs('cpu:1,cpu:1')


def test_shard_gives_every_worker_an_equal_disjoint_share():
    X, y = nd.arange(11).reshape((11, 1)), nd.arange(11)
    shares = [parallel.shard(X, y, r, 3) for r in range(3)]
    assert [s[0].shape[0] for s in shares] == [3, 3, 3]
    seen = np.concatenate([s[1].asnumpy() for s in shares])
    assert len(set(seen)) == 9 and set(seen) <= set(range(11))
    with pytest.raises(ValueError, match='rank'):
        parallel.shard(X, y, 3, 3)


def test_sync_batch_norm_gives_gamma_and_beta_their_gradients_when_x_takes_none():
    """X straight from the data takes no gradient; gamma and beta, after it, must still get theirs."""
    rng = np.random.RandomState(2)
    X, dY = rng.normal(size=(6, 3, 2, 2)), rng.normal(size=(6, 3, 2, 2))
    grads = []
    for x_grad in (True, False):
        Xs = [nd.array(X[:3], ctx=CTXS[0]), nd.array(X[3:], ctx=CTXS[1])]
        Gs, Bs = [nd.array([1.5, 0.5, 2.0], ctx=c) for c in CTXS], [nd.array([0.1, 0.2, 0.3], ctx=c) for c in CTXS]
        for v in Gs + Bs + (Xs if x_grad else []):
            v.attach_grad()
        with autograd.record():
            Ys = sync_batch_norm(Xs, Gs, Bs, [nd.zeros(3, ctx=c) for c in CTXS],
                                 [nd.ones(3, ctx=c) for c in CTXS], training=True)
        autograd.backward(Ys, [nd.array(dY[:3], ctx=CTXS[0]), nd.array(dY[3:], ctx=CTXS[1])])
        grads.append([v.grad.asnumpy() for v in Gs + Bs])
    for with_x, without_x in zip(*grads):
        np.testing.assert_allclose(without_x, with_x, rtol=RTOL, atol=ATOL)
