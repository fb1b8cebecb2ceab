"""Every training hyperparameter in one dataclass; ``train.py`` builds its flags from the fields."""
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import mxnet as mx

from .layers.batch_norm import IMPLS
from .models import NORM_POSITIONS, NORMS, RAW_NORMS, get_norm
from .optim import LR_SCHEDULES
from .parallel import KVSTORES

STYLES = ('gluon', 'raw')
OPTIMIZERS = ('sgd', 'trainer')


def _opt(help, **kwargs):
    return dict(help=help, **kwargs)


@dataclass
class TrainConfig:
    """Hyperparameters and paths of one training run; ``validate`` checks them in words."""

    # 6 epochs (no weight decay) reached 85.8, 88.4, 89.4, 90.0% test accuracy in epochs 1-4 and head for
    # about 91%, too close to the floor promised for a plain run: 8 epochs give the decay room to settle.
    # Measured with these defaults (seed 0, CPU): test accuracy 0.9117 after epoch 8 (0.9109 after 7).
    epochs: int = field(default=8, metadata=_opt('passes over the 60000 training images'))
    # 128 as in the article: enough examples per channel for stable batch statistics, many steps per epoch.
    batch_size: int = field(default=128, metadata=_opt('examples per step (and per batch statistic)'))
    # With momentum 0.9 the effective step is lr / (1 - 0.9) = 1.0 per mean gradient; BN tolerates it.
    lr: float = field(default=0.1, metadata=_opt('learning rate; SGD divides the summed gradient by the '
                                                 'batch size, so it applies to the mean gradient'))
    # Cosine: the last epochs take small steps and settle; a constant rate keeps the accuracy wandering.
    lr_schedule: str = field(default='cosine', metadata=_opt('learning rate over the run: cosine decay to 0 '
                                                             'or constant', choices=LR_SCHEDULES))
    # The point of the project: the hand-written batch norm.
    norm: str = field(default='scratch', metadata=_opt('normalization after each convolution',
                                                       choices=tuple(NORMS)))
    # The formulas the course reads, differentiated by MXNet; 'fast' is the opt-in custom operator with a
    # hand-written backward (same numbers, for chain networks such as this LeNet; docs/performance.md).
    impl: str = field(default='reference', metadata=_opt("how the scratch batch norm computes: 'reference' "
                                                         "(the formulas as written) or 'fast'", choices=IMPLS))
    # The Gluon network is the one to hybridize and save; 'raw' is the article's dict of NDArrays.
    style: str = field(default='gluon', metadata=_opt('network written as Gluon blocks or as raw nd code',
                                                      choices=STYLES))
    # The hand-written update is what the project teaches; 'trainer' is gluon.Trainer for comparison.
    optimizer: str = field(default='sgd', metadata=_opt('hand-written SGD or gluon.Trainer',
                                                        choices=OPTIMIZERS))
    # Momentum reaches 91% in about half the epochs that plain SGD needs at its best lr.
    momentum: float = field(default=0.9, metadata=_opt('SGD momentum (0 = plain SGD)'))
    # By epoch 4 train accuracy led test accuracy by about a point and the gap grew, so the common 5e-4
    # regularizes a little (with BN it mostly keeps the convolution weights small, i.e. their steps large).
    # It came in together with epochs 8; its effect alone was not measured.
    weight_decay: float = field(default=5e-4, metadata=_opt('L2 penalty added to the gradient'))
    # 'auto' takes the first GPU when MXNet sees one, else the CPU.
    ctx: str = field(default='auto', metadata=_opt('device: auto, cpu, cpu:N, gpu or gpu:N; a comma-separated '
                                                   'list (cpu:0,cpu:1) splits every batch across the devices'))
    # None: one process, gradients summed over its devices by hand. dist_sync: several processes started by
    # python -m bn_gluon.launch, each on its own shard of the data, summed through MXNet's parameter servers.
    kvstore: Optional[str] = field(default=None, metadata=_opt(
        'MXNet kvstore that sums the gradients; dist_sync for worker processes started by python -m '
        'bn_gluon.launch (--batch-size is then the global batch, split over the workers)', choices=KVSTORES))
    # Fixed, so two runs with the same flags give the same numbers on the CPU.
    seed: int = field(default=0, metadata=_opt('seed of initialisation and shuffling'))
    # None searches the standard places (see data/README.md).
    data_dir: Optional[str] = field(default=None, metadata=_opt('folder with the four Fashion-MNIST IDX files'))
    # Downloading is the last resort after every local place was searched.
    download: bool = field(default=True, metadata=_opt('download Fashion-MNIST when not found locally'))
    # Checking the SHA-1 of the data catches truncated or foreign files; generated test data has to skip it.
    verify: bool = field(default=True, metadata=_opt('check the SHA-1 of the IDX files'))
    # None: runs/<date-time>-<norm>, so runs never overwrite each other.
    out: Optional[str] = field(default=None, metadata=_opt('output folder of the run'))
    # A hybridized graph runs faster; the scratch batch norm's formulas run in it as they do imperatively.
    hybridize: bool = field(default=True, metadata=_opt('compile the Gluon network into a static graph'))
    # Off: a plain run trains. Given: load that checkpoint, evaluate it on the test set, write nothing.
    eval: Optional[str] = field(default=None, metadata=_opt('evaluate a checkpoint folder or .params file',
                                                            metavar='CHECKPOINT'))
    # Continue a run from its checkpoint folder (or its run folder) as if it was never interrupted.
    resume: Optional[str] = field(default=None, metadata=_opt('resume from a checkpoint folder',
                                                              metavar='CHECKPOINT'))
    # Progress bars only help a person watching a terminal.
    quiet: bool = field(default=False, metadata=_opt('no progress bars or per-epoch lines'))
    # Off as in the article: BN only after the convolutions.
    dense_norm: bool = field(default=False, metadata=_opt('normalize after the 128-unit dense layer too'))
    # Between the convolution and its activation, as in the paper and article 004; 'after_act' is the other
    # order, for comparison (lesson 04). Run folders written before this field existed load as 'before_act'.
    norm_position: str = field(default='before_act', metadata=_opt(
        "where each normalization sits: 'before_act' (conv -> norm -> activation) or 'after_act' "
        "(conv -> activation -> norm)", choices=NORM_POSITIONS))
    # Off: gamma 1, beta 0, moving variance 1, Xavier weights. On: the article's N(0, 0.01) everywhere.
    article_init: bool = field(default=False, metadata=_opt("the article's initialisation (gamma ~ N(0, 0.01), "
                                                            "moving variance 0), to see what it costs"))

    def validate(self):
        """Raise ValueError naming the first bad field, what it was and what is expected."""
        _expect(isinstance(self.epochs, int) and self.epochs >= 1, 'epochs', self.epochs, 'an integer >= 1')
        _expect(isinstance(self.batch_size, int) and self.batch_size >= 2, 'batch_size', self.batch_size,
                'an integer >= 2 (a batch of one has no variance to normalize by)')
        _expect(self.lr > 0, 'lr', self.lr, 'a number > 0, e.g. 0.1')
        _expect(self.lr < float('inf'), 'lr', self.lr, 'a finite number')
        _expect(self.lr_schedule in LR_SCHEDULES, 'lr_schedule', self.lr_schedule,
                f'one of {", ".join(LR_SCHEDULES)}')
        _expect(self.norm in NORMS, 'norm', self.norm, f'one of {", ".join(NORMS)}')
        get_norm(self.norm, self.dense_norm)
        _expect(self.style in STYLES, 'style', self.style, f'one of {", ".join(STYLES)}')
        _expect(self.norm_position in NORM_POSITIONS, 'norm_position', self.norm_position,
                f'one of {", ".join(NORM_POSITIONS)}')
        _expect(self.impl in IMPLS, 'impl', self.impl, f'one of {", ".join(IMPLS)}')
        if self.impl != 'reference' and self.norm != 'scratch':
            raise ValueError(f"--impl {self.impl} chooses how the scratch batch norm computes; it needs --norm "
                             f"scratch, got --norm {self.norm}.")
        _expect(self.optimizer in OPTIMIZERS, 'optimizer', self.optimizer, f'one of {", ".join(OPTIMIZERS)}')
        _expect(0 <= self.momentum < 1, 'momentum', self.momentum, 'a number in [0, 1)')
        _expect(self.weight_decay >= 0, 'weight_decay', self.weight_decay, 'a number >= 0')
        _expect(isinstance(self.seed, int) and self.seed >= 0, 'seed', self.seed, 'an integer >= 0')
        if self.style == 'raw' and self.norm_position != 'before_act':
            raise ValueError(f"--norm-position {self.norm_position} needs Gluon blocks; style 'raw' writes the "
                             f"article's conv -> BN -> ReLU only. Use --style gluon, or --norm-position before_act.")
        if self.style == 'raw' and self.norm not in RAW_NORMS:
            raise ValueError(f"norm {self.norm!r} needs Gluon blocks, but style 'raw' is plain nd code with the "
                             f"article's batch norm only; use --norm scratch or none with --style raw, or "
                             f"--style gluon.")
        if self.eval and self.resume:
            raise ValueError('eval and resume are exclusive: --eval only evaluates, --resume trains on.')
        for name in ('eval', 'resume'):
            path = getattr(self, name)
            if path is not None and not os.path.exists(path):
                raise ValueError(f'{name} checkpoint {path!r} does not exist.')
        if self.out is not None and os.path.isfile(self.out):
            raise ValueError(f'out {self.out!r} is a file; give a folder (it is created if missing).')
        ctxs = parse_ctxs(self.ctx)
        self._validate_parallel(len(ctxs))
        return self

    def _validate_parallel(self, num_devices):
        _expect(self.kvstore is None or self.kvstore in KVSTORES, 'kvstore', self.kvstore,
                f'one of {", ".join(KVSTORES)} (or not given)')
        if num_devices == 1 and self.kvstore is None:
            return
        if self.style != 'gluon' or self.optimizer != 'sgd':
            asked = f'--ctx {self.ctx}' if self.kvstore is None else f'--kvstore {self.kvstore}'
            raise ValueError(f"data parallelism ({asked}) runs the Gluon network with the hand-written SGD; got "
                             f"--style {self.style} --optimizer {self.optimizer}. Use --style gluon --optimizer sgd, "
                             f"or one device without --kvstore.")
        _expect(self.batch_size >= 2 * num_devices, 'batch_size', self.batch_size,
                f'at least 2 per device ({2 * num_devices} for {num_devices} devices)')
        if self.kvstore is not None and self.kvstore.startswith('dist') and 'DMLC_ROLE' not in os.environ:
            raise ValueError(f'--kvstore {self.kvstore} needs the scheduler, servers and DMLC_* variables that the '
                             f'launcher provides: python -m bn_gluon.launch -n 2 -- python train.py --kvstore '
                             f'{self.kvstore} ...')

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """The inverse of ``to_dict``; unknown keys are an error, missing ones take the defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'unknown TrainConfig fields {unknown}; known: {sorted(names)}')
        return cls(**d)


def _expect(ok, name, value, expected):
    if not ok:
        flag = '--' + name.replace('_', '-')
        raise ValueError(f'{flag} must be {expected}; got {value!r}.')


def parse_ctx(spec):
    """Turn 'auto', 'cpu', 'cpu:N', 'gpu' or 'gpu:N' into an ``mx.Context``.

    The one place device strings are read, so a comma-separated list can be added here later.
    """
    spec = str(spec).strip().lower()
    if ',' in spec:
        raise ValueError(f'--ctx {spec!r}: one device expected here; parse_ctxs reads lists.')
    if spec == 'auto':
        return mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu()
    kind, _, index = spec.partition(':')
    if kind not in ('cpu', 'gpu') or (index and not index.isdigit()):
        raise ValueError(f'--ctx {spec!r} is not a device; expected auto, cpu, cpu:N, gpu or gpu:N.')
    i = int(index or 0)
    if kind == 'cpu':
        return mx.cpu(i)
    n = mx.context.num_gpus()
    if i >= n:
        have = f'{n} GPU(s) (gpu:0 to gpu:{n - 1})' if n else 'no GPU (or this MXNet build has no CUDA)'
        raise ValueError(f'--ctx {spec}: MXNet sees {have}. Use --ctx cpu or --ctx auto.')
    return mx.gpu(i)


def parse_ctxs(spec):
    """Turn 'cpu:0,cpu:1' (or one device, as for :func:`parse_ctx`) into a list of ``mx.Context``."""
    ctxs = [parse_ctx(part) for part in str(spec).split(',')]
    if len(set(ctxs)) != len(ctxs):
        raise ValueError(f'--ctx {spec!r} repeats a device; each device may appear once.')
    return ctxs


def default_out_dir(config, root='runs'):
    """runs/<date-time>-<norm>[-k]: a fresh folder name that no earlier run used."""
    base = os.path.join(root, time.strftime('%Y%m%d-%H%M%S') + f'-{config.norm}')
    path, k = base, 1
    while os.path.exists(path):
        path, k = f'{base}-{k}', k + 1
    return path
