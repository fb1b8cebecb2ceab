"""What this environment runs, and each known problem found with its fix: ``python -m bn_gluon.doctor``.

Prints one fact a line (``--json``: the same as JSON), the lines a bug report needs: Python, numpy,
mxnet and its build, gluoncv, PyTorch, the GPUs and whether MXNet's wheel can run on them, the CUDA
libraries a CUDA build needs, and the Fashion-MNIST copy ``train.py`` would use. Exit status 0 when
nothing is wrong, 1 when a problem was found. If even ``import bn_gluon`` fails, run this file directly
(``python bn_gluon/doctor.py`` in the project folder): it then reports what it can without bn_gluon.
"""
import os
import sys

if __name__ == '__main__' and not __package__:   # run as a file: import bn_gluon from the project folder,
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # not this folder's modules

import argparse
import ctypes
import json
import platform
import re
import shutil
import subprocess

try:
    from importlib import metadata
except ImportError:   # pragma: no cover  (Python < 3.8)
    metadata = None

PYTHONS = ((3, 8), (3, 12))   # the oldest and newest Python mxnet 1.9.1 and bn_gluon install on
# Compute capabilities whose machine code each mxnet 1.9.1 CUDA wheel carries; none carries PTX.
CU11_CAPABILITIES = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
WHEEL_CAPABILITIES = {f'cu11{k}': CU11_CAPABILITIES for k in range(1, 8)}
CUDA11_LIBRARIES = ('libcudart.so.11.0', 'libcudnn.so.8')   # not bundled in the cu11x wheels
CPU_FIX = 'use the CPU build instead (pip uninstall {dist} && pip install mxnet==1.9.1) and train on the CPU'


def gpu_can_run(capability, built=CU11_CAPABILITIES):
    """Whether a GPU of compute ``capability`` runs code built for ``built`` capabilities, without PTX.

    Machine code for compute capability X.Y runs on a GPU of the same major version X and a minor at or
    above Y: an L4 (8.9) runs code built for 8.6, an H100 (9.0) none of the cu11x wheels' code.

    Parameters
    ----------
    capability : tuple of int
        The GPU's (major, minor).
    built : sequence of tuple of int
        The (major, minor) the wheel's kernels were compiled for.
    """
    major, minor = capability
    return any(b_major == major and b_minor <= minor for b_major, b_minor in built)


class Report:
    """Facts (name, text), one a line, and problems (what was found, what to do)."""

    def __init__(self):
        self.facts, self.problems = [], []

    def fact(self, name, text):
        self.facts.append((name, str(text)))

    def problem(self, found, fix):
        self.problems.append({'found': found, 'fix': fix})

    def lines(self):
        out = [f'{name}: {text}' for name, text in self.facts]
        for p in self.problems:
            out += [f'PROBLEM: {p["found"]}', f'  fix: {p["fix"]}']
        out.append(f'{len(self.problems)} problem(s) found' if self.problems else 'no problems found')
        return out

    def as_dict(self):
        return {'facts': dict(self.facts), 'problems': self.problems}


