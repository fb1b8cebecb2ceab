"""Lets mxnet 1.9.1 and gluoncv 0.10.5 run on Python 3.8-3.12 with numpy up to 1.26, beside PyTorch 2.

``bn_gluon/__init__.py`` imports this module first, so ``import bn_gluon`` before ``import mxnet`` (or
``import gluoncv``) puts it in force. It imports neither mxnet, gluoncv nor torch; it does three things:

1. numpy 1.24 removed the aliases ``np.bool``, ``np.int``, ``np.float``, ``np.complex``, ``np.object``
   and ``np.str`` of the builtins, and mxnet 1.9.1 reads ``np.bool`` when it is imported. Each alias
   numpy lacks is set to the builtin it named; numpy's own attributes are never replaced.
2. ``import gluoncv`` raises RuntimeError ("Legacy torch==2.x ...") when PyTorch 2 is installed, as on
   Colab: gluoncv's ``check._require_pytorch_version`` accepts only torch < 2 and its ``__init__``
   treats only ImportError as "no PyTorch". gluoncv's ``check.py`` is loaded here under its own name,
   ``gluoncv.check``, with that one function raising ImportError for a torch gluoncv cannot use, so
   ``import gluoncv`` then loads its MXNet parts as it does where PyTorch is absent.
3. mxnet 1.9.1 imports ``distutils``, which Python 3.12 no longer ships: without setuptools (which
   provides it) the import stops here with an error that says so.
"""
import importlib.util
import os
import sys
import warnings

try:
    from importlib import metadata
except ImportError:   # pragma: no cover  (Python < 3.8)
    metadata = None

# The aliases numpy 1.20 deprecated and 1.24 removed, and the builtins they stood for.
NUMPY_ALIASES = {'bool': bool, 'int': int, 'float': float, 'complex': complex, 'object': object, 'str': str}


def restore_numpy_aliases(numpy=None):
    """Set each of ``NUMPY_ALIASES`` that ``numpy`` lacks to its builtin; return the names set.

    Parameters
    ----------
    numpy : module, optional
        The numpy module (or a stand-in, for tests); by default ``import numpy``.
    """
    if numpy is None:
        import numpy
    restored = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # numpy 1.20-1.23 warn when a deprecated alias is read
        for name, builtin in NUMPY_ALIASES.items():
            if not hasattr(numpy, name):
                setattr(numpy, name, builtin)
                restored.append(name)
    return restored


def installed_version(distribution):
    """The version string of an installed distribution (e.g. ``'torch'``) without importing it, or None."""
    if metadata is None:
        return None
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def major_version(version):
    """The leading integer of a version string: ``'2.1.0+cu121'`` -> 2; None if there is none."""
    digits = ''
    for char in version or '':
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _require_pytorch_version_or_import_error(original):
    """gluoncv's PyTorch check, raising ImportError instead of RuntimeError for a torch it cannot use."""

    def _require_pytorch_version(torch_version, max_torch_version='2.0.0'):
        installed = installed_version('torch')
        if (major_version(installed) or 0) >= major_version(max_torch_version):
            # Decided from the installed metadata, so PyTorch 2 is not imported just to be refused.
            raise ImportError(f'torch {installed} is installed; gluoncv 0.10 supports torch>={torch_version},'
                              f'<{max_torch_version}, so it loads without its PyTorch parts')
        try:
            original(torch_version, max_torch_version)
        except RuntimeError as e:   # a torch without metadata, e.g. put on sys.path by hand
            raise ImportError(f'{e} (gluoncv loads without its PyTorch parts)') from e

    _require_pytorch_version.__wrapped__ = original
    return _require_pytorch_version


def let_gluoncv_load_beside_torch2():
    """Pre-register gluoncv's check module with the PyTorch check patched; True if it is in place.

    Does nothing (and returns whether the patch is already there) once ``gluoncv.check`` is loaded,
    and returns False when gluoncv is not installed or has no ``check.py``.
    """
    loaded = sys.modules.get('gluoncv.check')
    if loaded is not None:
        return hasattr(getattr(loaded, '_require_pytorch_version', None), '__wrapped__')
    if 'gluoncv' in sys.modules:
        return False
    spec = importlib.util.find_spec('gluoncv')   # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return False
    path = os.path.join(list(spec.submodule_search_locations)[0], 'check.py')
    if not os.path.isfile(path):
        return False
    check_spec = importlib.util.spec_from_file_location('gluoncv.check', path)
    check = importlib.util.module_from_spec(check_spec)
    check_spec.loader.exec_module(check)        # check.py imports only sys (and distutils when called)
    if not hasattr(check, '_require_pytorch_version'):
        return False
    check._require_pytorch_version = _require_pytorch_version_or_import_error(check._require_pytorch_version)
    sys.modules['gluoncv.check'] = check        # gluoncv's `from .check import ...` now finds this one
    return True


def require_distutils():
    """Raise ImportError, saying what to install, if ``distutils`` (which mxnet imports) is missing."""
    if importlib.util.find_spec('distutils') is None:
        raise ImportError(
            f'mxnet 1.9.1 imports distutils, which Python {sys.version_info[0]}.{sys.version_info[1]} does not '
            'ship; setuptools provides it. Install it: pip install setuptools')


restore_numpy_aliases()
let_gluoncv_load_beside_torch2()
require_distutils()
