"""bn_gluon.models: the LeNet in both styles, its table of norms, initialisation and parameter copying."""
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import bn_gluon
from bn_gluon.config import TrainConfig
from bn_gluon.optim import SGD
from bn_gluon import models
from bn_gluon.models import (LeNet, NORMS, RawLeNet, gluon_to_raw, init_raw_lenet, lenet, named_parameters,
                             raw_lenet_forward, raw_to_gluon)

RTOL, ATOL = 1e-4, 1e-5


def batch(n=16, seed=0):
    return nd.array(np.random.RandomState(seed).uniform(size=(n, 1, 28, 28)))


def values(net):
    return {k: p.data().asnumpy() for k, p in named_parameters(net).items()}


@pytest.mark.parametrize('norm,block', [('scratch', bn_gluon.BatchNorm), ('gluon', gluon.nn.BatchNorm),
                                        ('none', type(None))])
@pytest.mark.parametrize('dense_norm', [False, True])
def test_lenet_shapes_and_norm_blocks(norm, block, dense_norm):
    net = lenet(norm, dense_norm=dense_norm)
    assert net(batch(4)).shape == (4, 10)
    assert isinstance(net.bn1, block) and isinstance(net.bn2, block)
    assert isinstance(net.bn3, block if dense_norm else type(None))
    names = set(named_parameters(net))
    assert ('bn1.running_var' in names) == (norm != 'none')
    assert ('bn3.gamma' in names) == (dense_norm and norm != 'none')


def test_batch_norm_sits_between_convolution_and_activation():
    """In training mode bn1's input is conv1's output and its output still has negative values (no ReLU yet)."""
    net = lenet('scratch')
    seen = {}
    net.conv1.register_forward_hook(lambda blk, inp, out: seen.update(conv=out))
    net.bn1.register_forward_hook(lambda blk, inp, out: seen.update(bn_in=inp[0], bn_out=out))
    with autograd.record():
        net(batch(32))
    np.testing.assert_array_equal(seen['bn_in'].asnumpy(), seen['conv'].asnumpy())
    Y = seen['bn_out'].asnumpy()                                 # (N, 20, 24, 24), gamma 1, beta 0
    np.testing.assert_allclose(Y.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    v = seen['conv'].asnumpy().var(axis=(0, 2, 3))
    np.testing.assert_allclose(Y.var(axis=(0, 2, 3)), v / (v + 1e-5), rtol=1e-3)   # 1 but for eps
    assert (Y < 0).mean() > 0.3


def test_a_norm_layer_goes_in_as_in_gluoncv():
    """norm_layer= / norm_kwargs= build any normalization without touching the table of names."""
    mx.random.seed(0)
    net = lenet(norm_layer=gluon.nn.InstanceNorm, norm_kwargs={'scale': True}, dense_norm=False)
    assert isinstance(net.bn2, gluon.nn.InstanceNorm) and net.bn2.gamma.shape == (50,)
    assert net(batch(2)).shape == (2, 10)
    fast = LeNet(norm_layer=bn_gluon.BatchNorm, norm_kwargs={'impl': 'fast'})
    assert isinstance(fast.bn1, bn_gluon.BatchNorm) and fast.bn1._impl == 'fast' and fast.norm is None
    assert lenet('scratch', norm_kwargs={'impl': 'fast'}).bn2._impl == 'fast'   # a name, its kwargs updated
    with pytest.raises(ValueError, match="give the normalization by name \\(norm='gluon'\\) or as a layer"):
        LeNet('gluon', norm_layer=bn_gluon.BatchNorm)


def test_the_table_of_names_is_read_only_and_builds_each_layer_by_its_own_name():
    with pytest.raises(TypeError):
        NORMS['gluon_instance'] = models.Norm(gluon.nn.InstanceNorm, {})
    with pytest.raises(TypeError):
        NORMS['renorm'].kwargs['schedule'] = None
    assert NORMS['renorm'].layer is bn_gluon.BatchRenorm
    assert type(lenet('renorm').bn1) is bn_gluon.BatchRenorm
    assert set(TrainConfig.__dataclass_fields__['norm'].metadata['choices']) == set(NORMS)


def test_unknown_norm_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown norm 'batch'.*gluon, group, instance, layer, lrn, none, "
                                         "renorm, scratch"):
        LeNet('batch')
    with pytest.raises(ValueError, match="raw network supports norm 'scratch' or 'none'"):
        init_raw_lenet('gluon')


