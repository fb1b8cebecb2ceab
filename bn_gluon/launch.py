"""Start an MXNet parameter-server job: one scheduler, S servers and W workers running your command.

    python -m bn_gluon.launch -n 2 -- python train.py --kvstore dist_sync
    python -m bn_gluon.launch -n 4 -s 2 --hosts hosts.txt -- python train.py --kvstore dist_sync

Without ``--hosts`` every process runs on this machine and every socket is on 127.0.0.1. MXNet finds
its role and peers in environment variables (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``, ``DMLC_PS_ROOT_PORT``,
``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER``); a scheduler or server is just ``import mxnet`` with its role
set, which serves until the workers finish. With ``--hosts`` nothing is started: the command for each
host of a cluster is printed.

If any process fails (a non-zero exit, a signal, or a scheduler/server leaving early) the others would
wait for it forever inside the kvstore, so the launcher stops them all, says which one failed, and
exits non-zero. ``--timeout`` bounds the whole job. The scheduler starts first, and the others once it
listens; without ``--port`` a port someone else took in between is replaced by another free one.
"""
import argparse
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

LOCALHOST = '127.0.0.1'
SERVE = [sys.executable, '-c', 'import bn_gluon.compat; import mxnet']   # a scheduler or server: importing MXNet runs it
POLL_SECONDS = 0.1
GRACE_SECONDS = 10.0                             # for the scheduler and servers once the workers are done
DEFAULT_CLUSTER_PORT = 9091
PORT_ATTEMPTS = 5                                # free ports tried when none is given


def free_port(host=LOCALHOST):
    """A TCP port that nothing listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_until_listening(proc, port, timeout=120.0):
    """True once process ``proc`` listens on TCP ``port`` (Linux /proc), False if it exits first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if _listens(proc.pid, port):
            return True
        time.sleep(POLL_SECONDS)
    return False


def _listens(pid, port):
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (read from Linux /proc)."""
    sockets = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        # local address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 the socket's inode
        sockets |= {f'socket:[{r[9]}]' for r in rows if r[3] == '0A' and int(r[1].rsplit(':', 1)[1], 16) == port}
    try:
        fds = os.listdir(f'/proc/{pid}/fd')
    except OSError:                                                   # no /proc: anyone listening will do
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            return s.connect_ex((LOCALHOST, port)) == 0
    for fd in fds:
        try:
            if os.readlink(f'/proc/{pid}/fd/{fd}') in sockets:
                return True
        except OSError:
            pass
    return False


def dmlc_env(role, root_uri, port, num_workers, num_servers, node_host):
    """The environment variables that tell an MXNet process its role and where the scheduler is."""
    return {'DMLC_ROLE': role, 'DMLC_PS_ROOT_URI': root_uri, 'DMLC_PS_ROOT_PORT': str(port),
            'DMLC_NUM_WORKER': str(num_workers), 'DMLC_NUM_SERVER': str(num_servers),
            'DMLC_NODE_HOST': node_host}   # the address this process binds to and announces


def cluster_commands(hosts, command, num_workers, num_servers, port=DEFAULT_CLUSTER_PORT):
    """(host, role, shell command) for a cluster: the scheduler on the first host, the rest round-robin."""
    root, serve = hosts[0], ['python', '-c', 'import bn_gluon.compat; import mxnet']
    jobs = [(root, 'scheduler', serve)]
    jobs += [(hosts[i % len(hosts)], 'server', serve) for i in range(num_servers)]
    jobs += [(hosts[i % len(hosts)], 'worker', list(command)) for i in range(num_workers)]
    out = []
    for host, role, argv in jobs:
        env = dmlc_env(role, root, port, num_workers, num_servers, host)
        words = ['env'] + [f'{k}={v}' for k, v in env.items()] + argv
        out.append((host, role, ' '.join(shlex.quote(w) for w in words)))
    return out


def _die_with_parent():
    """Run in each child before exec: the kernel kills it if the launcher dies (Linux), so nothing lingers."""
    os.setsid()                                                   # its own process group, killed as one
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Job:
    """The processes of one local job, watched until all workers succeed or one process fails."""

    def __init__(self, command, num_workers, num_servers=1, port=None, env=None):
        base = dict(os.environ if env is None else env)
        base.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // num_workers)))
        self.procs = []                                           # (name, Popen)
        roles = [(f'server {i}', 'server', SERVE) for i in range(num_servers)]
        roles += [(f'worker {i}', 'worker', command) for i in range(num_workers)]

        def start(name, role, argv):
            env_i = dict(base, **dmlc_env(role, LOCALHOST, self.port, num_workers, num_servers, LOCALHOST))
            env_i['BN_GLUON_LAUNCH_INDEX'] = name.split()[-1]      # launch order; the kvstore rank may differ
            self.procs.append((name, subprocess.Popen(argv, env=env_i, preexec_fn=_die_with_parent)))

        try:
            # A free port can be taken before the scheduler binds it: the scheduler then exits ("bind
            # failed"). Only once it listens do the others start; a port we chose is chosen again.
            for _ in range(1 if port else PORT_ATTEMPTS):
                self.port = port or free_port()
                start('scheduler', 'scheduler', SERVE)
                if _wait_until_listening(self.procs[0][1], self.port):
                    break
                self.stop()
                self.procs = []
            else:
                raise RuntimeError(f'the scheduler could not listen on {LOCALHOST}:{self.port}'
                                   + ('' if port else f' (tried {PORT_ATTEMPTS} free ports)'))
            for name, role, argv in roles:
                start(name, role, argv)
        except OSError as e:
            self.stop()
            raise RuntimeError(f'could not start {SERVE[0]!r} or {command[0]!r}: {e}') from None

    def wait(self, timeout=None, log=None):
        """Watch the processes; return the exit status of the job (0 when every worker exited with 0)."""
        log = log or (lambda msg: print(f'launch: {msg}', file=sys.stderr, flush=True))
        start = time.monotonic()
        workers_done_at = service_left_at = None
        while True:
            workers_running = False
            for name, p in self.procs:
                rc = p.poll()
                if name.startswith('worker') and rc is None:
                    workers_running = True
                if rc is not None and rc != 0:
                    return self._fail(log, f'{name} (pid {p.pid}) {_describe(rc)}', rc)
                if rc == 0 and not name.startswith('worker'):
                    # the scheduler and servers leave as the workers finish; workers left waiting long
                    # after that would wait forever
                    service_left_at = service_left_at or (time.monotonic(), name)
            if workers_running and service_left_at and time.monotonic() - service_left_at[0] > GRACE_SECONDS:
                return self._fail(log, f'{service_left_at[1]} left, but workers were still running '
                                       f'{GRACE_SECONDS:g} s later', 1)
            if not workers_running:
                workers_done_at = workers_done_at or time.monotonic()
                if all(p.poll() is not None for _, p in self.procs):
                    return 0
                if time.monotonic() - workers_done_at > GRACE_SECONDS:
                    self.stop()
                    log(f'all workers finished; the scheduler and servers did not leave within '
                        f'{GRACE_SECONDS:g} s and were stopped.')
                    return 0
            if timeout is not None and time.monotonic() - start > timeout:
                return self._fail(log, f'the job ran past --timeout {timeout:g} s', 124)
            time.sleep(POLL_SECONDS)

    def _fail(self, log, why, rc):
        running = [name for name, p in self.procs if p.poll() is None]
        log(f'{why}; stopping {", ".join(running) or "nothing (all have exited)"}.')
        self.stop()
        return rc if 0 < rc < 256 else 1

    def stop(self, grace=3.0):
        """SIGTERM every process group still running, then SIGKILL what is left after ``grace`` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for _, p in self.procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for _, p in self.procs):
                time.sleep(POLL_SECONDS)
        for _, p in self.procs:
            p.wait()


