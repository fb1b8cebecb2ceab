"""bn_gluon.fold: folded networks equal the originals at inference, export without BN, and the CLI."""
import json
import os
import re
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

import bn_gluon
from bn_gluon import checkpoint as ckpt
from bn_gluon.config import TrainConfig
from bn_gluon.fold import (NORM_OPS, FoldWarning, ScaleShift, export_network, fold_batch_norm, fold_layer,
                           fold_raw_params, graph_ops, load_exported, scale_shift_from)
from bn_gluon.fold.__main__ import main as fold_main
from bn_gluon.models import NEEDS_POSITIONS
from bn_gluon.models import NORMS as MODEL_NORMS
from bn_gluon.models import (LeNet, RawLeNet, init_raw_lenet, lenet, named_parameters, raw_lenet_forward,
                             raw_to_gluon)
from bn_gluon.optim import make_optimizer

RTOL, ATOL = 1e-4, 1e-5
NORMS = {'scratch': bn_gluon.BatchNorm, 'gluon': nn.BatchNorm}


def randomize(net, seed=1):
    """Batch norm parameters far from the identity, so that a fold that forgets one of them shows."""
    rs = np.random.RandomState(seed)
    for name, p in sorted(net.collect_params().items()):
        if name.endswith('running_var'):
            p.set_data(nd.array(rs.uniform(0.3, 3.0, p.shape)))
        elif name.endswith(('running_mean', 'gamma', 'beta')):
            p.set_data(nd.array(rs.normal(0.5, 1.0, p.shape)))
    return net


def snapshot(net):
    return {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}


def blocks(net):
    for child in net._children.values():
        yield child
        yield from blocks(child)


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=rtol, atol=atol)


def images(n=8, seed=0):
    return nd.array(np.random.RandomState(seed).uniform(size=(n, 1, 28, 28)))


def built(net, X):
    net.initialize()
    net(X)                                                        # infer the deferred shapes
    return randomize(net)


def quiet_fold(net, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FoldWarning)
        return fold_batch_norm(net, **kwargs)


# --- the per-channel affine map --------------------------------------------------------------------------

@pytest.mark.parametrize('norm', NORMS)
@pytest.mark.parametrize('center,scale', [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize('axis,shape', [(1, (4, 3, 5, 5)), (1, (6, 3)), (2, (2, 3, 4, 5)), (-1, (2, 3, 4)),
                                        (0, (3, 4)), (-3, (2, 3, 4, 5))])
def test_scale_shift_is_the_batch_norm_at_inference(norm, center, scale, axis, shape):
    C = shape[axis]
    bn = NORMS[norm](axis=axis, center=center, scale=scale, in_channels=C)
    bn.initialize()
    randomize(bn)
    X = nd.random.normal(1.0, 2.0, shape=shape)
    layer = scale_shift_from(bn)
    close(layer(X), bn(X))
    layer.hybridize()
    close(layer(X), bn(X))


def test_folded_conv_follows_the_formulas():
    """W' = W gamma / sqrt(var + eps) per output channel, b' = (b - mean) gamma / sqrt(var + eps) + beta."""
    for use_bias in (False, True):
        conv, bn = nn.Conv2D(5, 3, in_channels=2, use_bias=use_bias), nn.BatchNorm(in_channels=5, epsilon=1e-3)
        for block in (conv, bn):
            block.initialize()
        randomize(bn)
        if use_bias:
            conv.bias.set_data(nd.random.normal(shape=(5,)))
        W = conv.weight.data().asnumpy()
        b = conv.bias.data().asnumpy() if use_bias else np.zeros(5)
        g, beta, mean, var = (p.data().asnumpy() for p in (bn.gamma, bn.beta, bn.running_mean, bn.running_var))
        s = g / np.sqrt(var + 1e-3)
        folded = fold_layer(conv, bn)
        assert folded.bias is not None                           # a layer without bias gains one
        np.testing.assert_allclose(folded.weight.data().asnumpy(), W * s[:, None, None, None], rtol=1e-6)
        np.testing.assert_allclose(folded.bias.data().asnumpy(), (b - mean) * s + beta, rtol=1e-5, atol=1e-6)
        X = nd.random.normal(shape=(3, 2, 7, 7))
        close(folded(X), bn(conv(X)))


# --- Gluon networks ---------------------------------------------------------------------------------------

def conv_net(norm):
    BN = NORMS[norm]
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, use_bias=False), BN(), nn.Activation('relu'), nn.MaxPool2D(),
            nn.Conv2D(6, 3), BN(), nn.Activation('relu'),
            nn.Dense(16), BN(), nn.Activation('relu'), nn.Dense(3))
    return net


