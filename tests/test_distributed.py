"""Several processes on MXNet's parameter-server kvstore, started by ``python -m bn_gluon.launch``.

Two workers and one server on 127.0.0.1 train a few steps (tests/_dist_worker.py); the reference is
one process holding the same global batch on two contexts, whose per-device batch norm sees exactly
the slices the workers see. Every subprocess runs under a timeout.
"""
import os
import re
import signal
import socket
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from bn_gluon import launch, parallel

import _dist_worker as worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', '_dist_worker.py')
pytestmark = pytest.mark.skipif(sys.platform != 'linux', reason='the launcher and these checks use Linux /proc')


def launch_job(args, timeout=150):
    """Run the launcher; ``timeout`` only guards the test itself, the job's own ``--timeout`` is shorter."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', 'bn_gluon.launch'] + args, cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)


def processes_of_job(port):
    """Pids of live processes whose environment names this job's scheduler port."""
    pids = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                env = f.read().split(b'\0')
        except OSError:
            continue
        if f'DMLC_PS_ROOT_PORT={port}'.encode() in env:
            pids.append(int(pid))
    return pids


def port_of(stderr):
    """The scheduler port the launcher chose, from its first line."""
    match = re.search(r'launch: scheduler on 127\.0\.0\.1:(\d+)', stderr)
    assert match, stderr[-2000:]
    return int(match.group(1))


def reference_run():
    """One process, two contexts, the workers' shards side by side: what dist_sync must reproduce."""
    ctxs = [mx.cpu(0), mx.cpu(1)]
    net = worker.make_net(ctxs)
    params = net._collect_params_with_prefix()
    X, y = worker.make_data()
    shards = [parallel.shard(X, y, r, 2) for r in range(2)]
    optimizer = parallel.DataParallelSGD(params, worker.LR, momentum=0.9)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    B = worker.BATCH
    for step in range(worker.STEPS):
        Xb = mx.nd.concat(*[s[0][step * B:(step + 1) * B] for s in shards], dim=0)   # worker 0's, then 1's
        yb = mx.nd.concat(*[s[1][step * B:(step + 1) * B] for s in shards], dim=0)
        parallel.forward_backward(net, loss_fn, Xb, yb, ctxs)
        optimizer.step(Xb.shape[0])
    parallel.reconcile_running_stats(params)
    return {name: p.data(ctxs[0]).asnumpy() for name, p in params.items()}


@pytest.mark.distributed
def test_two_workers_and_a_server_train_like_one_process_with_the_global_batch(tmp_path):
    job = launch_job(['-n', '2', '-s', '1', '--timeout', '120', '--', sys.executable, WORKER, '--out', str(tmp_path)])
    assert job.returncode == 0, job.stderr[-3000:]
    assert processes_of_job(port_of(job.stderr)) == []
    results = [np.load(tmp_path / f'worker{r}.npz') for r in range(2)]
    assert all(int(r['num_workers']) == 2 for r in results)
    for r in results:  # every socket a worker listened on was on the loopback interface
        assert len(r['listening']) >= 1 and set(r['listening']) == {'127.0.0.1'}, r['listening']
    reference = reference_run()
    assert set(reference) <= set(results[0].files)
    for name, expected in reference.items():
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=f'{name} differs between workers')
        np.testing.assert_allclose(results[0][name], expected, rtol=1e-4, atol=1e-5, err_msg=name)
    # the run really moved the weights: a stale copy could not pass the comparison above
    initial = worker.make_net([mx.cpu()])._collect_params_with_prefix()['0.weight'].data().asnumpy()
    assert np.abs(reference['0.weight'] - initial).max() > 1e-2


