"""What every benchmark script shares: the data and output flags, the machine description, the JSON."""
import json
import os
import platform
import sys

import bn_gluon  # first: it makes mxnet importable on numpy 1.24 and later
import mxnet as mx

from bn_gluon.memory import keep_freed_memory

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
KEPT_FREED_MEMORY = keep_freed_memory()  # every benchmark runs with the allocator settings of train.py


def add_data_and_out(parser, result_file):
    """Add ``--data-dir`` (Fashion-MNIST folder) and ``--out`` (default ``results/<result_file>``)."""
    parser.add_argument('--data-dir', default=None, help='Fashion-MNIST folder (default: the standard places)')
    parser.add_argument('--out', default=os.path.join(RESULTS, result_file), help='JSON file for the results')


def machine():
    """Where the numbers were measured: platform, versions, cores, threading settings and the load.

    The load average (1, 5 and 15 minutes, at the call) says how busy shared cores were.
    """
    return {'platform': platform.platform(), 'python': sys.version.split()[0], 'mxnet': mx.__version__,
            'cpus': os.cpu_count(), 'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
            'mkldnn': os.environ.get('MXNET_MKLDNN_ENABLED', '1') != '0', 'load_average': os.getloadavg(),
            'freed_memory_kept': KEPT_FREED_MEMORY}


def write_json(result, path):
    """Write ``result`` to ``path`` (folders created) and say where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {path}')