# The hybridized scratch layer runs as a custom operator, whose inference outputs are intermittently wrong
# with MKL-DNN on; the hybridized original is therefore the gluon one.
@pytest.mark.parametrize('norm,hybridized', [('scratch', False), ('gluon', False), ('gluon', True)])
def test_fold_gives_the_same_outputs_and_leaves_the_original_alone(norm, hybridized):
    X = nd.random.uniform(shape=(6, 2, 12, 12))
    net = built(conv_net(norm), X)
    if hybridized:
        net.hybridize()
    before, y = snapshot(net), net(X)
    with warnings.catch_warnings():
        warnings.simplefilter('error', FoldWarning)              # every BN here follows a conv or dense
        folded = fold_batch_norm(net)
    assert [type(b).__name__ for b in folded._children.values()] == \
        ['Conv2D', 'Activation', 'MaxPool2D', 'Conv2D', 'Activation', 'Dense', 'Activation', 'Dense']
    close(folded(X), y)
    assert (folded(X).argmax(axis=1) == y.argmax(axis=1)).min() == 1
    folded.hybridize()
    close(folded(X), y)
    for block in folded._children.values():                      # nothing shared with the original
        for p in block.collect_params().values():
            p.set_data(nd.zeros(p.shape))
    after = snapshot(net)
    assert sorted(after) == sorted(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    np.testing.assert_array_equal(net(X).asnumpy(), y.asnumpy())


def test_nested_containers_fold_inside_and_keep_the_boundary_exact():
    X = nd.random.uniform(shape=(4, 3, 10, 10))
    inner = nn.HybridSequential()
    inner.add(nn.BatchNorm(), nn.Conv2D(4, 3), bn_gluon.BatchNorm(), nn.Activation('relu'))
    outer = nn.Sequential()                                       # not hybrid: children run one by one
    block = nn.HybridSequential()
    block.add(nn.Conv2D(5, 1), nn.BatchNorm())
    outer.add(block, nn.Conv2D(3, 1), inner, nn.Lambda(lambda x: x * 2), nn.Dense(4), bn_gluon.BatchNorm(axis=-1))
    net = built(outer, X)
    with pytest.warns(FoldWarning, match=f'{inner[0].name} is not folded: no conv or dense layer'):
        folded = fold_batch_norm(net)
    assert isinstance(folded, nn.Sequential) and isinstance(folded[0], nn.HybridSequential)
    assert [type(b).__name__ for b in folded[0]._children.values()] == ['Conv2D']
    assert [type(b).__name__ for b in folded[2]._children.values()] == ['ScaleShift', 'Conv2D', 'Activation']
    assert [type(b).__name__ for b in folded._children.values()][3:] == ['Lambda', 'Dense']
    assert not any(isinstance(b, (nn.BatchNorm, bn_gluon.BatchNorm)) for b in blocks(folded))
    close(folded(X), net(X))
    with pytest.raises(ValueError, match=f'{inner[0].name} is not folded: no conv or dense'):
        fold_batch_norm(net, strict=True)


@pytest.mark.parametrize('case,reason', [
    ('fused_relu', "applies activation 'relu' before the batch norm"),
    ('other_axis', 'normalizes axis 2, not the channel axis 1'),
    ('dense_no_flatten', r'units on axis -1 \(flatten=False\), the batch norm normalizes axis 1'),
    ('after_pool', 'follows .*MaxPool2D'),
])
def test_unfoldable_batch_norm_is_kept_exact_or_refused(case, reason):
    layer = {'fused_relu': nn.Conv2D(4, 3, activation='relu'), 'other_axis': nn.Conv2D(4, 3),
             'dense_no_flatten': nn.Dense(4, flatten=False), 'after_pool': nn.MaxPool2D()}[case]
    bn = nn.BatchNorm(axis=2) if case == 'other_axis' else bn_gluon.BatchNorm()
    net = nn.HybridSequential()
    net.add(layer, bn)
    X = nd.random.normal(shape=(2, 4, 9, 9))
    built(net, X)
    with pytest.warns(FoldWarning, match=f'{bn.name} is not folded: .*{reason}'):
        folded = fold_batch_norm(net)
    assert isinstance(folded[1], ScaleShift)
    close(folded(X), net(X))
    if case == 'fused_relu':                                      # the kept layer matters: relu changed the input
        assert np.abs((folded[0](X) - net(X)).asnumpy()).max() > 0.1
    with pytest.raises(ValueError, match=f'{bn.name} is not folded: .*{reason}'):
        fold_batch_norm(net, strict=True)


def test_dense_without_flatten_folds_a_batch_norm_on_its_last_axis():
    net = nn.HybridSequential()
    net.add(nn.Dense(5, flatten=False), nn.BatchNorm(axis=-1))
    X = nd.random.normal(shape=(2, 3, 7))                         # (N, T, in) -> (N, T, 5)
    built(net, X)
    folded = fold_batch_norm(net, strict=True)
    assert [type(b).__name__ for b in folded._children.values()] == ['Dense']
    assert folded(X).shape == (2, 3, 5)
    close(folded(X), net(X))


@pytest.mark.parametrize('make_conv,shape', [
    (lambda: nn.Conv1D(4, 3), (2, 3, 9)),
    (lambda: nn.Conv2D(4, 3, groups=2, strides=2, padding=1, dilation=2), (2, 6, 9, 9)),
    (lambda: nn.Conv3D(4, 2, use_bias=False), (2, 3, 4, 5, 5))])
def test_one_to_three_dimensional_and_grouped_convolutions_fold(make_conv, shape):
    conv = make_conv()
    net = nn.HybridSequential()
    net.add(conv, bn_gluon.BatchNorm())
    X = nd.random.normal(shape=shape)
    built(net, X)
    folded = fold_batch_norm(net, strict=True)
    assert [type(b) for b in folded._children.values()] == [type(conv)]
    assert folded[0]._kwargs == dict(conv._kwargs, no_bias=False)
    close(folded(X), net(X))


def test_channel_last_convolution_is_refused():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, layout='NHWC', in_channels=3), nn.BatchNorm(axis=3, in_channels=4))
    net.initialize()                                              # the CPU cannot run NHWC; folding needs no run
    with pytest.raises(ValueError, match=f'{net[1].name} is not folded: .*layout NHWC'):
        fold_batch_norm(net, strict=True)


