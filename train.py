"""Train the LeNet-style CNN with batch norm on Fashion-MNIST and write the run's files.

The flags are the fields of bn_gluon.config.TrainConfig; this file only parses them and calls the library.
"""
import argparse
import sys

from bn_gluon.checkpoint import CheckpointError
from bn_gluon.cli import add_config_flags
from bn_gluon.data import DataError, DataNotFoundError
from bn_gluon.engine import NonFiniteLossError, TrainingInterrupted
from bn_gluon.experiment import evaluate_checkpoint, resolve_config, train
from bn_gluon.memory import keep_freed_memory


def build_parser():
    """One flag per TrainConfig field; a bool field gets --name and --no-name."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_config_flags(parser)


def main(argv=None):
    keep_freed_memory()  # MXNet's fresh arrays would page-fault on every step (see bn_gluon.memory)
    parser = build_parser()
    explicit = vars(parser.parse_args(argv))          # only the flags given: resuming needs to know which
    try:
        config = resolve_config(explicit)
    except CheckpointError as e:                      # a damaged file, not a wrong flag: said as below
        print(f'error: {e}', file=sys.stderr)
        return 1
    except ValueError as e:
        parser.error(str(e))                          # exit status 2, nothing written
    try:
        if config.eval:
            evaluate_checkpoint(config)
        else:
            train(config)
    except TrainingInterrupted as e:                  # Ctrl-C once: stopped between steps, checkpoint saved
        print(f'\n{e}', file=sys.stderr)
        return 130
    except KeyboardInterrupt:                         # Ctrl-C twice: stopped at once
        print('\naborted; the last checkpoint saved at an epoch end (if any) is in checkpoint/ of the run '
              'folder.', file=sys.stderr)
        return 130
    except (NonFiniteLossError, DataNotFoundError, DataError, CheckpointError) as e:   # said in words
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
