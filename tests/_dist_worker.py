"""A few data-parallel SGD steps on generated data, as one worker of a ``dist_sync`` job.

Run by tests/test_distributed.py through ``python -m bn_gluon.launch``; the test imports ``make_net`` and
``make_data`` to train the same model in one process as the reference. Each worker writes its final
parameters and the addresses its sockets listen on to ``OUT/worker<rank>.npz``.
"""
import argparse
import os
import signal

import bn_gluon  # first: bn_gluon.compat must be in force before mxnet is imported
import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from bn_gluon import parallel

STEPS, BATCH, LR = 4, 8, 0.5   # BATCH examples per worker and step


def make_net(ctxs, seed=0):
    """conv -> BN -> relu -> pool -> dense: small, with the batch norm whose statistics differ by shard."""
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3, in_channels=1), bn_gluon.BatchNorm(in_channels=4),
            nn.Activation('relu'), nn.MaxPool2D(2), nn.Dense(3, in_units=4 * 3 * 3))
    net.initialize(mx.init.Xavier(), ctx=ctxs)
    return net


def make_data(n=64, seed=0):
    """(X, y): n images (1, 8, 8) of 3 classes; class c is brighter in band c."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    X = rng.normal(0.0, 1.0, (n, 1, 8, 8))
    for c in range(3):
        X[y == c, 0, 2 * c:2 * c + 3, :] += 2.0
    return mx.nd.array(X), mx.nd.array(y)


def listening_addresses():
    """The local IPv4/IPv6 addresses this process's TCP sockets listen on (Linux /proc)."""
    inodes = set()
    for fd in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    addresses = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == '0A' and fields[9] in inodes:           # state LISTEN, one of our sockets
                addresses.append(_address(fields[1].split(':')[0]))
    return addresses


def _address(hex_ip):
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return '.'.join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    raw = b''.join(words)
    return '127.0.0.1' if raw[-4:] == bytes([127, 0, 0, 1]) and raw[:10] == bytes(10) else raw.hex()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', required=True)
    parser.add_argument('--die-at', type=int, default=-1, help='worker 1 kills itself at this step')
    args = parser.parse_args()
    kv = parallel.create_kvstore('dist_sync')
    ctxs = [mx.cpu(0)]
    net = make_net(ctxs)
    params = net._collect_params_with_prefix()
    parallel.init_kvstore(kv, params)
    X, y = parallel.shard(*make_data(), kv.rank, kv.num_workers)
    optimizer = parallel.DataParallelSGD(params, LR, momentum=0.9, kv=kv)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for step in range(STEPS):
        if step == args.die_at and kv.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        Xb, yb = X[step * BATCH:(step + 1) * BATCH], y[step * BATCH:(step + 1) * BATCH]
        parallel.forward_backward(net, loss_fn, Xb, yb, ctxs)
        optimizer.step(Xb.shape[0])
    parallel.reconcile_running_stats(params, kv)
    arrays = {name: p.data(ctxs[0]).asnumpy() for name, p in params.items()}
    np.savez(os.path.join(args.out, f'worker{kv.rank}.npz'), listening=np.array(listening_addresses()),
             num_workers=kv.num_workers, **arrays)


if __name__ == '__main__':
    main()