def test_center_and_scale_off_follow_each_layer_exactly():
    """center=False still adds beta (it is only not learned), scale=False ignores gamma: in both layers."""
    X = nd.random.normal(shape=(3, 2, 6, 6))
    outputs = {}
    for norm in NORMS:
        net = nn.HybridSequential()
        net.add(nn.Conv2D(4, 3), NORMS[norm](center=False, scale=False))
        mx.random.seed(5)                                         # the same convolution for both
        built(net, X)
        net[1].gamma.set_data(nd.full((4,), 3.0))                 # ignored by both: scale=False means gamma 1
        net[1].beta.set_data(nd.full((4,), 0.7))
        folded = fold_batch_norm(net, strict=True)
        close(folded(X), net(X))
        outputs[norm] = net(X).asnumpy()
    np.testing.assert_allclose(outputs['gluon'], outputs['scratch'], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('layer', ['BatchNormReLU', 'BatchRenorm'])
def test_batch_norm_variants_fold(layer):
    bn = nn.BatchNormReLU() if layer == 'BatchNormReLU' else bn_gluon.BatchRenorm()
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3), bn)
    X = nd.random.normal(shape=(2, 3, 8, 8))
    built(net, X)
    folded = fold_batch_norm(net, strict=True)
    expected = ['Conv2D', 'Activation'] if layer == 'BatchNormReLU' else ['Conv2D']
    assert [type(b).__name__ for b in folded._children.values()] == expected
    close(folded(X), net(X))


