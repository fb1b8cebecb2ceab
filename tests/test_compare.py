"""bn_gluon.compare: twin training, conventions, gluoncv twins, interchange and the report, on small shapes."""
import json
import types

import mxnet as mx
import numpy as np
import pytest
from matplotlib.figure import Figure
from mxnet import nd
from mxnet.gluon import nn

import bn_gluon
import bn_gluon.plots
from bn_gluon.compare import semantics, speed
from bn_gluon.compare.__main__ import main
from bn_gluon.compare.report import load_data
from bn_gluon.compare.twin_training import train_lenet_twins, train_twins
from bn_gluon.compare.speed import measure_speed
from bn_gluon.compare.markdown import float64_table
from bn_gluon.compare.twins import compare_resnet, distances_to_float64, interchange
from bn_gluon.config import TrainConfig
from bn_gluon.models import copy_parameters, lenet
from bn_gluon.plots import draw_float64_distances, plot_speed


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    from bn_gluon.data import write_synthetic_fashion_mnist
    return str(write_synthetic_fashion_mnist(tmp_path_factory.mktemp('fashion'), n_train=256, n_test=64))


def small_net(norm, **kwargs):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=2), norm(in_channels=4, **kwargs), nn.Activation('relu'), nn.Dense(3))
    net.initialize()
    net(nd.zeros((1, 2, 6, 6)))
    return net


def small_batches(n, seed=0):
    rng = np.random.RandomState(seed)
    return [(nd.array(rng.normal(size=(8, 2, 6, 6))), nd.array(rng.randint(0, 3, 8))) for _ in range(n)]


# --- twin training --------------------------------------------------------------------------------------

@pytest.mark.parametrize('hybridize', [False, True])
def test_lenet_twins_drift_no_more_than_float32_rounding(synthetic, hybridize):
    config = TrainConfig(batch_size=16, data_dir=synthetic, download=False, verify=False)
    train_iter, _ = load_data(config, mx.cpu(), train_limit=64)
    h = train_lenet_twins(config, train_iter, steps=6, hybridize=hybridize)    # 6 steps: more than one epoch
    yardstick = train_lenet_twins(config, train_iter, steps=6, float64=True)   # gluon float32 vs float64
    assert len(h['output']) == 6
    assert h['output'][0] < 1e-5 and h['loss'][0] < 1e-6                   # same parameters: same forward
    for q in ('output', 'parameters', 'running_stats'):
        assert max(h[q]) < 10 * max(yardstick[q]) + 1e-5, q
    assert set(h['final']) >= {'conv1.weight', 'bn1.gamma', 'bn2.running_var'}


def test_twin_training_sees_a_layer_that_differs():
    """The instrument works: a twin with another momentum shows up in the running statistics at once."""
    a = small_net(bn_gluon.BatchNorm)
    b = copy_parameters(a, small_net(nn.BatchNorm, momentum=0.5))
    h = train_twins(a, b, small_batches(2), lr=0.1)
    assert h['output'][0] < 1e-5
    assert h['running_stats'][0] > 1e-2


def test_twin_training_of_identical_twins_and_bad_input():
    a = small_net(bn_gluon.BatchNorm)
    b = copy_parameters(a, small_net(nn.BatchNorm))
    h = train_twins(a, b, small_batches(3), lr=0.1, momentum=0.9)
    assert max(h['output']) < 1e-4 and max(h['running_stats']) < 1e-5
    with pytest.raises(ValueError, match='no batches'):
        train_twins(a, b, [], lr=0.1)
    with pytest.raises(ValueError, match='the source network does not fit this network'):
        copy_parameters(lenet('scratch'), lenet('none'))


def test_old_lockstep_names_warn_and_still_work():
    """The twin training's names before it was renamed keep working for one release, with a FutureWarning."""
    import importlib
    import sys
    import bn_gluon.compare as compare
    from bn_gluon.compare import markdown
    with pytest.warns(FutureWarning, match='train_twins'):
        old_function = compare.lockstep
    assert old_function is train_twins
    sys.modules.pop('bn_gluon.compare.lockstep', None)
    try:
        with pytest.warns(FutureWarning, match='bn_gluon.compare.twin_training'):
            old = importlib.import_module('bn_gluon.compare.lockstep')
        a = small_net(bn_gluon.BatchNorm)
        b = old.copy_parameters(a, small_net(nn.BatchNorm))
        with pytest.warns(FutureWarning, match='train_twins'):
            h = old.lockstep(a, b, small_batches(1), lr=0.1)
        with pytest.warns(FutureWarning, match='twin_summary'):
            assert markdown.lockstep_summary(h) == markdown.twin_summary(h)
    finally:
        sys.modules.pop('bn_gluon.compare.lockstep', None)
        compare.__dict__.pop('lockstep', None)
    sys.modules.pop('bn_gluon.compare.figures', None)
    with pytest.warns(FutureWarning, match='bn_gluon.plots'):
        figures = importlib.import_module('bn_gluon.compare.figures')
    assert figures.draw_lockstep is bn_gluon.plots.draw_twin_training