@pytest.mark.distributed
def test_a_killed_worker_stops_the_whole_job_with_a_clear_message(tmp_path, capsys):
    # the launcher runs in this process: one MXNet start-up less
    rc = launch.main(['-n', '2', '--timeout', '120', '--', sys.executable, WORKER, '--out', str(tmp_path),
                      '--die-at', '1'])
    stderr = capsys.readouterr().err
    port = port_of(stderr)
    assert rc != 0
    # the death itself was noticed (the survivor would otherwise wait inside the kvstore until --timeout)
    assert 'was killed by SIGKILL' in stderr and 'stopping' in stderr, stderr[-2000:]
    assert '--timeout' not in stderr
    assert processes_of_job(port) == []
    assert not (tmp_path / 'worker0.npz').exists()      # the survivor was stopped, not left to finish


@pytest.mark.distributed
def test_a_job_past_its_timeout_is_stopped(capsys):
    rc = launch.main(['-n', '1', '--timeout', '2', '--', sys.executable, '-c', 'import time; time.sleep(600)'])
    assert rc == 124
    stderr = capsys.readouterr().err
    assert '--timeout 2 s' in stderr
    assert processes_of_job(port_of(stderr)) == []


@pytest.fixture
def taken_port():
    """A port some other program listens on for the length of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((launch.LOCALHOST, 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.distributed
def test_a_port_taken_before_the_scheduler_binds_it_is_replaced(taken_port, monkeypatch):
    """The launcher's free port is taken by someone else in between: it starts the scheduler on another."""
    ports = iter([taken_port])
    real = launch.free_port
    monkeypatch.setattr(launch, 'free_port', lambda: next(ports, None) or real())
    job = launch.Job([sys.executable, '-c', 'import time; time.sleep(600)'], num_workers=1)
    try:
        assert job.port != taken_port
        assert [name for name, _ in job.procs] == ['scheduler', 'server 0', 'worker 0']
        assert launch._listens(job.procs[0][1].pid, job.port)            # ours listens, not the other program
        assert not launch._listens(job.procs[0][1].pid, taken_port)
    finally:
        job.stop()
    assert processes_of_job(job.port) == [] and processes_of_job(taken_port) == []


@pytest.mark.distributed
def test_a_given_port_that_is_taken_is_said_in_words(taken_port, capsys):
    rc = launch.main(['-n', '1', '--port', str(taken_port), '--timeout', '60', '--', sys.executable, '-c', 'pass'])
    assert rc == 1
    assert f'the scheduler could not listen on 127.0.0.1:{taken_port}' in capsys.readouterr().err
    assert processes_of_job(taken_port) == []


def test_hosts_file_prints_one_command_per_process_and_starts_nothing(tmp_path, capsys):
    hosts = tmp_path / 'hosts'
    hosts.write_text('10.0.0.1\n# a comment\n10.0.0.2\n\n')
    assert launch.main(['-n', '3', '-s', '2', '--hosts', str(hosts), '--port', '9200', '--',
                        'python', 'train.py', '--kvstore', 'dist_sync']) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if not line.startswith('#')]
    assert len(commands) == 1 + 2 + 3
    assert all('DMLC_PS_ROOT_URI=10.0.0.1' in c and 'DMLC_PS_ROOT_PORT=9200' in c for c in commands)
    assert all('DMLC_NUM_WORKER=3' in c and 'DMLC_NUM_SERVER=2' in c for c in commands)
    roles = [c.split('DMLC_ROLE=')[1].split()[0] for c in commands]
    assert roles == ['scheduler', 'server', 'server', 'worker', 'worker', 'worker']
    assert commands[-1].endswith('python train.py --kvstore dist_sync')
    assert 'DMLC_NODE_HOST=10.0.0.2' in commands[4]     # workers go round the hosts


