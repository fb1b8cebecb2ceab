"""Fold the batch norms of a trained run into its convolutions and export it for inference.

Usage: ``python -m bn_gluon.fold CHECKPOINT OUTDIR [--prefix folded]``. CHECKPOINT is what train.py
wrote: the run folder (config.json + model.params), its checkpoint/ folder (state.json +
model.params), or a .params file beside either. OUTDIR receives PREFIX-symbol.json, PREFIX-0000.params
and fold.json; nothing is written when the checkpoint is missing, truncated or not an MXNet parameter
file, does not fit its configuration, or the folded network does not reproduce the original.
"""
import argparse
import sys

from .export import fold_run


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bn_gluon.fold', description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', metavar='CHECKPOINT',
                        help='run folder, checkpoint folder, or .params file (with config.json or state.json beside it)')
    parser.add_argument('outdir', metavar='OUTDIR', help='folder for the exported files (created if missing)')
    parser.add_argument('--prefix', default='folded', help='file name prefix of the exported pair (default: folded)')
    args = parser.parse_args(argv)
    try:
        s = fold_run(args.checkpoint, args.outdir, args.prefix)
    except (ValueError, TypeError) as e:
        parser.exit(2, f'{parser.prog}: error: {e}\n')
    diff = s['max_abs_diff']
    print(f"folded {s['params']} (norm {s['norm']}, style {s['style']}) into {s['symbol_file']} and "
          f"{s['params_file']}\n"
          f"  max |output difference| on {s['check_images']} random images: folded {diff['folded']:.2e}, "
          f"exported {diff['exported']:.2e}\n"
          f"  operators: {', '.join(s['operators'])}\n"
          f"  load with: gluon.SymbolBlock.imports({s['symbol_file']!r}, ['data'], {s['params_file']!r})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
