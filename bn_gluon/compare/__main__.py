"""Compare bn_gluon.BatchNorm with gluon.nn.BatchNorm and write a report with figures.

Usage: ``python -m bn_gluon.compare [--out DIR] [--epochs 3] [--sections twins runs ...]``. The shared
hyperparameters (batch size, lr, momentum, seed, data, device) are TrainConfig's fields and defaults;
only the number of epochs is lowered, so that the whole report takes a few minutes on two CPU cores.
"""
import argparse
import sys
import time
import warnings

from ..cli import add_config_flags
from ..config import TrainConfig
from .markdown import summary
from .report import RENAMED_SECTIONS, SECTIONS, run_comparison

EPOCHS = 3   # TrainConfig's 8 epochs, three runs over, would take most of the time of the report
SHARED = ('epochs', 'batch_size', 'lr', 'lr_schedule', 'momentum', 'weight_decay', 'seed', 'data_dir', 'ctx',
          'download', 'verify', 'hybridize', 'dense_norm')
OPTIONS = ('out', 'sections', 'twin_steps', 'speed_rounds', 'resnet_steps', 'train_limit')


def build_parser():
    """The comparison's own flags, then one flag per shared TrainConfig field (bools get --no-NAME too)."""
    parser = argparse.ArgumentParser(prog='python -m bn_gluon.compare', description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=None, help='output folder (default: runs/compare-<date-time>)')
    parser.add_argument('--sections', nargs='+', choices=SECTIONS + tuple(RENAMED_SECTIONS), default=list(SECTIONS),
                        help=f'parts to run (default: all of {", ".join(SECTIONS)})')
    parser.add_argument('--twin-steps', type=int, default=200, help='steps of twin training (default: 200)')
    parser.add_argument('--lockstep-steps', type=int, default=None, help=argparse.SUPPRESS)   # old --twin-steps
    parser.add_argument('--speed-rounds', type=int, default=5, help='interleaved timing rounds (default: 5)')
    parser.add_argument('--resnet-steps', type=int, default=3, help='SGD steps of each ResNet pair (default: 3)')
    parser.add_argument('--train-limit', type=int, default=None,
                        help='train on the first N training images only (default: all 60000)')
    return add_config_flags(parser, SHARED, defaults={'epochs': EPOCHS})


def main(argv=None):
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    options = {k: args.pop(k) for k in OPTIONS}
    old_steps = args.pop('lockstep_steps')
    if old_steps is not None:
        warnings.warn('--lockstep-steps is now --twin-steps; the old flag goes in the next release.', FutureWarning)
        options['twin_steps'] = old_steps
    out = options.pop('out') or time.strftime('runs/compare-%Y%m%d-%H%M%S')
    try:
        config = TrainConfig(**dict({'epochs': EPOCHS}, **args), quiet=True).validate()
        results = run_comparison(config, out, **options)
    except (ValueError, TypeError) as e:
        parser.exit(2, f'{parser.prog}: error: {e}\n')
    print(summary(results))
    print(f'report: {out}/report.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