@pytest.mark.parametrize('argv,message', [
    (['-n', '2'], 'no worker command'),
    (['-n', '0', '--', 'python', 'x.py'], 'at least one worker'),
    (['-n', '1', '--timeout', '-1', '--', 'python', 'x.py'], '--timeout must be > 0'),
    (['-n', '1', '--hosts', '/nonexistent/hosts', '--', 'python', 'x.py'], 'cannot read --hosts'),
])
def test_launch_rejects_bad_arguments_in_words(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_dmlc_environment_of_a_local_process():
    env = launch.dmlc_env('worker', '127.0.0.1', 9300, 2, 1, '127.0.0.1')
    assert env == {'DMLC_ROLE': 'worker', 'DMLC_PS_ROOT_URI': '127.0.0.1', 'DMLC_PS_ROOT_PORT': '9300',
                   'DMLC_NUM_WORKER': '2', 'DMLC_NUM_SERVER': '1', 'DMLC_NODE_HOST': '127.0.0.1'}
    assert signal.SIGKILL  # the launcher's kill path exists on this platform


# --- the launcher's watch over its processes, with stand-ins for MXNet's scheduler and servers ---------
# A stand-in scheduler listens on the job's port as MXNet's would; stand-in servers wait, or leave at once
# when STAND_IN_SERVER=leaves. Each starts in milliseconds, so these run in the quick tier.
STAND_IN = """
import os, socket, time
if os.environ['DMLC_ROLE'] == 'scheduler':
    s = socket.socket()
    s.bind(('127.0.0.1', int(os.environ['DMLC_PS_ROOT_PORT'])))
    s.listen()
    time.sleep(600)
elif os.environ.get('STAND_IN_SERVER') != 'leaves':
    time.sleep(600)
"""


@pytest.fixture
def stand_ins(monkeypatch):
    monkeypatch.setattr(launch, 'SERVE', [sys.executable, '-c', STAND_IN])
    monkeypatch.setattr(launch, 'GRACE_SECONDS', 0.5)


def python(code):
    return [sys.executable, '-c', code]


def test_a_job_whose_workers_succeed_exits_0_and_leaves_nothing_running(stand_ins, capsys):
    check = "import os; assert os.environ['DMLC_ROLE'] == 'worker' and os.environ['DMLC_NUM_WORKER'] == '2'"
    assert launch.main(['-n', '2', '-s', '2', '--', *python(check)]) == 0
    stderr = capsys.readouterr().err
    assert '2 server(s), 2 worker(s)' in stderr
    assert 'the scheduler and servers did not leave within 0.5 s and were stopped' in stderr
    assert processes_of_job(port_of(stderr)) == []


def test_a_failing_worker_stops_the_job_and_its_status_is_the_jobs(stand_ins, capsys):
    assert launch.main(['-n', '2', '--', *python('import sys; sys.exit(3)')]) == 3
    stderr = capsys.readouterr().err
    assert re.search(r'worker \d \(pid \d+\) exited with status 3; stopping', stderr), stderr
    assert processes_of_job(port_of(stderr)) == []


def test_a_server_that_leaves_while_workers_run_stops_the_job(stand_ins, monkeypatch, capsys):
    monkeypatch.setenv('STAND_IN_SERVER', 'leaves')
    assert launch.main(['-n', '1', '--', *python('import time; time.sleep(600)')]) == 1
    stderr = capsys.readouterr().err
    assert 'server 0 left, but workers were still running 0.5 s later; stopping' in stderr
    assert processes_of_job(port_of(stderr)) == []


def test_sigterm_to_the_launcher_stops_every_process_and_restores_the_handler(stand_ins, capsys):
    before = signal.getsignal(signal.SIGTERM)
    kill_parent = 'import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); time.sleep(600)'
    with pytest.raises(SystemExit) as exit_:
        launch.main(['-n', '1', '--', *python(kill_parent)])
    assert exit_.value.code == 128 + signal.SIGTERM
    stderr = capsys.readouterr().err
    assert 'got SIGTERM; stopping every process' in stderr
    assert processes_of_job(port_of(stderr)) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_worker_command_that_cannot_start_is_said_in_words(stand_ins, capsys):
    assert launch.main(['-n', '1', '--', '/nonexistent/worker']) == 1
    assert "launch: could not start" in capsys.readouterr().err


def test_a_killed_process_is_described_by_its_signal():
    assert launch._describe(-signal.SIGKILL) == 'was killed by SIGKILL'
    assert launch._describe(-200) == 'was killed by signal 200'
    assert launch._describe(2) == 'exited with status 2'