@pytest.mark.parametrize('norm', sorted(set(MODEL_NORMS) - {'none'}))
def test_every_norm_of_the_lenet_folds_or_is_refused_by_name(norm):
    net = randomize(lenet(norm, dense_norm=norm not in NEEDS_POSITIONS))
    X = images()
    if hasattr(net.bn1, 'running_mean'):                          # running statistics: a fixed map at inference
        close(fold_batch_norm(net, strict=True)(X), net(X))
    else:                                                         # statistics of each example: nothing to fold
        with pytest.raises(TypeError, match=f'bn1 \\({type(net.bn1).__name__}\\).*not a batch norm'):
            fold_batch_norm(net)


@pytest.mark.parametrize('norm', NORMS)
@pytest.mark.parametrize('dense_norm', [False, True])
def test_lenet_folds_into_the_lenet_without_norm(norm, dense_norm):
    net = randomize(lenet(norm, dense_norm=dense_norm))
    X = images()
    folded = fold_batch_norm(net)
    assert isinstance(folded, LeNet) and folded.norm == 'none'
    assert folded.bn1 is None and folded.bn2 is None and folded.bn3 is None
    close(folded(X), net(X))
    folded.hybridize()
    close(folded(X), net(X))


def test_raw_params_fold_like_the_gluon_net():
    params = init_raw_lenet('scratch', dense_norm=True)
    rs = np.random.RandomState(2)
    for name in [n for n in params if n.startswith('bn')]:
        params[name] = nd.array(rs.uniform(0.3, 3.0, params[name].shape))
    before = {k: v.asnumpy().copy() for k, v in params.items()}
    X = images()
    folded = fold_raw_params(params)
    assert sorted(folded) == sorted(init_raw_lenet('none'))
    close(raw_lenet_forward(folded, X, training=False), raw_lenet_forward(params, X, training=False))
    gluon_folded = fold_batch_norm(raw_to_gluon(params, lenet('scratch', dense_norm=True)))
    for layer in ('conv1', 'conv2', 'dense1', 'dense2'):
        close(getattr(gluon_folded, layer).weight.data(), folded[f'{layer}.weight'], rtol=1e-6, atol=0)
    for k, v in params.items():
        np.testing.assert_array_equal(v.asnumpy(), before[k])
    raw_net = fold_batch_norm(RawLeNet(params))                   # the same through the RawLeNet wrapper
    assert isinstance(raw_net, RawLeNet) and sorted(raw_net.params) == sorted(folded)
    close(raw_net(X), raw_lenet_forward(params, X, training=False))


def test_trained_net_keeps_its_test_predictions(tmp_path):
    data = pytest.importorskip('bn_gluon.data')
    from bn_gluon.engine import evaluate
    fm = data.load_fashion_mnist(data.write_synthetic_fashion_mnist(tmp_path, n_train=600, n_test=100),
                                 download=False, verify=False)
    X, y = data.to_nd(fm.train_images, fm.train_labels)
    X_test, y_test = data.to_nd(fm.test_images, fm.test_labels)
    net = lenet('scratch', dense_norm=True)
    opt = make_optimizer('sgd', dict(net.collect_params()), 0.05, 0.9)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for X_batch, y_batch in data.DataIter(X, y, 50, seed=0).epoch(0):
        with autograd.record():
            loss = loss_fn(net(X_batch), y_batch)
        loss.backward()
        opt.step(X_batch.shape[0])
    folded = fold_batch_norm(net)
    folded.hybridize()
    y_ref, y_fold = net(X_test), folded(X_test)
    close(y_fold, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(y_fold.argmax(axis=1).asnumpy(), y_ref.argmax(axis=1).asnumpy())
    test_iter = data.DataIter(X_test, y_test, 50, shuffle=False)
    accuracy = evaluate(net, test_iter)['acc']
    assert accuracy > 0.3                                         # trained: beats 0.1 chance
    assert evaluate(folded, test_iter)['acc'] == accuracy


# --- export -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('norm', NORMS)
def test_export_has_no_batch_norm_and_loads_back(norm, tmp_path):
    net = randomize(lenet(norm))
    X = images()
    unfolded = export_network(randomize(lenet(norm)), str(tmp_path / 'unfolded'))
    assert set(graph_ops(unfolded[0])) & set(NORM_OPS)            # the check can see a batch norm
    files = export_network(fold_batch_norm(net), str(tmp_path / 'folded'))
    assert not set(graph_ops(files[0])) & set(NORM_OPS)
    assert graph_ops(files[0]).count('Convolution') == 2
    close(load_exported(*files)(X), net(X))


def test_export_of_a_kept_batch_norm_has_no_batch_norm_op(tmp_path):
    net = nn.HybridSequential()
    net.add(nn.MaxPool2D(), bn_gluon.BatchNorm(), nn.Dense(3))
    X = images(4)
    built(net, X)
    files = export_network(quiet_fold(net), str(tmp_path / 'kept'), input_shape=(1, 1, 28, 28))
    assert not set(graph_ops(files[0])) & set(NORM_OPS)
    close(load_exported(*files)(X), net(X))


# --- bad input --------------------------------------------------------------------------------------------

class Residual(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2D(3, 3, padding=1, in_channels=3), nn.BatchNorm(in_channels=3)

    def hybrid_forward(self, F, x):
        return x + self.bn(self.conv(x))


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(TypeError, match='needs a gluon Block or a RawLeNet; got dict'):
        fold_batch_norm({'conv1.weight': nd.ones(1)})
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3), nn.BatchNorm())
    net.initialize()                                              # shapes deferred until the first call
    with pytest.raises(ValueError, match='is not initialized.*run it once'):
        fold_batch_norm(net)
    block = Residual()
    block.initialize()
    with pytest.raises(TypeError, match=f'{block.name} .*wires its children in its own forward.*{block.bn.name}'):
        fold_batch_norm(block)
    with pytest.raises(ValueError, match='unknown layers .*conv9'):
        fold_raw_params({'conv9.weight': nd.ones((2, 2))})
    with pytest.raises(ValueError, match='cannot fold .*not a Conv1D/2D/3D or Dense'):
        fold_layer(nn.MaxPool2D(), block.bn)