# Each probe of the machine is one small function, so that tests can stand in for a GPU.
def installed_version(distribution):
    """The installed version of ``distribution`` (read from its metadata, never imported), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def mxnet_distributions():
    """{name: version} of the installed mxnet packages: 'mxnet', 'mxnet-cu112', ..."""
    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata['Name'] or '').lower()
        if name == 'mxnet' or name.startswith('mxnet-'):
            found[name] = dist.version
    return found


def import_mxnet():
    import mxnet
    return mxnet


def import_gluoncv():
    import gluoncv
    return gluoncv


def mxnet_features(mx):
    """{feature: enabled} of the mxnet build, e.g. {'CUDA': False, 'MKLDNN': True, ...}."""
    from mxnet import runtime
    return {name: feature.enabled for name, feature in runtime.Features().items()}


def mxnet_gpu_count(mx):
    """How many GPUs MXNet sees (0 in a CPU build)."""
    return mx.context.num_gpus()


def nvidia_smi_gpus():
    """[(name, (major, minor) or None)] from nvidia-smi; None when nvidia-smi is absent or fails."""
    if shutil.which('nvidia-smi') is None:
        return None
    for fields in ('name,compute_cap', 'name'):   # drivers before 510 do not know compute_cap
        try:
            out = subprocess.run(['nvidia-smi', f'--query-gpu={fields}', '--format=csv,noheader'],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0:
            break
    else:
        return None
    gpus = []
    for line in out.stdout.strip().splitlines():
        name, cap = line.rsplit(',', 1) if fields == 'name,compute_cap' else (line, '')
        match = re.fullmatch(r'(\d+)\.(\d+)', cap.strip())
        gpus.append((name.strip(), (int(match[1]), int(match[2])) if match else None))
    return gpus


def load_library(soname):
    """None if the shared library ``soname`` loads, else why not."""
    try:
        ctypes.CDLL(soname)
        return None
    except OSError as e:
        return str(e)


def find_data():
    """((label, folder) of the Fashion-MNIST copy that verifies first, or None, [(label, folder, error)])."""
    from bn_gluon.data import DataError, read_folder, search_places
    skipped = []
    for label, folder in search_places():
        try:
            read_folder(folder)
            return (label, folder), skipped
        except (DataError, OSError) as e:
            if folder.is_dir() and any(folder.iterdir()):
                skipped.append((label, folder, str(e)))
    return None, skipped


# The checks, in the order of the report.
def check_python(report):
    version = platform.python_version()
    report.fact('python', f'{version} ({platform.python_implementation()}, {sys.executable})')
    report.fact('platform', platform.platform())
    if not PYTHONS[0] <= sys.version_info[:2] <= PYTHONS[1]:
        report.problem(f'Python {version}: mxnet 1.9.1 runs on Python 3.8-3.12 (3.13 needs numpy 2, '
                       'which mxnet 1.9.1 forbids)',
                       'use Python 3.12, e.g. `uv venv --seed --python 3.12` or `pyenv install 3.12`')


def check_bn_gluon(report):
    """Import bn_gluon (and so bn_gluon.compat); return it, or None after reporting why not."""
    try:
        import bn_gluon
    except Exception as e:   # noqa: BLE001  (anything here is the finding)
        report.fact('bn_gluon', f'does not import: {type(e).__name__}: {e}')
        return None
    report.fact('bn_gluon', f'{bn_gluon.__version__} ({os.path.dirname(bn_gluon.__file__)})')
    return bn_gluon


def check_numpy(report):
    version = installed_version('numpy')
    report.fact('numpy', version or 'not installed')
    if version and int(version.split('.')[0]) >= 2:
        report.problem(f'numpy {version} is installed; mxnet 1.9.1 needs numpy<2',
                       "pip install 'numpy<2' (on Colab, then restart the runtime: Runtime > Restart session)")


def check_mxnet(report):
    """Report the mxnet package and build; return (mxnet module or None, distribution name, CUDA build?)."""
    dists = mxnet_distributions()
    report.fact('mxnet', ', '.join(f'{n} {v}' for n, v in sorted(dists.items())) or 'not installed')
    if not dists:
        report.problem('mxnet is not installed', 'pip install -e . in the project folder (installs mxnet==1.9.1)')
        return None, None, False
    if len(dists) > 1:
        report.problem(f'{len(dists)} mxnet packages are installed ({", ".join(sorted(dists))}); they overwrite '
                       'each other\'s files', 'pip uninstall all of them, then install one, e.g. mxnet==1.9.1')
    dist = sorted(dists)[0]
    try:
        mx = import_mxnet()
    except Exception as e:   # noqa: BLE001
        message = f'{type(e).__name__}: {e}'
        if 'distutils' in message:
            fix = 'pip install setuptools (Python 3.12 no longer ships distutils, which mxnet imports)'
        elif '.so' in message:
            fix = ('install the CUDA 11 runtime and cuDNN 8 (e.g. the nvidia-*-cu11 wheels) and put their lib '
                   f'folders on LD_LIBRARY_PATH, or {CPU_FIX.format(dist=dist)}')
        else:
            fix = 'import bn_gluon before mxnet; if that fails too, reinstall: pip install -e . in the project folder'
        report.problem(f'import mxnet fails: {message}', fix)
        return None, dist, dist.startswith('mxnet-cu')
    features = mxnet_features(mx)
    on = [name for name in ('CUDA', 'CUDNN', 'NCCL', 'MKLDNN') if features.get(name)]
    kind = 'CUDA build' if features.get('CUDA') else 'CPU build'
    report.fact('mxnet build', f'{kind}; enabled: {", ".join(on) or "none of CUDA, CUDNN, NCCL, MKLDNN"}')
    return mx, dist, bool(features.get('CUDA'))


def check_cuda_libraries(report, dist, cuda_build):
    if not cuda_build:
        report.fact('CUDA libraries', 'not needed (CPU build)')
        return
    if not re.fullmatch(r'mxnet-cu11\d.*', dist or ''):
        report.fact('CUDA libraries', f'not checked for {dist}')
        return
    errors = {soname: load_library(soname) for soname in CUDA11_LIBRARIES}
    report.fact('CUDA libraries', ', '.join(f'{s} {"missing" if e else "loads"}' for s, e in errors.items()))
    missing = [s for s, e in errors.items() if e]
    if missing:
        report.problem(f'{dist} needs {", ".join(missing)}, which do not load ({errors[missing[0]]})',
                       'install the CUDA 11 runtime and cuDNN 8 (e.g. pip install nvidia-cuda-runtime-cu11 '
                       "'nvidia-cudnn-cu11<9' and the other nvidia-*-cu11 libraries) and put their lib folders "
                       f'on LD_LIBRARY_PATH, or {CPU_FIX.format(dist=dist)}')


def check_gpus(report, mx, dist, cuda_build):
    gpus = nvidia_smi_gpus()
    if gpus is None:
        report.fact('GPUs (nvidia-smi)', 'no nvidia-smi')
    else:
        report.fact('GPUs (nvidia-smi)', '; '.join(
            f'{i}: {name}, compute capability {"%d.%d" % cap if cap else "unknown"}'
            for i, (name, cap) in enumerate(gpus)) or 'none')
    seen = mxnet_gpu_count(mx) if mx is not None else None
    report.fact('GPUs MXNet sees', 'unknown (mxnet does not import)' if seen is None else seen)
    if not cuda_build:
        if gpus:
            report.fact('GPU use', 'none: mxnet is a CPU build (a CUDA build such as mxnet-cu112 would use them)')
        return
    built = WHEEL_CAPABILITIES.get(re.sub(r'^mxnet-', '', dist or '')[:5])
    for i, (name, cap) in enumerate(gpus or []):
        if cap is not None and built is not None and not gpu_can_run(cap, built):
            report.problem(
                f'GPU {i} ({name}) has compute capability {cap[0]}.{cap[1]}; {dist} carries code for '
                f'{", ".join("%d.%d" % c for c in built)} and no PTX, so its kernels cannot run there '
                '("no kernel image is available")',
                f'no mxnet 1.9.1 wheel runs on this GPU: {CPU_FIX.format(dist=dist)}, or use a GPU of compute '
                'capability 5.0-8.9 (e.g. T4, V100, A100, L4)')
    if seen == 0:
        report.problem(f'{dist} is a CUDA build but MXNet sees no GPU',
                       'check that nvidia-smi lists a GPU and the driver supports CUDA 11, or ' + CPU_FIX.format(dist=dist))


def check_gluoncv(report):
    version, torch = installed_version('gluoncv'), installed_version('torch')
    report.fact('PyTorch', torch or 'not installed')
    if version is None:
        report.fact('gluoncv', 'not installed')
        report.problem('gluoncv is not installed (bn_gluon.compare and notebook 05 use it)',
                       'pip install -e . in the project folder (installs gluoncv==0.10.5.post0)')
        return
    try:
        import_gluoncv()
    except Exception as e:   # noqa: BLE001
        report.fact('gluoncv', f'{version}, does not import')
        if 'torch' in str(e).lower():
            fix = ('import bn_gluon before gluoncv (bn_gluon.compat lets gluoncv load beside PyTorch 2), '
                   'or pip uninstall torch')
        else:
            fix = 'import bn_gluon before gluoncv; if that fails too, pip install -e . in the project folder'
        report.problem(f'import gluoncv fails: {type(e).__name__}: {e}', fix)
        return
    note = ' (without its PyTorch parts: gluoncv 0.10 supports torch<2)' if torch and torch[0] != '1' else ''
    report.fact('gluoncv', f'{version}, imports{note}')


def check_data(report, bn_gluon):
    if bn_gluon is None:
        report.fact('Fashion-MNIST', 'not checked (bn_gluon does not import)')
        return
    used, skipped = find_data()
    for label, folder, error in skipped:
        report.fact('Fashion-MNIST skipped', f'{folder} ({label})')
        report.problem(f'{folder} holds Fashion-MNIST files that do not verify: {error}',
                       f'replace or delete the files in {folder}')
    if used is None:
        report.fact('Fashion-MNIST', 'no verified copy found')
        report.problem('no verified copy of Fashion-MNIST was found (train.py would download it, if online)',
                       'sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), or run python train.py '
                       'once while online (it downloads into data/fashion-mnist/), or point $BN_GLUON_DATA at '
                       'a folder with the four .gz files')
    else:
        report.fact('Fashion-MNIST', f'{used[1]} ({used[0]}), SHA-1 verified')


def collect():
    """Run every check; return the Report."""
    report = Report()
    check_python(report)
    bn_gluon = check_bn_gluon(report)
    check_numpy(report)
    mx, dist, cuda_build = check_mxnet(report)
    check_cuda_libraries(report, dist, cuda_build)
    check_gpus(report, mx, dist, cuda_build)
    check_gluoncv(report)
    check_data(report, bn_gluon)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bn_gluon.doctor', description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print the facts and problems as JSON')
    args = parser.parse_args(argv)
    report = collect()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print('\n'.join(report.lines()))
    return 1 if report.problems else 0


if __name__ == '__main__':
    sys.exit(main())
