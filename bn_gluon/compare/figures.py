"""Deprecated: the comparison's figures are drawn by :mod:`bn_gluon.plots`, the package's one figure module.

Old name -> new: ``draw_lockstep`` / ``plot_lockstep`` -> ``draw_twin_training`` / ``plot_twin_training``,
``draw_runs`` / ``plot_runs`` -> ``draw_curves`` / ``plot_curves``; ``draw_speed`` and ``plot_speed`` keep
their names. Importing this module gives a FutureWarning; it goes in the next release.
"""
import warnings

from ..plots import COLORS, LABELS, draw_speed, plot_speed  # noqa: F401
from ..plots import draw_curves as draw_runs  # noqa: F401
from ..plots import draw_twin_training as draw_lockstep  # noqa: F401
from ..plots import plot_curves as plot_runs  # noqa: F401
from ..plots import plot_twin_training as plot_lockstep  # noqa: F401

warnings.warn('bn_gluon.compare.figures is now bn_gluon.plots (draw_lockstep -> draw_twin_training, draw_runs '
              '-> draw_curves); the old module goes in the next release.', FutureWarning, stacklevel=2)