class PlainResidual(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.conv, self.act = nn.Conv2D(3, 3, padding=1, in_channels=3), nn.PReLU()

    def hybrid_forward(self, F, x):
        return x + self.act(self.conv(x))


def test_a_block_without_batch_norm_is_copied_not_shared():
    net = nn.HybridSequential()
    net.add(PlainResidual(), nn.Conv2D(2, 1, in_channels=3), nn.BatchNorm(in_channels=2))
    net.initialize()
    net.hybridize()
    X = nd.random.normal(shape=(2, 3, 6, 6))
    y = net(X)
    folded = fold_batch_norm(net, strict=True)
    assert isinstance(folded[0], PlainResidual) and len(folded) == 2
    close(folded(X), y)
    folded[0].act.alpha.set_data(nd.full(folded[0].act.alpha.shape, 5.0))
    folded[0].conv.weight.set_data(nd.zeros(folded[0].conv.weight.shape))
    np.testing.assert_array_equal(net(X).asnumpy(), y.asnumpy())


# --- the command line -------------------------------------------------------------------------------------

def write_run(folder, norm='scratch', dense_norm=True):
    """A run folder as train.py leaves it: config.json and model.params (here with made-up statistics)."""
    net = randomize(lenet(norm, dense_norm=dense_norm))
    os.makedirs(folder)
    ckpt.save_params(net, os.path.join(folder, 'model.params'))
    config = TrainConfig(norm=norm, dense_norm=dense_norm, out=str(folder))
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(config.to_dict(), f)
    return net


def cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', 'bn_gluon.fold', *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:Cannot decide type')   # plain gluon, as a user would load it
def test_cli_exports_a_trained_run(tmp_path):
    net = write_run(tmp_path / 'run')
    result = cli(tmp_path / 'run', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / 'out')) == ['fold.json', 'folded-0000.params', 'folded-symbol.json']
    assert 'SymbolBlock.imports' in result.stdout
    symbol = str(tmp_path / 'out' / 'folded-symbol.json')
    assert not set(graph_ops(symbol)) & set(NORM_OPS)
    X = images()
    exported = gluon.SymbolBlock.imports(symbol, ['data'], str(tmp_path / 'out' / 'folded-0000.params'))
    close(exported(X), net(X))
    with open(tmp_path / 'out' / 'fold.json') as f:
        summary = json.load(f)
    assert summary['norm'] == 'scratch' and summary['max_abs_diff']['exported'] < 1e-4


