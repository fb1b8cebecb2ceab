"""Command-line flags built from ``TrainConfig``: one builder for ``train.py`` and ``python -m bn_gluon.compare``.

Each field becomes ``--field-name`` with the help, choices and metavar of its metadata; a bool field
gets ``--name`` and ``--no-name``. No flag has an argparse default: ``parse_args`` returns only the
flags given, so a caller can tell an explicit value from a default (resuming a run needs that) and
takes the rest from ``TrainConfig`` or from its own ``defaults``.
"""
import argparse
import dataclasses
import typing

from .config import TrainConfig

TYPES = {'int': int, 'float': float, 'str': str}   # annotations read as strings


def add_config_flags(parser, names=None, defaults=None):
    """Add one flag per ``TrainConfig`` field to ``parser``; return the parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    names : sequence of str or None
        The fields to add, in this order; None: every field.
    defaults : dict or None
        field -> the default the caller applies instead of TrainConfig's, shown in the help.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(names or ()) - set(fields))
    if unknown:
        raise ValueError(f'not TrainConfig fields: {unknown}; the fields are {sorted(fields)}.')
    defaults = defaults or {}
    for name in names or fields:
        f, flag = fields[name], '--' + name.replace('_', '-')
        meta, default = dict(f.metadata), defaults.get(name, f.default)
        if f.type in (bool, 'bool'):
            group = parser.add_mutually_exclusive_group()
            group.add_argument(flag, dest=name, action='store_true', default=argparse.SUPPRESS,
                               help=f"{meta['help']} (default: {'on' if default else 'off'})")
            group.add_argument('--no-' + flag[2:], dest=name, action='store_false', default=argparse.SUPPRESS,
                               help=f'turn {flag} off')
        else:
            kind = typing.get_args(f.type)[0] if typing.get_args(f.type) else f.type   # Optional[X] -> X
            meta['help'] += f' (default: {default})'
            parser.add_argument(flag, dest=name, type=TYPES.get(kind, kind), default=argparse.SUPPRESS, **meta)
    return parser
