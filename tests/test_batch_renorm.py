"""bn_gluon.functional.batch_renorm and bn_gluon.BatchRenorm against the paper's equations in numpy,
finite differences, and batch norm (rmax = 1, dmax = 0)."""
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import bn_gluon
from bn_gluon import RenormSchedule
from bn_gluon.functional import batch_norm, batch_renorm

RTOL, ATOL = 1e-5, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5
SHAPE, AXES = (6, 4, 3, 3), (0, 2, 3)


def np_renorm(x, gamma, beta, mu, var_moving, rmax, dmax, eps=1e-5):
    """Algorithm 1 of Ioffe (2017) on (N, C, H, W); returns y and the pieces the gradient needs."""
    c = lambda v: v.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
    mu_B, var_B = x.mean(axis=AXES, keepdims=True), x.var(axis=AXES, keepdims=True)
    sigma_B, sigma = np.sqrt(var_B + eps), np.sqrt(c(var_moving) + eps)
    r = np.clip(sigma_B / sigma, 1 / rmax, rmax)
    d = np.clip((mu_B - c(mu)) / sigma, -dmax, dmax)
    x_hat_bn = (x - mu_B) / sigma_B
    return c(gamma) * (x_hat_bn * r + d) + c(beta), x_hat_bn, sigma_B, r, d


def setup(seed=0, dtype='float32'):
    """An input, gamma, beta and moving statistics chosen so that r and d clip in some channels only."""
    rng = np.random.RandomState(seed)
    x = rng.normal(size=SHAPE) * np.array([0.3, 1.0, 2.0, 4.0]).reshape(1, 4, 1, 1) + 1.0
    gamma, beta = rng.uniform(0.5, 2.0, 4), rng.normal(size=4)
    mu = np.array([1.0, 0.0, 1.2, 3.0])          # (mu_B - mu) / sigma: about 0, 1, 0, -0.5
    var = np.array([1.0, 1.0, 4.0, 4.0])         # sigma_B / sigma: about 0.3, 1, 1, 2
    arrays = [nd.array(v, dtype=dtype) for v in (x, gamma, beta, mu, var)]
    return (x, gamma, beta, mu, var), arrays


def value_and_grad(f, X, dY):
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = f(X)
    Y.backward(dY)
    return Y.asnumpy(), X.grad.asnumpy()


def renorm_step(X, gamma, beta, mu, var, dY, **kwargs):
    return value_and_grad(lambda x: batch_renorm(x, gamma, beta, mu, var, training=True, **kwargs), X, dY)