@pytest.mark.parametrize('style', ['gluon', 'raw'])
def test_cli_reads_a_checkpoint_folder_of_either_style(style, tmp_path):
    net = randomize(lenet('scratch')) if style == 'gluon' else RawLeNet(init_raw_lenet('scratch'))
    if style == 'raw':
        for name, p in net.parameters.items():
            if name.startswith('bn'):
                p.set_data(nd.random.uniform(0.3, 3.0, shape=p.shape))
    state = {'epoch': 1, 'step': 0, 'config': TrainConfig(style=style).to_dict()}
    folder = ckpt.save_checkpoint(str(tmp_path / 'checkpoint'), net, make_optimizer('sgd', named_parameters(net), 0.1), state)
    assert fold_main([folder, str(tmp_path / 'out'), '--prefix', 'lenet']) == 0
    exported = load_exported(str(tmp_path / 'out' / 'lenet-symbol.json'), str(tmp_path / 'out' / 'lenet-0000.params'))
    close(exported(images()), net(images()))


@pytest.mark.slow
def test_cli_refuses_a_missing_checkpoint_and_writes_nothing(tmp_path):
    result = cli(tmp_path / 'nowhere', tmp_path / 'out')
    assert result.returncode == 2
    assert 'does not exist' in result.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('problem,message', [
    ('mismatch', 'do not match the network the configuration describes .*dense_norm False.*bn3'),
    ('no_config', 'has no config.json or state.json'),
    ('not_params', 'is not an MXNet parameter file'),
    ('exists', 'folded-symbol.json already exist'),
])
def test_cli_errors_name_the_problem_and_write_nothing(problem, message, tmp_path, capsys):
    run = tmp_path / 'run'
    write_run(run)
    out = tmp_path / 'out'
    checkpoint = run
    if problem == 'mismatch':                                     # the config says no BN after dense1
        with open(run / 'config.json') as f:
            config = dict(json.load(f), dense_norm=False)
        with open(run / 'config.json', 'w') as f:
            json.dump(config, f)
    elif problem == 'no_config':
        os.remove(run / 'config.json')
        checkpoint = run / 'model.params'
    elif problem == 'not_params':
        (run / 'model.params').write_text('not parameters')
    else:
        out.mkdir()
        (out / 'folded-symbol.json').write_text('{}')
    before = sorted(os.listdir(out)) if out.exists() else None
    with pytest.raises(SystemExit) as exit_info:
        fold_main([str(checkpoint), str(out)])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert (sorted(os.listdir(out)) if out.exists() else None) == before


@pytest.mark.slow
@pytest.mark.parametrize('how', ['truncated', 'foreign'])
def test_cli_names_a_truncated_or_foreign_parameter_file_and_writes_nothing(how, tmp_path):
    run = tmp_path / 'run'
    write_run(run)
    params = run / 'model.params'
    raw = params.read_bytes()
    params.write_bytes(raw[:len(raw) // 2] if how == 'truncated' else b'\x89HDF\r\n\x1a\n a Keras file')
    result = cli(run, tmp_path / 'out')
    assert result.returncode == 2
    assert f'error: {params} is truncated or is not an MXNet parameter file' in result.stderr
    assert 'Invalid NDArray file format' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'out').exists()


def test_cli_reads_a_run_whose_config_records_its_data(tmp_path, capsys):
    write_run(tmp_path / 'run')
    config = json.loads((tmp_path / 'run' / 'config.json').read_text())
    config['data'] = {'folder': '/data', 'place': 'root argument (--data-dir)', 'published': True,
                      'files': {'train-images-idx3-ubyte.gz': 'b9bd999c0106c9b8b4b0cefce58c9a6060f27095'}}
    (tmp_path / 'run' / 'config.json').write_text(json.dumps(config))
    assert fold_main([str(tmp_path / 'run'), str(tmp_path / 'out')]) == 0
    assert sorted(os.listdir(tmp_path / 'out')) == ['fold.json', 'folded-0000.params', 'folded-symbol.json']
    (tmp_path / 'run' / 'config.json').write_text(json.dumps(config)[:-20])
    with pytest.raises(SystemExit) as exit_info:
        fold_main([str(tmp_path / 'run'), str(tmp_path / 'again')])
    assert exit_info.value.code == 2 and 'config.json is truncated or not JSON' in capsys.readouterr().err
    assert not (tmp_path / 'again').exists()