def _describe(rc):
    if rc < 0:
        try:
            return f'was killed by {signal.Signals(-rc).name}'
        except ValueError:
            return f'was killed by signal {-rc}'
    return f'exited with status {rc}'


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m bn_gluon.launch', description=__doc__.split('\n')[0],
                                     usage='%(prog)s -n WORKERS [-s SERVERS] [--hosts FILE] [--port PORT] '
                                           '[--timeout SECONDS] -- COMMAND ...')
    parser.add_argument('-n', '--num-workers', type=int, required=True, help='worker processes (W >= 1)')
    parser.add_argument('-s', '--num-servers', type=int, default=1, help='server processes (default 1)')
    parser.add_argument('--hosts', help='file with one host per line: print the commands for a cluster')
    parser.add_argument('--port', type=int, help='scheduler port (default: a free one; '
                                                 f'{DEFAULT_CLUSTER_PORT} with --hosts)')
    parser.add_argument('--timeout', type=float, help='stop everything after this many seconds')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='the worker command, after --')
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        parser.error('no worker command: put it after --, e.g. -- python train.py --kvstore dist_sync')
    if args.num_workers < 1 or args.num_servers < 1:
        parser.error(f'need at least one worker and one server; got -n {args.num_workers} -s {args.num_servers}')
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f'--port must be in 1..65535; got {args.port}')
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f'--timeout must be > 0 seconds; got {args.timeout}')
    if args.hosts:
        try:
            with open(args.hosts) as f:
                hosts = [line.split('#')[0].strip() for line in f]
        except OSError as e:
            parser.error(f'cannot read --hosts {args.hosts}: {e.strerror}')
        hosts = [h for h in hosts if h]
        if not hosts:
            parser.error(f'--hosts {args.hosts} lists no host (one name or address per line)')
        for host, role, line in cluster_commands(hosts, command, args.num_workers, args.num_servers,
                                                 args.port or DEFAULT_CLUSTER_PORT):
            print(f'# {role} on {host}\n{line}')
        return 0
    try:
        job = Job(command, args.num_workers, args.num_servers, args.port)
    except RuntimeError as e:
        print(f'launch: {e}', file=sys.stderr, flush=True)
        return 1
    print(f'launch: scheduler on {LOCALHOST}:{job.port}, {args.num_servers} server(s), {args.num_workers} '
          f'worker(s): {shlex.join(command)}', file=sys.stderr, flush=True)
    previous = {}

    def on_signal(signum, frame):
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f'launch: got {signal.Signals(signum).name}; stopping every process.', file=sys.stderr, flush=True)
        job.stop()
        sys.exit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        return job.wait(args.timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == '__main__':
    sys.exit(main())
