"""The normalizations the LeNet takes in its BN slots, by name: the read-only table behind ``--norm``.

Each entry is a :class:`Norm`: a layer (a HybridBlock class, or a small named function where the
layer needs something worked out from the channel count) and its keyword arguments. The LeNet calls
``layer(in_channels=C, **kwargs)`` for each slot, so ``lenet(norm='group')`` and
``LeNet(norm_layer=make_group_norm)`` build the same network. A normalization that is not in the table
is passed in directly, as gluoncv's models take it: ``LeNet(norm_layer=..., norm_kwargs={...})``.
"""
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple, Optional

from mxnet.gluon import nn

from ..functional import RenormSchedule
from ..layers import LRN, BatchNorm, BatchRenorm, GroupNorm, InstanceNorm, SyncBatchNorm

# The paper's renorm schedule (5k steps of plain BN, rmax 3 by 40k, dmax 5 by 25k) shrunk to our runs,
# which take thousands of steps rather than Inception's hundreds of thousands: the default run (8 epochs at
# batch 128) has 3,752, so plain BN for the first 100 (the moving averages, momentum 0.9, have settled by
# then), rmax 3 after about a quarter and dmax 5 after about a sixth. Runs with small batches reach the
# full clips within an epoch.
LENET_RENORM_SCHEDULE = RenormSchedule(rmax=3, dmax=5, warmup_steps=100, rmax_steps=1000, dmax_steps=600)


def group_count(channels):
    """Groups of at least 4 channels, with as few channels as that allows: 20 -> 5, 50 -> 10, 128 -> 32.

    Wu and He use G = 32 (or groups of 16 channels); LeNet's 20 and 50 channels allow neither, and
    groups of 4-5 channels sit between instance norm (1) and layer norm (all).
    """
    size = next((s for s in range(4, channels + 1) if channels % s == 0), channels)
    return channels // size


def make_group_norm(in_channels, **kwargs):
    """``GroupNorm`` with :func:`group_count` groups: the number of groups depends on the channels."""
    return GroupNorm(num_groups=group_count(in_channels), **kwargs)


def make_layer_norm(in_channels, **kwargs):
    """Layer norm of a feature map: per example over all of (C, H, W), i.e. ``GroupNorm`` with one group.

    gamma and beta are one value each, whatever ``in_channels`` is.
    """
    return GroupNorm(num_groups=1, **kwargs)


def make_lrn(in_channels, **kwargs):
    """``LRN``, which holds no parameters and so needs no channel count."""
    return LRN(**kwargs)


class Norm(NamedTuple):
    """One entry of :data:`NORMS`: ``layer(in_channels=C, **kwargs)`` builds the block; layer None: none."""

    layer: Optional[Callable]
    kwargs: Mapping


def _entry(layer, **kwargs):
    return Norm(layer, MappingProxyType(kwargs))


NORMS = MappingProxyType({
    'scratch': _entry(BatchNorm),
    'gluon': _entry(nn.BatchNorm),
    'none': _entry(None),
    # Batch norm corrected towards its moving statistics (Ioffe 2017), for small or non-i.i.d. batches.
    'renorm': _entry(BatchRenorm, schedule=LENET_RENORM_SCHEDULE),
    'layer': _entry(make_layer_norm),
    'group': _entry(make_group_norm),
    # Per example and channel over (H, W); gamma learned, which gluon's default (scale=False) would not.
    'instance': _entry(InstanceNorm, scale=True),
    # AlexNet's constants; here before the ReLU like every norm of the LeNet (AlexNet puts it after).
    'lrn': _entry(make_lrn, n=5, k=2.0, alpha=1e-4, beta=0.75),
    # Batch norm over the whole batch when it is split across devices (--ctx cpu:0,cpu:1); on one device
    # it is 'scratch'. It exchanges statistics in Python, so it runs imperatively (never hybridized).
    'sync': _entry(SyncBatchNorm),
})
IMPERATIVE_NORMS = ('sync',)          # cannot sit inside a hybridized graph
RAW_NORMS = ('scratch', 'none')       # the raw network writes the article's batch norm out by hand
NEEDS_POSITIONS = ('instance',)       # statistics over (H, W): nothing to average after the dense layer


def get_norm(name, dense_norm=False):
    """The :class:`Norm` called ``name`` in ``NORMS``; ``dense_norm``: it must also fit (N, 128)."""
    if name not in NORMS:
        raise ValueError(f'unknown norm {name!r}; the names are {", ".join(sorted(NORMS))}. Another '
                         f'normalization goes in as a class: LeNet(norm_layer=..., norm_kwargs={{...}}).')
    if dense_norm and name in NEEDS_POSITIONS:
        raise ValueError(f"norm {name!r} normalizes over the positions (H, W) of a feature map, and the dense "
                         f"layer's (N, 128) output has none; turn dense_norm off (--no-dense-norm) or use "
                         f"another norm.")
    return NORMS[name]
