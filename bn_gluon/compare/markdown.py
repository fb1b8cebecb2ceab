"""The comparison's results as a Markdown report and as a short table for the terminal."""
import warnings

import numpy as np

from .semantics import CONVENTIONS
from .twin_training import QUANTITIES


def table(header, rows):
    """A Markdown table from a header and rows of cells."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows])


def twin_summary(history):
    """The largest difference of each quantity of twin training over all steps."""
    return {q: max(history[q]) for q in QUANTITIES}


def lockstep_summary(history):
    """Deprecated name of :func:`twin_summary`; it goes in the next release."""
    warnings.warn('markdown.lockstep_summary is now markdown.twin_summary; the old name goes in the next release.',
                  FutureWarning, stacklevel=2)
    return twin_summary(history)


def semantics_table(checks):
    rows = []
    for c in checks:
        conv = CONVENTIONS[c['system']]
        moves = ('same' if c['reference_moves'] == c['bn_gluon_moves']
                 else f"no: bn_gluon moves them in {c['bn_gluon_moves']}")
        rows.append([conv.system, conv.momentum, conv.variance, conv.moves, conv.setting, conv.checked_against,
                     f"{c['max_difference']:.1e}" + (' ✓' if c['same_values'] else ' ✗'), moves])
    return table(['system', 'momentum convention', 'stored variance', 'stats move in', 'bn_gluon setting',
                  'checked against', 'max stats difference', 'same update point'], rows)


def runs_table(final):
    return table(['norm', 'train loss', 'train acc', 'test loss', 'test acc', 'best test acc (epoch)',
                  'examples/s'],
                 [[n, f"{m['train_loss']:.4f}", f"{m['train_acc']:.4f}", f"{m['test_loss']:.4f}",
                   f"{m['test_acc']:.4f}", f"{m['best_test_acc']:.4f} ({m['best_epoch']})",
                   f"{m['examples_per_sec']:,.0f}"] for n, m in final.items()])


def speed_table(rows):
    out = []
    for r in rows:
        if 'examples_per_sec' in r:
            eps = r['examples_per_sec']
            timing = f"{eps['gluon']:,.0f} / {eps['scratch']:,.0f} / {eps['none']:,.0f} examples/s"
        else:
            timing = f"{r['ms']['gluon']:.2f} / {r['ms']['scratch']:.2f} ms"
        out.append([r['case'], r['mode'], timing, f"{r['speed']['scratch']:.2f}x"])
    return table(['case', 'mode', 'gluon / scratch (/ no BN)', 'scratch speed relative to gluon'], out)


def resnet_table(results):
    rows = []
    for r in results:
        s = twin_summary(r['training'])
        rows.append([r['name'], f"{r['inference']:.1e}", f"{r['training']['output'][0]:.1e}",
                     len(r['training']['output']), f"{s['parameters']:.1e}", f"{s['running_stats']:.1e}",
                     f"{r['inference_after']:.1e}"])
    return table(['model', 'inference output', 'training output (step 1)', 'SGD steps', 'parameters',
                  'running stats', 'inference output after'], rows)


def float64_table(results, rounding=1e-5):
    """One row per network of :func:`bn_gluon.compare.twins.distances_to_float64`: the last step's
    distances (median and worst over seeds) and on how many seeds each left float32 rounding at step 1."""
    rows = []
    for name, r in results.items():
        last = {k: [d[-1] for d in r[k]] for k in ('scratch', 'gluon')}
        left = {k: sum(d[0] > rounding for d in r[k]) for k in ('scratch', 'gluon')}
        rows.append([name, len(r['scratch']), len(r['scratch'][0])]
                    + [f'{np.median(last[k]):.1e} / {max(last[k]):.1e}' for k in ('scratch', 'gluon')]
                    + [f"{left['scratch']} / {left['gluon']}"])
    return table(['model', 'seeds', 'SGD steps', 'scratch: median / worst', 'gluon float32: median / worst',
                  f'seeds beyond {rounding:.0e} at step 1 (scratch / gluon)'], rows)


def report(results):
    """The whole report: one section per part of the comparison that ran."""
    c = results['config']
    parts = ['# bn_gluon.BatchNorm versus gluon.nn.BatchNorm', '',
             f"{results['date']} on {results['machine']}. Batch {c['batch_size']}, lr {c['lr']}, momentum "
             f"{c['momentum']}, seed {c['seed']}" + (f", first {results['train_limit']} training images"
                                                    if results['train_limit'] else '') +
             f"; {results['seconds']:.0f} s in all. Differences are max |scratch - gluon|."]
    if 'semantics' in results:
        parts += ['', '## Running statistics: who does what', '', semantics_table(results['semantics'])]
    if 'twins' in results:
        h = results['twins']
        s, y = twin_summary(h), twin_summary(h['yardstick'])
        parts += ['', '## Twin training', '',
                  f"Two LeNets from the same initial parameters, fed the same {h['steps']} batches, stepped by "
                  f"the same hand-written SGD (constant lr). After step 1 the outputs differ by "
                  f"{h['output'][0]:.1e}. The yardstick is gluon's float32 LeNet against its float64 copy, "
                  f"trained the same way: what float32 rounding alone does.", '',
                  table(['largest difference over all steps', 'output', 'loss', 'parameters', 'running stats'],
                        [['scratch vs gluon'] + [f'{s[q]:.1e}' for q in s],
                         ['gluon float32 vs float64'] + [f'{y[q]:.1e}' for q in y]]),
                  '', '![twin training](compare-twins.png)']
    if 'runs' in results:
        parts += ['', f"## Full runs ({c['epochs']} epochs, {c['lr_schedule']} lr)", '',
                  runs_table(results['runs']['final']), '', '![curves](compare-curves.png)']
        parts += ['', '## Interchange', '', table(
            ['trained net -> twin', 'max logit difference', 'same predictions', 'test images'],
            [[k, f"{v['max_logit_difference']:.1e}", f"{v['same_prediction']:.2%}", v['n']]
             for k, v in results['interchange'].items()])]
    if 'speed' in results:
        parts += ['', '## Speed', '', speed_table(results['speed']), '', '![speed](compare-speed.png)']
    if 'resnet' in results:
        parts += ['', '## gluoncv ResNets with norm_layer=bn_gluon.BatchNorm', '',
                  'Twins with the same parameters, compared in inference mode, in training mode, and over SGD '
                  'steps side by side on generated CIFAR-shaped batches (largest difference over the steps). '
                  "The yardstick rows train gluon's float32 network beside its float64 copy. Without an input "
                  "gradient, backward never reaches the v2 network's first batch norm (on the input), so "
                  "MXNet's CPU operator, which updates in backward, leaves its running statistics alone.",
                  '', resnet_table(results['resnet'])]
    if 'resnet_float64' in results:
        parts += ['', "Each float32 network against gluon's float64 copy, all three trained side by side from "
                  'the same parameters (largest learned-parameter difference after the last step). A float32 '
                  'network either stays within rounding of the float64 one or, when an input lands within '
                  'rounding of a ReLU or max-pooling kink, takes the other side there and drifts from step 1 '
                  'on; which network meets such a kink varies with the seed.', '',
                  float64_table(results['resnet_float64']), '', '![float64](compare-float64.png)']
    return '\n'.join(parts) + '\n'


def summary(results):
    """A few lines for the terminal."""
    lines = []
    if 'semantics' in results:
        ok = sum(c['same_values'] for c in results['semantics'])
        lines.append(f"semantics   {ok}/{len(results['semantics'])} conventions reproduced by a bn_gluon setting")
    if 'twins' in results:
        s = twin_summary(results['twins'])
        lines.append(f"twins       max drift over {results['twins']['steps']} steps: output {s['output']:.1e}, "
                     f"parameters {s['parameters']:.1e}, running stats {s['running_stats']:.1e}")
    for norm, m in results.get('runs', {}).get('final', {}).items():
        lines.append(f"run {norm:8s}test acc {m['test_acc']:.4f}, train acc {m['train_acc']:.4f}")
    for k, v in results.get('interchange', {}).items():
        lines.append(f"interchange {k}: max logit difference {v['max_logit_difference']:.1e}, "
                     f"same predictions {v['same_prediction']:.2%}")
    for r in results.get('speed', []):
        lines.append(f"speed       {r['case']}, {r['mode']}: scratch at {r['speed']['scratch']:.2f}x gluon")
    for r in results.get('resnet', []):
        s = twin_summary(r['training'])
        lines.append(f"resnet      {r['name']}: inference {r['inference']:.1e}, after steps parameters "
                     f"{s['parameters']:.1e}, running stats {s['running_stats']:.1e}")
    return '\n'.join(lines)
