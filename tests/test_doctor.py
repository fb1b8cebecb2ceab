"""python -m bn_gluon.doctor: its facts, its problems and fixes, its exit status; GPUs through stand-ins."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bn_gluon
from bn_gluon import doctor

ROOT = Path(__file__).resolve().parents[1]
KEYS = ['python', 'platform', 'bn_gluon', 'numpy', 'mxnet', 'mxnet build', 'CUDA libraries', 'GPUs (nvidia-smi)',
        'GPUs MXNet sees', 'PyTorch', 'gluoncv', 'Fashion-MNIST']
H100, L4 = ('NVIDIA H100 80GB HBM3', (9, 0)), ('NVIDIA L4', (8, 9))


@pytest.mark.parametrize('gpu, capability, runs', [
    ('Kepler K80', (3, 7), False), ('Maxwell M40', (5, 2), True), ('Pascal P100', (6, 0), True),
    ('GTX 1080', (6, 1), True), ('V100', (7, 0), True), ('T4', (7, 5), True), ('A100', (8, 0), True),
    ('RTX 3090', (8, 6), True), ('Jetson Orin', (8, 7), True), ('L4 / RTX 4090', (8, 9), True),
    ('H100', (9, 0), False), ('B200', (10, 0), False), ('RTX 5090', (12, 0), False)])
def test_which_gpus_the_cu11_wheels_run_on(gpu, capability, runs):
    assert doctor.gpu_can_run(capability) is runs


def test_the_rule_needs_the_same_major_and_a_built_minor_at_or_below():
    assert doctor.gpu_can_run((7, 5), built=[(7, 5)]) and not doctor.gpu_can_run((7, 2), built=[(7, 5)])
    assert not doctor.gpu_can_run((8, 0), built=[(7, 0)])     # no PTX: nothing carries up to a new major
    assert not doctor.gpu_can_run((8, 6), built=[])


@pytest.fixture
def healthy(monkeypatch):
    """This machine's real probes, with no GPU and a verified data copy wherever the machine has one."""
    monkeypatch.setattr(doctor, 'nvidia_smi_gpus', lambda: None)
    monkeypatch.setattr(doctor, 'find_data', lambda: (('the project', Path('/data/fashion-mnist')), []))
    return monkeypatch


def run(capsys, *args):
    status = doctor.main(list(args))
    return status, capsys.readouterr().out


def with_versions(monkeypatch, **versions):
    real = doctor.installed_version
    monkeypatch.setattr(doctor, 'installed_version', lambda name: versions.get(name, real(name)))


def test_one_fact_a_line_and_exit_0_when_all_is_well(healthy, capsys):
    status, out = run(capsys)
    lines = out.splitlines()
    assert [line.split(': ', 1)[0] for line in lines[:-1]] == KEYS
    assert lines[-1] == 'no problems found' and status == 0
    assert f'python: {".".join(map(str, sys.version_info[:3]))}' in out
    assert 'mxnet: mxnet 1.9.1' in lines and 'mxnet build: CPU build; enabled: MKLDNN' in lines
    assert 'Fashion-MNIST: /data/fashion-mnist (the project), SHA-1 verified' in lines


def test_json_holds_the_same_facts_and_the_problems(healthy, capsys):
    healthy.setattr(doctor, 'find_data', lambda: (None, []))
    status, out = run(capsys, '--json')
    report = json.loads(out)
    assert list(report['facts']) == KEYS and status == 1
    assert [p['found'] for p in report['problems']] == [
        'no verified copy of Fashion-MNIST was found (train.py would download it, if online)']
    assert 'apt-get install dataset-fashion-mnist' in report['problems'][0]['fix']


def test_a_problem_is_printed_with_its_fix_and_exits_1(healthy, capsys):
    with_versions(healthy, numpy='2.0.2')
    status, out = run(capsys)
    assert status == 1
    assert 'PROBLEM: numpy 2.0.2 is installed; mxnet 1.9.1 needs numpy<2\n' in out
    assert "  fix: pip install 'numpy<2' (on Colab, then restart the runtime" in out
    assert out.splitlines()[-1] == '1 problem(s) found'


def test_a_python_outside_the_supported_range_is_a_problem(healthy, capsys):
    healthy.setattr(doctor, 'PYTHONS', ((3, 8), (sys.version_info[0], sys.version_info[1] - 1)))
    status, out = run(capsys)
    assert status == 1 and 'mxnet 1.9.1 runs on Python 3.8-3.12' in out and 'uv venv --seed --python 3.12' in out


def test_torch2_beside_gluoncv_is_a_fact_not_a_problem(healthy, capsys):
    with_versions(healthy, torch='2.3.1')
    status, out = run(capsys)
    assert status == 0
    assert 'PyTorch: 2.3.1' in out and 'gluoncv: 0.10.5.post0, imports (without its PyTorch parts' in out


def test_gluoncv_refusing_torch2_is_a_problem_with_the_fix(healthy, capsys):
    def refuse():
        raise RuntimeError('Legacy torch==2.3.1 detected, some modules may not work properly.')
    healthy.setattr(doctor, 'import_gluoncv', refuse)
    status, out = run(capsys)
    assert status == 1 and 'PROBLEM: import gluoncv fails: RuntimeError: Legacy torch==2.3.1' in out
    assert 'fix: import bn_gluon before gluoncv' in out


