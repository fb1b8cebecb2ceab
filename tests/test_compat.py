"""bn_gluon.compat: numpy's removed aliases restored, gluoncv loading beside PyTorch 2, in force first."""
import importlib.util
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from bn_gluon import compat, launch

ROOT = Path(__file__).resolve().parents[1]


def test_only_missing_aliases_are_restored_and_numpys_own_are_kept():
    own_bool = object()                                 # numpy 2 has an np.bool of its own
    numpy = types.SimpleNamespace(bool=own_bool, int=int)
    restored = compat.restore_numpy_aliases(numpy)
    assert restored == ['float', 'complex', 'object', 'str']
    assert numpy.bool is own_bool
    assert (numpy.float, numpy.complex, numpy.object, numpy.str) == (float, complex, object, str)
    assert compat.restore_numpy_aliases(numpy) == []


def test_numpy_has_every_alias_after_import_and_its_own_types_are_untouched():
    for name, builtin in compat.NUMPY_ALIASES.items():
        assert getattr(np, name) is builtin
    assert np.bool_ is not bool and np.float64 is not float


@pytest.mark.parametrize('version, major', [('2.1.0+cu121', 2), ('1.13.1', 1), ('10.0', 10), ('', None),
                                            (None, None), ('dev', None)])
def test_major_version(version, major):
    assert compat.major_version(version) == major


def test_distutils_missing_is_an_error_that_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'distutils' else real(name, *a))
    with pytest.raises(ImportError, match='pip install setuptools'):
        compat.require_distutils()


def test_gluoncvs_check_module_is_the_patched_one():
    assert compat.let_gluoncv_load_beside_torch2()
    import gluoncv   # noqa: F401
    assert hasattr(sys.modules['gluoncv.check']._require_pytorch_version, '__wrapped__')


def _stand_in_torch(folder, with_metadata):
    """A package `torch` that reports 2.3.1 (and records being imported), optionally with pip's metadata."""
    (folder / 'torch').mkdir()
    (folder / 'torch' / '__init__.py').write_text("__version__ = '2.3.1'\nimport os\nos.environ['TORCH_RAN'] = '1'\n")
    if with_metadata:
        info = folder / 'torch-2.3.1.dist-info'
        info.mkdir()
        (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: torch\nVersion: 2.3.1\n')
    return folder


def _run(code, path):
    env_code = f'import sys; sys.path.insert(0, {str(path)!r})\n' + textwrap.dedent(code)
    return subprocess.run([sys.executable, '-c', env_code], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_the_stand_in_torch_breaks_gluoncv_without_the_patched_check(tmp_path):
    code = 'import sys, bn_gluon; del sys.modules["gluoncv.check"]; import gluoncv'   # numpy aliases only
    out = _run(code, _stand_in_torch(tmp_path, with_metadata=False))
    assert out.returncode != 0
    assert 'RuntimeError' in out.stderr and 'Legacy torch==2.3.1' in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize('with_metadata', [False, True], ids=['torch-on-the-path', 'torch-installed'])
def test_gluoncv_models_work_beside_torch2_once_bn_gluon_is_imported(tmp_path, with_metadata):
    out = _run("""
        import os, json
        import bn_gluon
        import gluoncv
        import mxnet as mx
        net = gluoncv.model_zoo.get_model('cifar_resnet20_v1', norm_layer=bn_gluon.BatchNorm)
        net.initialize()
        y = net(mx.nd.ones((2, 3, 32, 32)))
        print(json.dumps({'shape': y.shape, 'pytorch_parts': gluoncv._found_pytorch,
                          'torch_imported': 'TORCH_RAN' in os.environ}))
        """, _stand_in_torch(tmp_path, with_metadata))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['shape'] == [2, 10] and result['pytorch_parts'] is False
    assert result['torch_imported'] is not with_metadata   # an installed torch 2 is refused unimported


def test_launchers_servers_import_bn_gluon_before_mxnet():
    for command in (launch.SERVE, launch.cluster_commands(['h'], ['true'], 1, 1)[0][2]):
        text = command[-1] if isinstance(command, list) else command
        assert 0 <= text.index('bn_gluon') < text.index('import mxnet')


def test_notebook_07_imports_bn_gluon_before_mxnet():
    notebook = json.loads((ROOT / 'notebooks' / '07_bn_across_devices.ipynb').read_text(encoding='utf-8'))
    first = ''.join(next(c for c in notebook['cells'] if c['cell_type'] == 'code')['source']).splitlines()
    modules = [line.split()[1].split('.')[0] for line in first if line.startswith(('import ', 'from '))]
    assert modules.index('bn_gluon') < modules.index('mxnet')