@pytest.mark.parametrize('style', ['gluon', 'raw'])
def test_default_initialisation(style):
    mx.random.seed(3)
    params = values(lenet('scratch', dense_norm=True)) if style == 'gluon' else \
        {k: v.asnumpy() for k, v in init_raw_lenet('scratch', dense_norm=True).items()}
    for name, v in params.items():
        kind = name.split('.')[1]
        if kind == 'weight':                                     # Xavier uniform: U(-b, b), b = sqrt(6 / fans)
            receptive = int(np.prod(v.shape[2:]))
            bound = math.sqrt(6 / ((v.shape[0] + v.shape[1]) * receptive))
            assert np.abs(v).max() <= bound
            assert abs(v.std() - bound / math.sqrt(3)) < 0.1 * bound, name
        else:
            expected = 1.0 if kind in ('gamma', 'running_var') else 0.0
            np.testing.assert_array_equal(v, expected, err_msg=name)


def test_article_initialisation_is_opt_in():
    mx.random.seed(3)
    p = values(lenet('scratch', article_init=True))
    assert 0.005 < p['bn1.gamma'].std() < 0.015 and abs(p['bn1.gamma'].mean()) < 0.01
    assert 0.008 < p['conv2.weight'].std() < 0.012
    np.testing.assert_array_equal(p['bn2.running_var'], 0)
    np.testing.assert_array_equal(p['bn2.running_mean'], 0)


def test_both_styles_draw_the_same_initial_values():
    mx.random.seed(5)
    net = lenet('scratch', dense_norm=True)
    mx.random.seed(5)
    raw = init_raw_lenet('scratch', dense_norm=True)
    assert list(raw) == list(named_parameters(net))
    for name, v in values(net).items():
        np.testing.assert_array_equal(raw[name].asnumpy(), v, err_msg=name)


@pytest.mark.parametrize('norm', ['scratch', 'none'])
@pytest.mark.parametrize('dense_norm', [False, True])
def test_styles_agree_given_the_same_parameters(norm, dense_norm):
    """Outputs in inference and training mode, gradients, and running statistics after a step."""
    mx.random.seed(1)
    net = lenet(norm, dense_norm=dense_norm)
    mx.random.seed(2)                                            # different values, then copied over
    raw = init_raw_lenet(norm, dense_norm=dense_norm)
    raw_to_gluon(raw, net)
    for name in raw:                                             # non-trivial statistics and affine parameters
        if name.endswith(('running_mean', 'gamma', 'beta')):
            raw[name][:] = nd.random.uniform(0.5, 1.5, shape=raw[name].shape)
        if name.endswith('running_var'):
            raw[name][:] = nd.random.uniform(0.5, 2.0, shape=raw[name].shape)
    raw_to_gluon(raw, net)
    X = batch(8)
    np.testing.assert_allclose(raw_lenet_forward(raw, X, training=False).asnumpy(), net(X).asnumpy(),
                               rtol=RTOL, atol=ATOL)
    with autograd.record():
        y_raw = raw_lenet_forward(raw, X, training=True)
    y_raw.backward()
    with autograd.record():
        y_net = net(X)
    y_net.backward()
    np.testing.assert_allclose(y_raw.asnumpy(), y_net.asnumpy(), rtol=RTOL, atol=ATOL)
    for name, p in named_parameters(net).items():
        other = raw[name].grad if p.grad_req != 'null' else raw[name]
        mine = p.grad() if p.grad_req != 'null' else p.data()
        np.testing.assert_allclose(other.asnumpy(), mine.asnumpy(), rtol=1e-3, atol=1e-4, err_msg=name)


def test_copy_round_trip_and_mismatch():
    net = lenet('scratch')
    raw = gluon_to_raw(net)
    assert raw['conv1.weight'].grad is not None and raw['bn1.running_mean'].grad is None
    raw['dense2.bias'][:] = 7
    assert (values(net)['dense2.bias'] == 0).all()              # a copy, not a view
    other = raw_to_gluon(raw, lenet('scratch'))
    np.testing.assert_array_equal(values(other)['dense2.bias'], 7)
    with pytest.raises(ValueError, match=r"the raw dict does not fit this network: missing \['bn3.beta"):
        raw_to_gluon(raw, lenet('scratch', dense_norm=True))


