"""Re-execute the course notebooks in place, top to bottom, each in a fresh kernel.

    python notebooks/execute.py                 # all of them
    python notebooks/execute.py 02 03           # the ones whose names start with these prefixes
"""
import argparse
import sys
import time
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent


def notebooks(prefixes=()):
    """The course notebooks in lesson order, optionally only those whose names start with a prefix."""
    found = sorted(HERE.glob('[0-9][0-9]_*.ipynb'))
    return [p for p in found if not prefixes or p.name.startswith(tuple(prefixes))]


def execute(path, timeout=1800, save=True):
    """Run one notebook in a fresh ``python3`` kernel whose working directory is notebooks/."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name='python3',
                                     resources={'metadata': {'path': str(HERE)}})
    client.execute()
    if save:
        nbformat.write(nb, path)
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('prefixes', nargs='*', help='run only notebooks whose names start with these')
    args = parser.parse_args(argv)
    paths = notebooks(args.prefixes)
    if not paths:
        parser.error(f'no notebook in {HERE} starts with {args.prefixes}')
    for path in paths:
        start = time.perf_counter()
        execute(path)
        print(f'{path.name}: executed in {time.perf_counter() - start:.0f} s', flush=True)


if __name__ == '__main__':
    sys.exit(main())