def test_old_section_and_flag_names_warn(tmp_path, capsys):
    with pytest.warns(FutureWarning, match="section 'lockstep' is now 'twins'"), \
            pytest.warns(FutureWarning, match='--lockstep-steps is now --twin-steps'):
        with pytest.raises(SystemExit):
            main(['--out', str(tmp_path / 'never'), '--sections', 'lockstep', '--lockstep-steps', '0'])
    assert 'twin_steps must be an integer >= 1' in capsys.readouterr().err


# --- semantics: each checkable row of the table ------------------------------------------------------

@pytest.mark.parametrize('system', list(semantics.CONVENTIONS))
def test_each_convention_is_reproduced_by_its_bn_gluon_setting(system):
    result = semantics.check(system)
    assert result['same_values'], result
    expected = {'mxnet_cpu': ('backward', 'forward')}.get(system, ('forward', 'forward'))
    assert (result['reference_moves'], result['bn_gluon_moves']) == expected


def test_conventions_differ_so_the_checks_can_fail():
    batches = semantics.make_batches()
    biased, _ = semantics.bn_gluon_stats('mxnet_cpu', batches)
    for system in ('mxnet_cudnn', 'paper'):
        ref, _ = semantics.reference_stats(system, batches)
        assert np.abs(ref[-1][1] - biased[-1][1]).max() > 100 * semantics.TOLERANCE
    with pytest.raises(ValueError, match='unknown system'):
        semantics.check('caffe')


# --- gluoncv ResNets and interchange ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('name', ['cifar_resnet20_v1', 'cifar_resnet20_v2'])
def test_gluoncv_resnet_twins_agree_in_both_modes_and_after_a_step(name):
    r = compare_resnet(name, steps=1, batch_size=4)
    assert r['inference'] < 1e-5
    assert r['training']['output'][0] < 1e-4                               # training mode, same parameters
    assert r['training']['parameters'][0] < 1e-3                           # lr * gradient difference
    assert r['training']['running_stats'][0] < 1e-5
    assert r['inference_after'] < 1e-3


@pytest.mark.slow
def test_resnet_twins_drift_no_more_than_float32_rounding():
    """Over several steps the ResNet amplifies rounding; gluon's own float32-vs-float64 drift is the bar."""
    r = compare_resnet('cifar_resnet20_v2', steps=2, batch_size=4)
    yardstick = compare_resnet('cifar_resnet20_v2', steps=2, batch_size=4, float64=True)
    for q in ('output', 'parameters', 'running_stats'):
        assert max(r['training'][q]) < 10 * max(yardstick['training'][q]) + 1e-5, q


@pytest.mark.slow
@pytest.mark.parametrize('name', ['cifar_resnet20_v1', 'cifar_resnet20_v2'])
def test_scratch_resnets_stay_as_close_to_float64_as_gluons_float32_ones(name):
    """Against the float64 copy, over 5 seeds: a float32 network leaves rounding at step 1 only where it meets
    a ReLU or max-pooling kink; ours may do so on one seed more than gluon's, and its median distance after
    3 steps is at most twice gluon's. A wrong formula leaves rounding at step 1 on every seed."""
    r = distances_to_float64(name, steps=3, seeds=range(5))
    left = {k: sum(d[0] > 1e-5 for d in r[k]) for k in r}
    assert left['scratch'] <= left['gluon'] + 1, left
    median = {k: np.median([d[-1] for d in r[k]]) for k in r}
    assert median['scratch'] <= 2 * median['gluon'] + 1e-6, median


def test_float64_distances_table_and_figure():
    results = {'net': {'scratch': [[1e-7, 1e-6], [2e-4, 3e-2], [1e-7, 2e-7]],
                       'gluon': [[3e-5, 1e-2], [1e-7, 1e-7], [1e-7, 3e-7]]}}
    row = float64_table(results).splitlines()[2]
    assert row == '| net | 3 | 2 | 1.0e-06 / 3.0e-02 | 3.0e-07 / 1.0e-02 | 1 / 1 |'
    fig = draw_float64_distances(Figure(), results)
    xs, ys = fig.axes[0].lines[0].get_data()
    np.testing.assert_allclose(xs, [1e-2, 1e-7, 3e-7])                     # gluon's last step, per seed
    np.testing.assert_allclose(ys, [1e-6, 3e-2, 2e-7])


@pytest.mark.slow
def test_resnet_v2_first_norm_moves_only_in_ours_without_an_input_gradient():
    """MXNet's CPU operator updates in backward, which never reaches a BN on the input needing no gradient."""
    r = compare_resnet('cifar_resnet20_v2', steps=1, batch_size=4, input_grad=False)
    assert r['training']['final']['features.0.running_mean'] > 1e-4
    assert r['training']['output'][0] < 1e-4