def test_params_file_loads_into_the_gluon_batch_norm_twin(tmp_path):
    mx.random.seed(4)
    ours = lenet('scratch', dense_norm=True)
    with autograd.record():                                      # move the running statistics off 0 / 1
        ours(batch(32)).backward()
    ours.save_parameters(str(tmp_path / 'a.params'))
    twin = LeNet('gluon', dense_norm=True)
    twin.load_parameters(str(tmp_path / 'a.params'))
    X = batch(8, seed=1)
    np.testing.assert_allclose(twin(X).asnumpy(), ours(X).asnumpy(), rtol=RTOL, atol=ATOL)
    raw = gluon_to_raw(ours)                                     # and the raw dict is the same file
    nd.save(str(tmp_path / 'raw.params'), raw)
    twin.load_parameters(str(tmp_path / 'raw.params'))
    np.testing.assert_allclose(twin(X).asnumpy(), ours(X).asnumpy(), rtol=RTOL, atol=ATOL)


def test_raw_adapter_shares_arrays_with_its_parameters():
    raw = init_raw_lenet('scratch')
    net = RawLeNet(raw)
    assert net.params['conv1.weight'] is net.parameters['conv1.weight'].data()
    assert net.parameters['bn1.running_var'].grad_req == 'null'
    with autograd.record():
        net(batch(4)).sum().backward()
    assert np.abs(net.parameters['conv1.weight'].grad().asnumpy()).sum() > 0
    assert not np.allclose(net.params['bn1.running_mean'].asnumpy(), 0)   # updated in place by training
    with pytest.raises(TypeError, match='cannot be hybridized'):
        net.hybridize()


@pytest.mark.parametrize('norm,dense_norm', [('scratch', False), ('renorm', True), ('group', True),
                                             ('lrn', True)])
def test_hybridized_lenet_matches_imperative(norm, dense_norm):
    mx.random.seed(6)
    a = lenet(norm, dense_norm=dense_norm)
    mx.random.seed(6)
    b = lenet(norm, dense_norm=dense_norm)
    b.hybridize()
    X = batch(16)
    for net in (a, b):
        with autograd.record():
            net(X).sum().backward()
    for (name, pa), pb in zip(named_parameters(a).items(), named_parameters(b).values()):
        x, y = (pa.grad(), pb.grad()) if pa.grad_req != 'null' else (pa.data(), pb.data())
        np.testing.assert_allclose(x.asnumpy(), y.asnumpy(), rtol=1e-3, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(a(X).asnumpy(), b(X).asnumpy(), rtol=RTOL, atol=ATOL)


def test_build_net_rejects_unknown_style():
    with pytest.raises(ValueError, match="style must be 'gluon' or 'raw'; got 'keras'"):
        models.build_net(style='keras')


# The other normalizations in the BN slots: what each builds, its parameters, and one training step.
OTHER_NORMS = {  # name -> (block class, bn1's parameter shapes with C = 20)
    'renorm': (bn_gluon.BatchRenorm, {'gamma': (20,), 'beta': (20,), 'running_mean': (20,),
                                      'running_var': (20,), 'num_steps': (1,)}),
    'layer': (bn_gluon.GroupNorm, {'gamma': (1,), 'beta': (1,)}),
    'group': (bn_gluon.GroupNorm, {'gamma': (5,), 'beta': (5,)}),
    'instance': (bn_gluon.InstanceNorm, {'gamma': (20,), 'beta': (20,)}),
    'lrn': (bn_gluon.LRN, {}),
}


@pytest.mark.parametrize('channels,groups', [(20, 5), (50, 10), (128, 32), (12, 3), (7, 1), (3, 1), (1, 1)])
def test_group_count_makes_groups_of_at_least_four_channels(channels, groups):
    assert models.group_count(channels) == groups


@pytest.mark.parametrize('norm', sorted(OTHER_NORMS))
def test_other_norms_build_and_train_a_step(norm):
    block, shapes = OTHER_NORMS[norm]
    mx.random.seed(0)
    net = lenet(norm)
    assert isinstance(net.bn1, block) and isinstance(net.bn2, block) and net.bn3 is None
    assert {k[4:]: p.shape for k, p in named_parameters(net).items() if k.startswith('bn1.')} == shapes
    optimizer = SGD(named_parameters(net), lr=0.1)
    X, y = batch(8), nd.arange(8) % 10
    before = values(net)
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y)
    loss.backward()
    optimizer.step(8)
    after = values(net)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert {'conv1.weight', 'dense2.bias'} <= changed
    assert {f'bn1.{k}' for k in shapes} <= changed                # learned, averaged or counted
    assert np.isfinite(net(X).asnumpy()).all()


