"""Layer, instance and group normalization: statistics of one example, never of the batch.

Ba, Kiros and Hinton, "Layer Normalization", 2016; Ulyanov, Vedaldi and Lempitsky, "Instance
Normalization: The Missing Ingredient for Fast Stylization", 2016; Wu and He, "Group Normalization",
ECCV 2018. The three are one family: each standardizes a set of values that belongs to a single
example, then scales and shifts,

    x_hat = (x - mean) / sqrt(var + eps)      # mean and biased variance of the set
    y = gamma * x_hat + beta

so nothing depends on the batch size, training and inference compute the same thing, and there are no
running statistics. For an (N, C, H, W) input the sets are:

    group norm     the C channels split into G groups: each (n, g) has C/G * H * W values
    instance norm  G = C: each (n, c) has its H * W values
    layer norm     G = 1: each n has all C * H * W values (the paper's choice for conv layers)

Like MXNet 1.9.1's ``gluon.nn`` layers, which these functions reproduce:

- ``layer_norm`` normalizes over one axis, ``axis`` (default -1: the features of an (N, D) input);
  over all of (C, H, W) it is ``group_norm`` with ``num_groups=1``.
- ``group_norm`` has one gamma and beta per group, shape (G,); the paper has one per channel.
- ``instance_norm`` has one gamma and beta per channel, shape (C,).

Every function also accepts Symbols (then without the checks, which need shapes), so the layers
hybridize with the same body.
"""
import numbers

from mxnet import nd, symbol

from ._checks import check_array, check_axis, check_channel_vector, check_eps
from ._shapes import tie_shape


def layer_norm(X, gamma, beta, *, axis=-1, eps=1e-5):
    """Standardize ``X`` along ``axis`` for every position of the other axes, then scale and shift.

    Parameters
    ----------
    X : NDArray or Symbol
        Floating point, 2-D to 5-D.
    gamma, beta : NDArray or Symbol of shape (X.shape[axis],), or None
        Scale and shift; None means 1 and 0.
    axis : int
        The axis whose values are standardized together.
    eps : float
        Added to the variance before the square root.
    """
    F = symbol if isinstance(X, symbol.Symbol) else nd  # nd: the checks turn anything else away
    if F is nd:
        axis = check_layer_norm(X, gamma, beta, axis, eps) - X.ndim  # negative: the same for any ndim
    last = axis == -1
    if not last:  # gamma (D,) broadcasts along the last axis, so the normalized axis goes there
        X = F.swapaxes(X, dim1=axis, dim2=-1)
    if F is symbol:
        row = F.slice_axis(F.reshape(X, shape=(-1, 0), reverse=True), axis=0, begin=0, end=1)  # (1, D)
        gamma, beta = tie_shape(F, (gamma, beta), F.reshape(row, shape=(-1,)))
    Y = _scale_shift(F, _standardize(F, X, -1, eps), gamma, beta)   # (N, ..., D): stats over D
    return Y if last else F.swapaxes(Y, dim1=axis, dim2=-1)


def instance_norm(X, gamma, beta, *, axis=1, eps=1e-5):
    """Standardize every channel of every example over its own positions, then scale and shift.

    Parameters
    ----------
    X : NDArray or Symbol
        (N, C, L), (N, C, H, W) or (N, C, D, H, W), floating point.
    gamma, beta : NDArray or Symbol of shape (C,), or None
        Per-channel scale and shift; None means 1 and 0.
    axis : int
        The channel axis; the statistics run over every axis but 0 and this one.
    eps : float
        Added to the variance before the square root.
    """
    F = symbol if isinstance(X, symbol.Symbol) else nd
    if F is nd:
        axis = check_instance_norm(X, gamma, beta, axis, eps)
    if axis != 1:  # channels to axis 1, as gluon.nn.InstanceNorm does
        X = F.swapaxes(X, dim1=1, dim2=axis)
    X3 = F.reshape(X, shape=(0, 0, -1))                                # (N, C, H, W) -> (N, C, H*W)
    if F is symbol:
        column = F.slice_axis(F.slice_axis(X3, axis=0, begin=0, end=1), axis=2, begin=0, end=1)  # (1, C, 1)
        gamma, beta = tie_shape(F, (gamma, beta), F.reshape(column, shape=(-1,)))
    Y = _scale_shift(F, _standardize(F, X3, 2, eps), gamma, beta, shape=(1, -1, 1))  # stats per (n, c)
    Y = F.reshape_like(Y, X)                                           # back to (N, C, H, W)
    return Y if axis == 1 else F.swapaxes(Y, dim1=1, dim2=axis)