def test_parameters_interchange_both_ways():
    mx.random.seed(1)
    X = nd.random.uniform(shape=(16, 1, 28, 28))
    for src_norm, dst_norm in (('scratch', 'gluon'), ('gluon', 'scratch')):
        src = lenet(src_norm)
        src.bn1.running_mean.set_data(nd.random.normal(shape=(20,)))      # as if trained
        result = interchange(src, lenet(dst_norm), X)
        assert result['max_logit_difference'] < 1e-4
        assert result['same_prediction'] == 1.0 and result['n'] == 16


# --- speed and the report -----------------------------------------------------------------------------

def test_speed_is_the_median_of_each_rounds_ratio_with_the_order_alternating(monkeypatch):
    """On a clock that only the steps move, known step times give known speeds and medians."""
    clock, calls = [0.0], []
    durations = {'gluon': iter([5.0] + [2.0] * 6),                       # warm-up, then 3 rounds of 2 calls
                 'scratch': iter([9.0, 1.0, 1.0, 4.0, 4.0, 1.0, 1.0])}  # the second round slowed by a neighbour

    def step(name):
        def run():
            calls.append(name)
            clock[0] += next(durations[name])
        return run

    monkeypatch.setattr(speed, 'time', types.SimpleNamespace(perf_counter=lambda: clock[0]))
    times = speed.interleaved({'gluon': step('gluon'), 'scratch': step('scratch')}, rounds=3, repeats=2)
    assert times == {'gluon': [2.0, 2.0, 2.0], 'scratch': [1.0, 4.0, 1.0]}     # the warm-up is not timed
    assert calls == ['gluon', 'scratch'] + ['gluon'] * 2 + ['scratch'] * 4 + ['gluon'] * 2 + \
        ['gluon'] * 2 + ['scratch'] * 2                                     # every other round reversed
    row = speed.summarize('case', 'imperative', times, examples=100)
    assert row['speed'] == {'gluon': 1.0, 'scratch': 2.0}                  # median of 2/1, 2/4, 2/1
    assert row['ms'] == {'gluon': 2000.0, 'scratch': 1000.0}
    assert row['examples_per_sec'] == {'gluon': 50.0, 'scratch': 100.0}


def test_speed_rows_cover_every_case_and_agree_with_their_times(tmp_path):
    rows = measure_speed(batch_size=4, rounds=1, layer_repeats=1, net_repeats=1)
    assert [(r['mode'], r['case'].split()[0]) for r in rows] == [
        (m, c) for m in ('imperative', 'hybridized') for c in ('conv1', 'conv2', 'LeNet')]
    for r in rows:                                   # one round: each speed is the ratio of the two times
        assert r['speed']['scratch'] == pytest.approx(r['ms']['gluon'] / r['ms']['scratch'])
    for r in rows[2::3]:
        assert set(r['examples_per_sec']) == {'gluon', 'scratch', 'none'}
        for name, ms in r['ms'].items():
            assert r['examples_per_sec'][name] == pytest.approx(4 / (ms / 1e3))
    assert plot_speed(rows, tmp_path / 'speed.png').stat().st_size > 0


def test_command_line_writes_report_figures_and_results(synthetic, tmp_path, capsys):
    out = tmp_path / 'report'
    assert main(['--out', str(out), '--data-dir', synthetic, '--no-verify', '--no-download', '--epochs', '1',
                 '--batch-size', '32', '--train-limit', '64', '--twin-steps', '2',
                 '--sections', 'semantics', 'twins', 'runs']) == 0
    for name in ('report.md', 'results.json', 'compare-twins.png', 'compare-curves.png'):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / 'results.json').read_text())
    assert set(results['runs']['final']) == {'none', 'scratch', 'gluon'}
    assert results['interchange']['scratch -> gluon']['same_prediction'] == 1.0
    report = (out / 'report.md').read_text()
    assert '## Twin training' in report and 'PyTorch' in report and '![curves](compare-curves.png)' in report
    assert 'twins       max drift' in capsys.readouterr().out


@pytest.mark.parametrize('argv,words', [
    (['--sections', 'colour'], 'invalid choice'),
    (['--twin-steps', '0'], 'twin_steps must be an integer >= 1'),
    (['--train-limit', '3'], 'train_limit must be None or an integer >='),
    (['--lr', '-1'], '--lr must be'),
])
def test_bad_arguments_exit_with_a_message_and_write_nothing(argv, words, tmp_path, capsys):
    out = tmp_path / 'never'
    with pytest.raises(SystemExit) as info:
        main(['--out', str(out)] + argv)
    assert info.value.code == 2
    assert words in capsys.readouterr().err
    assert not out.exists()