def test_example_norms_normalize_each_example_alone():
    """Layer, group and instance norm give an example the same output whatever else is in its batch."""
    X = batch(6)
    for norm in ('layer', 'group', 'instance'):
        net = lenet(norm)
        with autograd.record():
            together = net(X)
        with autograd.record():
            alone = net(X[:1])
        np.testing.assert_allclose(alone.asnumpy(), together[:1].asnumpy(), rtol=RTOL, atol=ATOL, err_msg=norm)


def test_layer_and_group_norm_standardize_the_sets_they_name():
    net = lenet('group')
    seen = {}
    net.bn2.register_forward_hook(lambda blk, inp, out: seen.update(out=out.asnumpy()))
    net(batch(4))
    groups = seen['out'].reshape(4, 10, -1)                      # (N, 50, 10, 10) -> 10 groups of 5 channels
    np.testing.assert_allclose(groups.mean(axis=2), 0, atol=1e-4)
    np.testing.assert_allclose(groups.var(axis=2), 1, atol=1e-3)
    net = lenet('layer')
    net.bn1.register_forward_hook(lambda blk, inp, out: seen.update(out=out.asnumpy()))
    net(batch(4))
    np.testing.assert_allclose(seen['out'].reshape(4, -1).mean(axis=1), 0, atol=1e-4)   # over all (C, H, W)


def test_lenet_lrn_has_alexnets_constants():
    net = lenet('lrn')
    assert repr(net.bn1) == "LRN(n=5, k=2.0, alpha=0.0001, beta=0.75, region='inter', convention='alexnet')"


def test_lenet_renorm_counts_steps_and_follows_the_lenet_schedule():
    net = lenet('renorm')
    assert net.bn1.schedule == models.LENET_RENORM_SCHEDULE
    assert models.LENET_RENORM_SCHEDULE(0) == (1.0, 0.0) and models.LENET_RENORM_SCHEDULE(1000) == (3.0, 5.0)
    for _ in range(2):
        with autograd.record():
            net(batch(4))
    assert net.bn2.num_steps.data().asscalar() == 2


def test_instance_norm_has_no_positions_after_the_dense_layer():
    with pytest.raises(ValueError, match=r"norm 'instance' normalizes over the positions \(H, W\)"):
        lenet('instance', dense_norm=True)
    with pytest.raises(ValueError, match="norm 'instance' normalizes over the positions"):
        TrainConfig(norm='instance', dense_norm=True).validate()
    assert lenet('group', dense_norm=True).bn3.gamma.shape == (32,)   # 128 features in 32 groups


@pytest.mark.parametrize('norm', sorted(OTHER_NORMS) + ['gluon'])
def test_raw_style_refuses_the_gluon_only_norms(norm):
    with pytest.raises(ValueError, match=f"norm '{norm}' needs Gluon blocks, but style 'raw'"):
        TrainConfig(norm=norm, style='raw').validate()
    with pytest.raises(ValueError, match=f"raw network supports norm 'scratch' or 'none'; got '{norm}'"):
        models.build_net(norm, style='raw')


@pytest.mark.parametrize('style, hybridize', [('gluon', False), ('gluon', True), ('raw', False)])
@pytest.mark.parametrize('shape', [(4, 3, 28, 28), (4, 1, 32, 32), (4, 784)])
def test_a_wrong_input_shape_is_a_clear_error_in_every_style(style, hybridize, shape):
    net = models.build_net("scratch", style)
    if hybridize:
        net.hybridize()
        net(nd.zeros((2, 1, 28, 28)))                      # built: the graph exists before the bad call
    with pytest.raises(ValueError, match=r'images of shape \(N, 1, 28, 28\) with N >= 1; got \(' + str(shape[0])):
        with autograd.record():
            net(nd.zeros(shape))