def group_norm(X, gamma, beta, *, num_groups=1, eps=1e-5):
    """Standardize every group of ``C / num_groups`` channels of every example, then scale and shift.

    Parameters
    ----------
    X : NDArray or Symbol
        (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), floating point; C divisible by num_groups.
    gamma, beta : NDArray or Symbol of shape (num_groups,), or None
        Per-group scale and shift (MXNet 1.x's shape); None means 1 and 0.
    num_groups : int
        G; 1 is layer norm over (C, H, W), C is instance norm.
    eps : float
        Added to the variance before the square root.
    """
    F = symbol if isinstance(X, symbol.Symbol) else nd
    if F is nd:
        check_group_norm(X, gamma, beta, num_groups, eps)
    G = num_groups
    Xg = F.reshape(X, shape=(0, G, -1))                                # (N, C, H, W) -> (N, G, C/G*H*W)
    Y = _scale_shift(F, _standardize(F, Xg, 2, eps), gamma, beta, shape=(1, G, 1))  # stats per (n, g)
    return F.reshape_like(Y, X)                                        # back to (N, C, H, W)


def _standardize(F, X, axis, eps):
    """``(X - mean) / sqrt(var + eps)`` with mean and biased variance along ``axis``."""
    mean = F.mean(X, axis=axis, keepdims=True)
    centered = F.broadcast_sub(X, mean)
    var = F.mean(F.square(centered), axis=axis, keepdims=True)  # two passes: no E[x^2] - E[x]^2 cancellation
    return F.broadcast_div(centered, F.sqrt(var + eps))


def _scale_shift(F, X_hat, gamma, beta, shape=None):
    Y = X_hat
    if gamma is not None:
        Y = F.broadcast_mul(Y, gamma if shape is None else F.reshape(gamma, shape=shape))
    if beta is not None:
        Y = F.broadcast_add(Y, beta if shape is None else F.reshape(beta, shape=shape))
    return Y


def check_layer_norm(X, gamma, beta, axis, eps):
    """Validate the arguments of :func:`layer_norm`; return the axis as a non-negative index."""
    check_array(X)
    check_eps(eps)
    axis = check_axis(axis, X.ndim)
    D = X.shape[axis]
    for name, v in (('gamma', gamma), ('beta', beta)):
        check_channel_vector(v, name, D)
    _check_set_size(X, D, f"layer norm along axis {axis}")
    return axis


def check_instance_norm(X, gamma, beta, axis, eps):
    """Validate the arguments of :func:`instance_norm`; return the channel axis as a non-negative index."""
    check_array(X, ndims=(3, 4, 5))
    check_eps(eps)
    axis = check_axis(axis, X.ndim)
    if axis == 0:
        raise ValueError("axis 0 is the batch axis; instance norm needs the channel axis (1 for NCHW).")
    C = X.shape[axis]
    for name, v in (('gamma', gamma), ('beta', beta)):
        check_channel_vector(v, name, C)
    _check_set_size(X, X.size // (X.shape[0] * C) if X.size else 0, "instance norm")
    return axis


def check_group_norm(X, gamma, beta, num_groups, eps):
    """Validate the arguments of :func:`group_norm`."""
    check_array(X)
    check_num_groups(num_groups)
    check_eps(eps)
    C = X.shape[1]
    if C % num_groups:
        valid = [g for g in range(1, C + 1) if C % g == 0]
        raise ValueError(f"group norm cannot split C={C} channels (input shape {X.shape}) into "
                         f"num_groups={num_groups} equal groups; num_groups must divide {C}: one of {valid}.")
    for name, v in (('gamma', gamma), ('beta', beta)):
        if v is None:
            continue
        if not isinstance(v, nd.NDArray):
            raise TypeError(f"{name} must be an mxnet NDArray of shape ({num_groups},); got {type(v).__name__}.")
        if v.shape != (num_groups,):
            raise ValueError(f"{name} has shape {v.shape}, but num_groups={num_groups}: expected shape "
                             f"({num_groups},), one value per group as in gluon.nn.GroupNorm.")
    _check_set_size(X, X.size // (X.shape[0] * num_groups) if X.size else 0,
                    f"group norm with num_groups={num_groups}")


def check_num_groups(num_groups):
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1:
        raise ValueError(f"num_groups must be an integer >= 1; got {num_groups!r}.")


def _check_set_size(X, m, what):
    if m < 2:
        raise ValueError(f"{what} of an input of shape {X.shape} standardizes sets of {m} value(s): the "
                         f"output would be just beta. Normalize over more values (another axis or fewer "
                         f"groups), or leave this layer out.")