def test_forward_and_moving_statistics_match_the_equations():
    (x, gamma, beta, mu, var), (X, G, B, MU, VAR) = setup()
    y, _, _, r, d = np_renorm(x, gamma, beta, mu, var, rmax=1.5, dmax=0.5)
    assert (r == 1.5).any() and (r == 1 / 1.5).any() and ((r > 1 / 1.5) & (r < 1.5)).any()  # both clips bite
    assert (np.abs(d) == 0.5).any() and (np.abs(d) < 0.5).any()
    with autograd.record():
        Y = batch_renorm(X, G, B, MU, VAR, training=True, rmax=1.5, dmax=0.5, momentum=0.8)
    np.testing.assert_allclose(Y.asnumpy(), y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(MU.asnumpy(), 0.8 * mu + 0.2 * x.mean(axis=AXES), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(VAR.asnumpy(), 0.8 * var + 0.2 * x.var(axis=AXES), rtol=RTOL, atol=ATOL)


def test_unbiased_moving_variance():
    (x, gamma, beta, mu, var), (X, G, B, MU, VAR) = setup()
    batch_renorm(X, G, B, MU, VAR, training=True, rmax=2, dmax=1, unbiased_var=True)
    m = x.size // 4
    np.testing.assert_allclose(VAR.asnumpy(), 0.9 * var + 0.1 * x.var(axis=AXES) * m / (m - 1), rtol=RTOL)


def test_gradient_treats_r_and_d_as_constants():
    (x, gamma, beta, mu, var), arrays = setup()
    dy = np.random.RandomState(1).normal(size=SHAPE)
    _, dX = renorm_step(*arrays, nd.array(dy), rmax=1.5, dmax=0.5)
    # Closed form: batch norm's gradient with gamma * r in place of gamma.
    _, x_hat, sigma_B, r, _ = np_renorm(x, gamma, beta, mu, var, 1.5, 0.5)
    mean = lambda v: v.mean(axis=AXES, keepdims=True)
    expected = gamma.reshape(1, -1, 1, 1) * r / sigma_B * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    np.testing.assert_allclose(dX, expected, rtol=GRAD_RTOL, atol=GRAD_ATOL)


def test_gradient_matches_finite_differences_with_r_and_d_held():
    (x, gamma, beta, mu, var), arrays = setup(dtype='float64')
    dy = np.random.RandomState(2).normal(size=SHAPE)
    _, dX = renorm_step(*arrays, nd.array(dy, dtype='float64'), rmax=1.5, dmax=0.5)
    _, _, _, r, d = np_renorm(x, gamma, beta, mu, var, 1.5, 0.5)

    def loss(x):  # r and d fixed at the values of the unperturbed batch
        mu_B, var_B = x.mean(axis=AXES, keepdims=True), x.var(axis=AXES, keepdims=True)
        y = gamma.reshape(1, -1, 1, 1) * ((x - mu_B) / np.sqrt(var_B + 1e-5) * r + d)
        return (y * dy).sum()

    h, num = 1e-6, np.empty_like(x)
    for idx in np.ndindex(*SHAPE):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        num[idx] = (loss(up) - loss(down)) / (2 * h)
    np.testing.assert_allclose(dX, num, rtol=1e-6, atol=1e-8)


def test_rmax_1_dmax_0_is_batch_norm_exactly():
    _, (X, G, B, MU, VAR) = setup()
    dY = nd.array(np.random.RandomState(3).normal(size=SHAPE))
    MU2, VAR2 = MU.copy(), VAR.copy()
    y, dx = renorm_step(X, G, B, MU, VAR, dY, rmax=1, dmax=0, momentum=0.7)

    def algorithm_1(X):  # Ioffe and Szegedy (2015), written out here as the reference
        mean = X.mean(axis=AXES, keepdims=True)
        var = ((X - mean) ** 2).mean(axis=AXES, keepdims=True)
        return (X - mean) / nd.sqrt(var + 1e-5) * G.reshape((1, 4, 1, 1)) + B.reshape((1, 4, 1, 1))

    y_bn, dx_bn = value_and_grad(algorithm_1, X, dY)
    np.testing.assert_allclose(y, y_bn, rtol=1e-5, atol=1e-6)      # float32 rounding of other reductions
    np.testing.assert_allclose(dx, dx_bn, rtol=1e-5, atol=1e-6)
    y_ours, dx_ours = value_and_grad(lambda X: batch_norm(X, G, B, MU.copy(), VAR.copy(), training=True), X, dY)
    np.testing.assert_array_equal(y, y_ours)                        # the same formulas: the same bits
    np.testing.assert_array_equal(dx, dx_ours)
    # and the moving statistics move exactly as batch norm's
    with autograd.record():
        batch_norm(X, G, B, MU2, VAR2, training=True, momentum=0.7)
    np.testing.assert_allclose(MU.asnumpy(), MU2.asnumpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(VAR.asnumpy(), VAR2.asnumpy(), rtol=1e-6, atol=1e-7)


def test_inference_is_batch_norm_and_moves_nothing():
    _, (X, G, B, MU, VAR) = setup()
    before = MU.asnumpy(), VAR.asnumpy()
    Y = batch_renorm(X, G, B, MU, VAR, training=False, rmax=3, dmax=5)
    np.testing.assert_array_equal(Y.asnumpy(), batch_norm(X, G, B, MU, VAR, training=False).asnumpy())
    np.testing.assert_array_equal(MU.asnumpy(), before[0])
    np.testing.assert_array_equal(VAR.asnumpy(), before[1])


def test_schedule():
    s = RenormSchedule()  # the paper's: 5k steps of batch norm, rmax 3 at 40k, dmax 5 at 25k
    assert s(0) == s(5000) == (1.0, 0.0)
    assert s(15000) == (1.0 + 2.0 * 10000 / 35000, 2.5)
    assert s(22500) == (2.0, 4.375)
    assert s(25000)[1] == 5.0
    assert s(40000) == s(10 ** 6) == (3.0, 5.0)
    assert RenormSchedule.constant(2, 1)(0) == (2.0, 1.0)
    for bad, match in ((dict(rmax=0.5), 'rmax must be'), (dict(dmax=-1), 'dmax must be'),
                       (dict(warmup_steps=100, rmax_steps=50), 'comes before warmup_steps'),
                       (dict(dmax_steps=1.5), 'dmax_steps must be an integer')):
        with pytest.raises(ValueError, match=match):
            RenormSchedule(**bad)


def test_bad_arguments_change_nothing():
    _, (X, G, B, MU, VAR) = setup()
    before = MU.asnumpy()
    with pytest.raises(ValueError, match='rmax must be'):
        batch_renorm(X, G, B, MU, VAR, training=True, rmax=0.9, dmax=0)
    with pytest.raises(TypeError, match='floating point'):
        batch_renorm(X.astype('int32'), G, B, MU, VAR, training=True, rmax=2, dmax=1)
    with pytest.raises(ValueError, match=r'moving_var has shape \(3,\)'):
        batch_renorm(X, G, B, MU, VAR[:3], training=True, rmax=2, dmax=1)
    np.testing.assert_array_equal(MU.asnumpy(), before)
    with pytest.raises(TypeError, match='RenormSchedule'):
        bn_gluon.BatchRenorm(schedule=lambda step: (3.0, 5.0))


# --- the layer -------------------------------------------------------------------------------------

def layer_step(layer, X, dY, train=True):
    X = X.copy()
    X.attach_grad()
    with autograd.record(train_mode=train):
        Y = layer(X)
    Y.backward(dY, train_mode=train)
    grads = [p.grad().asnumpy() if p.grad_req != 'null' else np.zeros(1) for p in (layer.gamma, layer.beta)]
    return [Y.asnumpy(), X.grad.asnumpy()] + grads


def make(cls, hybridize, **kwargs):
    layer = cls(**kwargs)
    layer.initialize()
    if hybridize:
        layer.hybridize()
    return layer


def steps_of(layer):
    return int(layer.num_steps.data().asscalar())


@pytest.mark.parametrize('hybridize', [False, True])
def test_layer_with_rmax_1_dmax_0_equals_batch_norm_layers(hybridize):
    rng = np.random.RandomState(4)
    layers = [make(bn_gluon.BatchRenorm, hybridize, schedule=RenormSchedule.constant(1, 0), momentum=0.8),
              make(bn_gluon.BatchNorm, hybridize, momentum=0.8), make(gluon.nn.BatchNorm, hybridize, momentum=0.8)]
    for _ in range(3):
        X, dY = nd.array(rng.normal(2.0, 3.0, size=SHAPE)), nd.array(rng.normal(size=SHAPE))
        ours, *refs = [layer_step(layer, X, dY) for layer in layers]
        for ref in refs:
            for what, a, b in zip(('Y', 'dX', 'dgamma', 'dbeta'), ours, ref):
                np.testing.assert_allclose(a, b, rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=what)
        for name in ('running_mean', 'running_var'):
            for ref in layers[1:]:
                np.testing.assert_allclose(getattr(layers[0], name).data().asnumpy(),
                                           getattr(ref, name).data().asnumpy(), rtol=RTOL, atol=ATOL)
    X, dY = nd.array(rng.normal(size=SHAPE)), nd.array(rng.normal(size=SHAPE))
    ours, *refs = [layer_step(layer, X, dY, train=False) for layer in layers]
    for ref in refs:
        np.testing.assert_allclose(ours[0], ref[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('hybridize', [False, True])
def test_layer_follows_the_schedule_step_by_step(hybridize):
    schedule = RenormSchedule(rmax=1.5, dmax=0.5, warmup_steps=1, rmax_steps=3, dmax_steps=2)
    layer = make(bn_gluon.BatchRenorm, hybridize, schedule=schedule, momentum=0.5, in_channels=4)
    rng = np.random.RandomState(5)
    gamma, beta = np.ones(4), np.zeros(4)
    for step in range(5):
        x = rng.normal(1.0 + step, 2.0, size=SHAPE)
        mu, var = layer.running_mean.data().asnumpy(), layer.running_var.data().asnumpy()
        Y = layer_step(layer, nd.array(x), nd.ones(SHAPE))[0]
        y = np_renorm(x, gamma, beta, mu, var, *schedule(step))[0]
        np.testing.assert_allclose(Y, y, rtol=RTOL, atol=ATOL, err_msg=f'step {step}')
        assert steps_of(layer) == step + 1
    # inference and use_global_stats do not count as training steps
    layer(nd.array(x))
    with autograd.record(train_mode=False):
        layer(nd.array(x))
    assert steps_of(layer) == 5


def test_hybridized_equals_imperative_with_renorm_active():
    schedule = RenormSchedule.constant(1.2, 0.3)
    layers = [make(bn_gluon.BatchRenorm, h, schedule=schedule, scale=False) for h in (False, True)]
    rng = np.random.RandomState(6)
    for _ in range(3):
        X, dY = nd.array(rng.normal(0.5, 2.0, size=SHAPE)), nd.array(rng.normal(size=SHAPE))
        a, b = [layer_step(layer, X, dY) for layer in layers]
        for what, u, v in zip(('Y', 'dX', 'dgamma', 'dbeta'), a, b):
            np.testing.assert_allclose(u, v, rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=what)
    for name in ('running_mean', 'running_var', 'num_steps'):
        np.testing.assert_allclose(getattr(layers[0], name).data().asnumpy(),
                                   getattr(layers[1], name).data().asnumpy(), rtol=RTOL, atol=ATOL)


def test_use_global_stats_counts_no_steps():
    layer = make(bn_gluon.BatchRenorm, False, use_global_stats=True)
    ref = make(gluon.nn.BatchNorm, False, use_global_stats=True)
    X = nd.array(np.random.RandomState(7).normal(size=SHAPE))
    a, b = layer_step(layer, X, nd.ones(SHAPE)), layer_step(ref, X, nd.ones(SHAPE))
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=RTOL, atol=ATOL)
    assert steps_of(layer) == 0


def test_parameter_files(tmp_path):
    X = nd.array(np.random.RandomState(8).normal(size=SHAPE))
    layer = make(bn_gluon.BatchRenorm, False)
    for _ in range(2):
        layer_step(layer, X, nd.ones(SHAPE))
    layer.save_parameters(str(tmp_path / 'renorm.params'))
    resumed = make(bn_gluon.BatchRenorm, False)
    resumed.load_parameters(str(tmp_path / 'renorm.params'))
    assert steps_of(resumed) == 2  # a resumed run continues the schedule
    bn = make(gluon.nn.BatchNorm, False)
    bn.load_parameters(str(tmp_path / 'renorm.params'), ignore_extra=True)
    np.testing.assert_allclose(bn(X).asnumpy(), layer(X).asnumpy(), rtol=RTOL, atol=ATOL)
    bn.save_parameters(str(tmp_path / 'bn.params'))
    fresh = make(bn_gluon.BatchRenorm, False)
    with pytest.raises(AssertionError, match='num_steps'):
        fresh.load_parameters(str(tmp_path / 'bn.params'))
    fresh.load_parameters(str(tmp_path / 'bn.params'), allow_missing=True)
    np.testing.assert_allclose(fresh(X).asnumpy(), bn(X).asnumpy(), rtol=RTOL, atol=ATOL)


def test_inside_a_hybridized_network():
    # The parent's graph runs the custom operator, which must count the steps itself.
    schedule = RenormSchedule(rmax=1.5, dmax=0.5, warmup_steps=1, rmax_steps=2, dmax_steps=2)
    seq = gluon.nn.HybridSequential()
    seq.add(bn_gluon.BatchRenorm(schedule=schedule))
    seq.initialize()
    seq.hybridize()
    alone = make(bn_gluon.BatchRenorm, False, schedule=schedule)
    rng = np.random.RandomState(9)
    for _ in range(3):
        X, dY = nd.array(rng.normal(1.0, 2.0, size=SHAPE)), nd.array(rng.normal(size=SHAPE))
        with autograd.record():
            Y = seq(X)
        Y.backward(dY)
        np.testing.assert_allclose(Y.asnumpy(), layer_step(alone, X, dY)[0], rtol=RTOL, atol=ATOL)
    assert steps_of(seq[0]) == steps_of(alone) == 3


def test_the_old_renorm_option_warns_and_still_builds_batch_renorm():
    schedule = RenormSchedule.constant(1.5, 0.5)
    with pytest.warns(FutureWarning, match=r'BatchNorm\(renorm=...\) is deprecated.*BatchRenorm'):
        layer = bn_gluon.BatchNorm(renorm=schedule, momentum=0.8, in_channels=4)
    assert type(layer) is bn_gluon.BatchRenorm and layer.schedule == schedule
    assert layer._kwargs['momentum'] == 0.8                       # the other arguments reach BatchNorm
    with pytest.warns(FutureWarning):
        assert bn_gluon.BatchNorm(renorm=True).schedule == RenormSchedule()
    for off in (None, False):
        plain = bn_gluon.BatchNorm(renorm=off)
        assert type(plain) is bn_gluon.BatchNorm and not hasattr(plain, 'num_steps')
    # The option and the class give the same numbers, step by step.
    with pytest.warns(FutureWarning):
        old = make(bn_gluon.BatchNorm, False, renorm=schedule)
    twins = [old, make(bn_gluon.BatchRenorm, False, schedule=schedule)]
    rng = np.random.RandomState(10)
    for _ in range(2):
        X, dY = nd.array(rng.normal(2.0, 3.0, size=SHAPE)), nd.array(rng.normal(size=SHAPE))
        a, b = [layer_step(layer, X, dY) for layer in twins]
        for what, u, v in zip(('Y', 'dX', 'dgamma', 'dbeta'), a, b):
            np.testing.assert_array_equal(u, v, err_msg=what)


def test_renorm_option_refuses_contradictions():
    with pytest.raises(TypeError, match='schedule must be a RenormSchedule; got str'), pytest.warns(FutureWarning):
        bn_gluon.BatchNorm(renorm='paper')
    with pytest.raises(ValueError, match='two schedules'):
        bn_gluon.BatchRenorm(schedule=RenormSchedule(), renorm=RenormSchedule.constant(2, 1))
    with pytest.raises(ValueError, match='renorm=False asks for plain batch norm'):
        bn_gluon.BatchRenorm(renorm=False)