@pytest.mark.parametrize('act', models.ACTIVATIONS)
@pytest.mark.parametrize('norm', ['scratch', 'none'])
def test_activation_choice_matches_the_layers_applied_by_hand(act, norm):
    """The inference forward pass written again in NumPy, from the parameters alone."""
    net = lenet(norm, dense_norm=True, act=act)
    X = batch(8)
    p = values(net)
    if norm != 'none':                                             # statistics and an affine map that show
        rng = np.random.RandomState(1)
        for name, v in p.items():
            if name.startswith('bn'):
                p[name] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
                named_parameters(net)[name].set_data(nd.array(p[name]))
    f = {'relu': lambda H: np.maximum(H, 0), 'sigmoid': lambda H: 1 / (1 + np.exp(-H)), 'tanh': np.tanh}[act]

    def conv(H, layer):                                            # (N, C, H, W) -> (N, K, H-k+1, W-k+1)
        W, b = p[f'{layer}.weight'], p[f'{layer}.bias']
        windows = np.lib.stride_tricks.sliding_window_view(H, W.shape[2:], axis=(2, 3))
        return np.einsum('nchwij,kcij->nkhw', windows, W) + b[:, None, None]

    def bn(H, layer):                                              # running statistics: inference mode
        if norm == 'none':
            return H
        shape = (1, -1) + (1,) * (H.ndim - 2)
        g, b, m, v = (p[f'{layer}.{k}'].reshape(shape) for k in ('gamma', 'beta', 'running_mean', 'running_var'))
        return g * (H - m) / np.sqrt(v + 1e-5) + b

    def pool(H):                                                   # 2x2 max, stride 2
        N, C, h, w = H.shape
        return H.reshape(N, C, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    X = X.asnumpy().astype(np.float64)
    H = pool(f(bn(conv(X, 'conv1'), 'bn1')))
    H = pool(f(bn(conv(H, 'conv2'), 'bn2'))).reshape(len(X), -1)
    H = f(bn(H @ p['dense1.weight'].T + p['dense1.bias'], 'bn3'))
    expected = H @ p['dense2.weight'].T + p['dense2.bias']
    np.testing.assert_allclose(net(nd.array(X)).asnumpy(), expected, rtol=RTOL, atol=ATOL)


def test_unknown_activation_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown activation 'gelu'; expected one of relu, sigmoid, tanh"):
        lenet(act='gelu')


@pytest.mark.parametrize('hybridize', [False, True])
def test_preactivations_are_what_enters_each_activation(hybridize):
    net = lenet('scratch', dense_norm=True, act='sigmoid')
    if hybridize:
        net.hybridize()
    X = batch(32)
    seen = {}
    for name in ('bn1', 'bn2', 'bn3'):
        getattr(net, name).register_forward_hook(lambda blk, inp, out, name=name: seen.update({name: out}))
    with autograd.record():                                        # training mode: batch statistics
        taps = net.preactivations(X)
    assert {k: v.shape for k, v in taps.items()} == {'conv1': (32, 20, 24, 24), 'conv2': (32, 50, 10, 10),
                                                     'dense1': (32, 128), 'scores': (32, 10)}
    for tap, bn in (('conv1', 'bn1'), ('conv2', 'bn2'), ('dense1', 'bn3')):
        np.testing.assert_array_equal(taps[tap].asnumpy(), seen[bn].asnumpy())
    np.testing.assert_allclose(taps['dense1'].asnumpy().mean(axis=0), 0, atol=1e-4)   # normalized, gamma 1
    np.testing.assert_allclose(net.preactivations(X)['scores'].asnumpy(), net(X).asnumpy(), rtol=RTOL,
                               atol=ATOL)                          # inference mode: the net's own output
    with pytest.raises(ValueError, match=r'images of shape \(N, 1, 28, 28\) with N >= 1; got \(2, 784\)'):
        net.preactivations(nd.zeros((2, 784)))


# --- where the normalization sits: before or after the activation ---------------------------------------

def hand_built(net, X, position):
    """The LeNet's forward written out with its own blocks, in the order ``position`` names."""
    pool = lambda H: nd.Pooling(H, kernel=(2, 2), stride=(2, 2), pool_type='max')
    act = nd.relu
    stage = (lambda bn, Z: act(bn(Z))) if position == 'before_act' else (lambda bn, Z: bn(act(Z)))
    H = pool(stage(net.bn1, net.conv1(X)))
    H = pool(stage(net.bn2, net.conv2(H)))
    return net.dense2(stage(net.bn3, net.dense1(H)))


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('position', ['before_act', 'after_act'])
def test_norm_position_orders_norm_and_activation(position, hybridize):
    """Training and inference outputs equal the hand-built sequence in the chosen order, not the other."""
    mx.random.seed(0)
    net = lenet('scratch', dense_norm=True, norm_position=position)
    twin = lenet('scratch', dense_norm=True, norm_position=position)
    # The hand-built forward runs on a copy, so each net's running statistics move once per batch.
    for name, p in named_parameters(twin).items():
        p.set_data(named_parameters(net)[name].data())
    if hybridize:
        net.hybridize()
    X = batch(32)
    with autograd.record():                                         # training mode: batch statistics
        got, expected = net(X), hand_built(twin, X, position)
    np.testing.assert_allclose(got.asnumpy(), expected.asnumpy(), rtol=RTOL, atol=ATOL)
    for name in ('bn1.running_mean', 'bn3.running_var'):           # the statistics moved alike
        np.testing.assert_allclose(named_parameters(net)[name].data().asnumpy(),
                                   named_parameters(twin)[name].data().asnumpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(net(X).asnumpy(), hand_built(twin, X, position).asnumpy(), rtol=RTOL, atol=ATOL)
    other = 'after_act' if position == 'before_act' else 'before_act'
    with autograd.record():                                         # and the other order is told apart
        assert np.abs(hand_built(twin, X, other).asnumpy() - got.asnumpy()).max() > 1e-2


def test_after_act_the_norm_receives_the_activations_output():
    """With 'after_act' bn1 receives relu(conv1(X)), non-negative, and its output goes to the pooling as is."""
    net = lenet('scratch', norm_position='after_act')
    seen = {}
    net.conv1.register_forward_hook(lambda blk, inp, out: seen.update(conv=out))
    net.bn1.register_forward_hook(lambda blk, inp, out: seen.update(bn_in=inp[0], bn_out=out))
    net.pool1.register_forward_hook(lambda blk, inp, out: seen.update(pool_in=inp[0]))
    with autograd.record():
        net(batch(32))
    bn_in = seen['bn_in'].asnumpy()
    assert bn_in.min() == 0 and (bn_in == 0).mean() > 0.2           # the ReLU's zeros reach the norm
    np.testing.assert_array_equal(bn_in, np.maximum(seen['conv'].asnumpy(), 0))
    np.testing.assert_array_equal(seen['pool_in'].asnumpy(), seen['bn_out'].asnumpy())
    assert (seen['bn_out'].asnumpy() < 0).mean() > 0.2              # normalized: negative values go on


def test_after_act_preactivations_are_the_layer_outputs():
    net = lenet('scratch', dense_norm=True, norm_position='after_act')
    X = batch(8)
    taps = net.preactivations(X)
    np.testing.assert_array_equal(taps['conv1'].asnumpy(), net.conv1(X).asnumpy())   # what enters the ReLU
    np.testing.assert_allclose(taps['scores'].asnumpy(), net(X).asnumpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('position', ['after', 'before', None])
def test_a_bad_norm_position_is_refused_in_words(position):
    message = (f"unknown norm_position {position!r}; expected 'before_act' \\(conv -> norm -> activation, the "
               f"paper's order\\) or 'after_act'")
    with pytest.raises(ValueError, match=message):
        lenet(norm_position=position)
    with pytest.raises(ValueError, match=message):
        models.build_net(norm_position=position)
    with pytest.raises(ValueError, match=f"--norm-position must be one of before_act, after_act; got {position!r}"):
        TrainConfig(norm_position=position).validate()


def test_the_raw_network_and_folding_refuse_after_act():
    with pytest.raises(ValueError, match="the raw network writes the article's conv -> BN -> ReLU only"):
        models.build_net(style='raw', norm_position='after_act')
    with pytest.raises(ValueError, match="style 'raw' writes the article's conv -> BN -> ReLU only"):
        TrainConfig(style='raw', norm_position='after_act').validate()
    from bn_gluon.fold import fold_batch_norm
    with pytest.raises(ValueError, match='normalizes after each activation .* an activation stands between'):
        fold_batch_norm(lenet('scratch', norm_position='after_act'))
    assert isinstance(fold_batch_norm(lenet('none', norm_position='after_act')), LeNet)   # nothing to fold


def test_build_net_and_make_net_pass_the_position_on():
    from bn_gluon.experiment import make_net
    assert models.build_net(norm_position='after_act').norm_position == 'after_act'
    assert make_net(TrainConfig(norm_position='after_act', hybridize=False), mx.cpu()).norm_position == 'after_act'
    assert make_net(TrainConfig(), mx.cpu()).norm_position == 'before_act'
    assert TrainConfig.from_dict({'norm': 'scratch'}).norm_position == 'before_act'   # configs of earlier runs
