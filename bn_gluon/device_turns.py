"""Device threads taking turns: one function per device, run in lockstep so the devices can exchange values.

A data-parallel step calls the net once per device. Synchronized batch norm needs every device's
partial sums before any device can normalize, which a plain loop ``[net(x) for x in xs]`` cannot give:
device 0's call would have to wait for device 1's, which has not started. Here each device's call runs
in its own thread, but only one thread runs at a time (a baton passes between them), so MXNet is never
called concurrently; at :func:`all_gather` a thread hands the baton on and waits until every device
has contributed. The exchange is of NDArray handles, not values: MXNet's engine never waits inside an
operator, so no cross-device deadlock is possible (``gluon.contrib.nn.SyncBatchNorm`` waits inside its
operator and can hang on CPU contexts).
"""
import threading

from mxnet import autograd

_local = threading.local()


class Lockstep:
    """The shared state of K device threads: whose turn it is, and the values of the current exchange."""

    def __init__(self, size, timeout):
        self.size, self.timeout = size, timeout
        self.turn, self.error = 0, None
        self.done = [False] * size
        self.slots = [None] * size                   # (exchange number, value) per device
        self.published = None
        self.cond = threading.Condition()

    def wait_turn(self, rank):
        with self.cond:
            if not self.cond.wait_for(lambda: self.turn == rank or self.error is not None, self.timeout):
                self.fail(TimeoutError(f"device {rank} waited {self.timeout:g} s for its turn; another device's "
                                       f"call is stuck."))
            if self.error is not None:
                raise _Aborted()

    def pass_turn(self, rank):
        """Give the baton to the next device that has not finished (the main thread joins when all have)."""
        with self.cond:
            for step in range(1, self.size + 1):
                nxt = (rank + step) % self.size
                if not self.done[nxt]:
                    self.turn = nxt
                    break
            self.cond.notify_all()

    def fail(self, error):
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    def all_gather(self, rank, count, value):
        """Exchange number ``count``: store this device's value, wait for all, return them in device order."""
        self.slots[rank] = (count, value)
        if rank == self.size - 1:                    # the last to arrive publishes the round
            counts = {c for c, _ in self.slots}
            if len(counts) > 1 or any(self.done):
                self.fail(RuntimeError(f"the devices are out of step: exchanges {sorted(counts)} met, or a "
                                       f"device finished early. Every device must run the same layers."))
                raise _Aborted()
            self.published = [v for _, v in self.slots]
        self.pass_turn(rank)
        self.wait_turn(rank)
        return self.published


class _Aborted(Exception):
    """Raised in the other threads when one failed; the runner re-raises the first real error."""


def current():
    """(Lockstep, rank) of the calling device thread, or None outside :func:`lockstep`."""
    return getattr(_local, 'group', None)


def all_gather(value):
    """Inside :func:`lockstep`: every device's ``value``, in device order (device 0 first)."""
    group, rank = _local.group
    _local.count += 1
    return group.all_gather(rank, _local.count, value)


def lockstep(fn, *arg_lists, timeout=60.0):
    """``[fn(*args) for args in zip(*arg_lists)]``, one device per thread, taking turns.

    The caller's autograd state (recording, training) holds inside every thread, so
    ``with autograd.record(): y_hats = lockstep(net, Xs)`` records what ``[net(X) for X in Xs]`` would.

    Parameters
    ----------
    fn : callable
        Called once per device, e.g. the net.
    arg_lists : lists
        The k-th call gets the k-th element of each list (e.g. the per-device slices).
    timeout : float
        Seconds a device may wait for its turn before the whole call fails with TimeoutError.
    """
    calls = list(zip(*arg_lists))
    if not calls:
        raise ValueError('lockstep needs at least one device: the argument lists are empty.')
    group = Lockstep(len(calls), timeout)
    results = [None] * len(calls)
    recording, training = autograd.is_recording(), autograd.is_training()

    def work(rank):
        autograd.set_recording(recording)            # autograd's state is per thread in MXNet
        autograd.set_training(training)
        _local.group, _local.count = (group, rank), 0
        try:
            group.wait_turn(rank)
            results[rank] = fn(*calls[rank])
            group.done[rank] = True
            group.pass_turn(rank)
        except _Aborted:
            pass
        except BaseException as e:  # noqa: B902  handed to the caller's thread below
            group.fail(e)

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if group.error is not None:
        raise group.error
    return results
