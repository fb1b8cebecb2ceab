"""Where the time of a LeNet training step goes, per MXNet operator, for several variants.

Runs ``mx.profiler`` (aggregate statistics) over a few training steps of each variant of
``bench_bn.LENET_VARIANTS`` and prints, per variant, the operators by total time, marking with ``*`` those
that are batch norm: the fused ``BatchNorm`` operators, the autograd node of the imperative fast path
(``CustomFunction``) and every operator run inside the hybridized scratch layer (MXNet files those under
"Custom Operator"). The reference path runs generic operators (``mean``, ``broadcast_*``) that the rest
of the step uses too, so compare its total with the "no norm" variant's instead.

Operator bulking is switched off first so that each operator shows up by name; the profiler slows
everything down, so use these figures for where the time goes, and ``bench_bn.py`` for how fast.

Usage: ``python benchmarks/profile_bn.py [--batch-size 128] [--steps 3] [--top 12] [--out FILE] [variant ...]``
"""
import argparse
import os
import sys

os.environ.setdefault('MXNET_EXEC_BULK_EXEC_TRAIN', '0')       # before mxnet is imported
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_INFERENCE', '0')

import bn_gluon  # first: it makes mxnet importable on numpy 1.24 and later
from mxnet import nd, profiler  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_bn import LENET_VARIANTS, lenet_step  # noqa: E402
from common import RESULTS, machine, write_json  # noqa: E402

SECTIONS = ('operator', 'Custom Operator')


def is_batch_norm(section, name):
    return section == 'Custom Operator' or 'BatchNorm' in name or 'CustomFunction' in name


def parse(table):
    """[(section, operator, calls, total ms)] from the profiler's aggregate table."""
    rows, section = [], None
    lines = table.splitlines()
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and lines[i + 1].startswith('====='):
            section = line.strip()
        elif section in SECTIONS and line.strip() and not line.startswith(('=', '-', 'Name')):
            words = line.split()
            if len(words) >= 6:
                name = ' '.join(words[:-5])
                if '::' in name:  # custom rows read 'op_type::operator', op_type '_backward_...' in backward
                    op_type, name = name.split('::')[-2:]
                    name += ' (backward)' if op_type.startswith('_backward') else ' (forward)'
                rows.append((section, name, int(words[-5]), float(words[-4])))
    return rows


def profile(name, batch_size, steps, warmup=3):
    """Per-operator rows over ``steps`` training steps of variant ``name``, slowest first."""
    step = lenet_step(*LENET_VARIANTS[name], batch_size)
    for _ in range(warmup):
        step()
    nd.waitall()
    profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.devnull)
    profiler.set_state('run')
    for _ in range(steps):
        step()
    nd.waitall()
    profiler.set_state('stop')
    rows = parse(profiler.dumps(reset=True, format='table', sort_by='total', ascending=False))
    return sorted(rows, key=lambda r: -r[3])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('variants', nargs='*', default=['gluon hybridized', 'scratch fast hybridized',
                                                        'scratch reference imperative', 'no norm hybridized'],
                        help=f'any of: {", ".join(LENET_VARIANTS)}')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--top', type=int, default=12)
    parser.add_argument('--out', default=os.path.join(RESULTS, 'profile_bn.json'), help='JSON file for the results')
    args = parser.parse_args(argv)
    result = {'machine': machine(), 'batch_size': args.batch_size, 'steps': args.steps, 'variants': {}}
    for name in args.variants:
        rows = profile(name, args.batch_size, args.steps)
        total = sum(r[3] for r in rows) / args.steps
        bn = sum(r[3] for r in rows if is_batch_norm(r[0], r[1])) / args.steps
        result['variants'][name] = {'ms_per_step': total, 'batch_norm_ms_per_step': bn,
                                    'operators': [[s, op, c / args.steps, t / args.steps] for s, op, c, t in rows]}
        print(f'\n{name}, batch {args.batch_size}: {total:.1f} ms of operators per step, '
              f'{bn:.1f} ms ({100 * bn / total:.0f}%) in batch norm (*)')
        print(f"  {'operator':42s} {'calls':>6s} {'ms/step':>8s} {'share':>6s}")
        for section, op, count, t in rows[:args.top]:
            mark = '*' if is_batch_norm(section, op) else ' '
            print(f'{mark} {op[:42]:42s} {count / args.steps:6.0f} {t / args.steps:8.2f} '
                  f'{100 * t / args.steps / total:5.1f}%')
    write_json(result, args.out)


if __name__ == '__main__':
    main()