def cuda_build(monkeypatch, gpus, seen=1, missing=()):
    """Stand-ins for mxnet-cu112 on a machine with ``gpus``, of which MXNet sees ``seen``."""
    monkeypatch.setattr(doctor, 'mxnet_distributions', lambda: {'mxnet-cu112': '1.9.1'})
    monkeypatch.setattr(doctor, 'mxnet_features', lambda mx: {'CUDA': True, 'CUDNN': True, 'NCCL': True})
    monkeypatch.setattr(doctor, 'mxnet_gpu_count', lambda mx: seen)
    monkeypatch.setattr(doctor, 'nvidia_smi_gpus', lambda: gpus)
    monkeypatch.setattr(doctor, 'load_library', lambda so: f'{so}: cannot open shared object file' if so in missing
                        else None)


def test_a_gpu_the_wheel_has_code_for_is_all_well(healthy, capsys):
    cuda_build(healthy, [L4])
    status, out = run(capsys)
    assert status == 0, out
    assert 'GPUs (nvidia-smi): 0: NVIDIA L4, compute capability 8.9' in out and 'GPUs MXNet sees: 1' in out
    assert 'mxnet build: CUDA build; enabled: CUDA, CUDNN, NCCL' in out
    assert 'CUDA libraries: libcudart.so.11.0 loads, libcudnn.so.8 loads' in out


def test_a_hopper_gpu_cannot_run_the_wheel(healthy, capsys):
    cuda_build(healthy, [L4, H100], seen=2)
    status, out = run(capsys)
    assert status == 1
    problems = [line for line in out.splitlines() if line.startswith('PROBLEM')]
    assert problems == ['PROBLEM: GPU 1 (NVIDIA H100 80GB HBM3) has compute capability 9.0; mxnet-cu112 carries '
                        'code for 5.0, 6.0, 7.0, 8.0, 8.6 and no PTX, so its kernels cannot run there '
                        '("no kernel image is available")']
    assert 'pip uninstall mxnet-cu112 && pip install mxnet==1.9.1' in out


def test_missing_cuda_libraries_are_named(healthy, capsys):
    cuda_build(healthy, [L4], missing=('libcudnn.so.8',))
    status, out = run(capsys)
    assert status == 1 and 'CUDA libraries: libcudart.so.11.0 loads, libcudnn.so.8 missing' in out
    assert 'PROBLEM: mxnet-cu112 needs libcudnn.so.8, which do not load' in out and 'LD_LIBRARY_PATH' in out


def test_a_cuda_build_that_sees_no_gpu_is_a_problem(healthy, capsys):
    cuda_build(healthy, None, seen=0)
    status, out = run(capsys)
    assert status == 1 and 'GPUs (nvidia-smi): no nvidia-smi' in out
    assert 'PROBLEM: mxnet-cu112 is a CUDA build but MXNet sees no GPU' in out


def test_a_cuda_build_that_cannot_load_its_runtime_still_gets_its_libraries_checked(healthy, capsys):
    cuda_build(healthy, [H100], missing=('libcudart.so.11.0', 'libcudnn.so.8'))

    def fail():
        raise OSError('libcudart.so.11.0: cannot open shared object file: No such file or directory')
    healthy.setattr(doctor, 'import_mxnet', fail)
    status, out = run(capsys)
    assert status == 1
    assert 'PROBLEM: import mxnet fails: OSError: libcudart.so.11.0' in out
    assert 'CUDA libraries: libcudart.so.11.0 missing, libcudnn.so.8 missing' in out
    assert 'GPUs MXNet sees: unknown (mxnet does not import)' in out
    assert 'GPU 0 (NVIDIA H100 80GB HBM3) has compute capability 9.0' in out


def test_gpus_beside_a_cpu_build_are_noted(healthy, capsys):
    healthy.setattr(doctor, 'nvidia_smi_gpus', lambda: [L4])
    status, out = run(capsys)
    assert status == 0 and 'GPU use: none: mxnet is a CPU build' in out


def test_a_corrupt_copy_in_a_searched_folder_is_named(monkeypatch, tmp_path):
    (tmp_path / 'train-images-idx3-ubyte.gz').write_bytes(b'not gzip')
    monkeypatch.setenv('BN_GLUON_DATA', str(tmp_path))
    used, skipped = doctor.find_data()
    assert [folder for _, folder, _ in skipped] == [tmp_path]
    assert used is None or used[1] != tmp_path
    report = doctor.Report()
    monkeypatch.setattr(doctor, 'find_data', lambda: (used, skipped))
    doctor.check_data(report, bn_gluon=object())
    assert report.problems[0]['found'].startswith(f'{tmp_path} holds Fashion-MNIST files that do not verify')


@pytest.mark.slow
@pytest.mark.parametrize('command', [['-m', 'bn_gluon.doctor', '--json'], ['bn_gluon/doctor.py', '--json']],
                         ids=['module', 'file'])
def test_runs_as_a_module_and_as_a_file(command):
    out = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT, timeout=300)
    report = json.loads(out.stdout)
    assert out.returncode == (1 if report['problems'] else 0), out.stderr
    assert list(report['facts'])[:3] == ['python', 'platform', 'bn_gluon']
    assert report['facts']['bn_gluon'].startswith(bn_gluon.__version__)
