"""Input checks shared by the normalization functions: fail early, in words, before any state moves."""
import numpy as np
from mxnet import nd

_LAYOUTS = {2: '(N, C)', 3: '(N, C, L)', 4: '(N, C, H, W)', 5: '(N, C, D, H, W)'}


def check_array(X, name='X', ndims=(2, 3, 4, 5)):
    """Check that ``X`` is a floating-point NDArray with a supported number of axes."""
    if not isinstance(X, nd.NDArray):
        raise TypeError(f"{name} must be an mxnet NDArray; got {type(X).__name__}. "
                        f"Convert with mxnet.nd.array({name}).")
    if not np.issubdtype(np.dtype(X.dtype), np.floating):
        raise TypeError(f"{name} has dtype {np.dtype(X.dtype).name}; normalization needs floating point. "
                        f"Convert it first, e.g. {name}.astype('float32').")
    if X.ndim not in ndims:
        expected = ', '.join(_LAYOUTS.get(n, f'{n}-D') for n in ndims)
        raise ValueError(f"{name} has shape {X.shape} ({X.ndim}-D); expected one of {expected}.")


def check_channel_vector(v, name, channels):
    """Check that a per-channel parameter ``v`` is None or an NDArray of shape (channels,)."""
    if v is None:
        return
    if not isinstance(v, nd.NDArray):
        raise TypeError(f"{name} must be an mxnet NDArray of shape ({channels},); got {type(v).__name__}.")
    if v.shape != (channels,):
        raise ValueError(f"{name} has shape {v.shape}, but the input has {channels} channels: "
                         f"expected shape ({channels},).")


def check_eps(eps):
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (it keeps the division finite); got {eps}.")


def check_momentum(momentum):
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] (new = momentum * old + (1 - momentum) * batch); "
                         f"got {momentum}.")


def check_axis(axis, ndim):
    """Return ``axis`` as a non-negative index into ``ndim`` axes."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-D input.")
    return axis % ndim


def check_batch_norm(X, gamma, beta, moving_mean, moving_var, training, momentum, eps, axis=1):
    """Validate the arguments of a batch norm; return (channel axis, C, m values per channel)."""
    check_array(X)
    axis = check_axis(axis, X.ndim)
    C = X.shape[axis]
    for name, v in (('gamma', gamma), ('beta', beta), ('moving_mean', moving_mean), ('moving_var', moving_var)):
        check_channel_vector(v, name, C)
    check_momentum(momentum)
    check_eps(eps)
    if X.size == 0:
        raise ValueError(f"X has shape {X.shape}: a batch with no values has no statistics to normalize with. "
                         f"Skip empty batches (e.g. drop a short last batch).")
    m = X.size // C
    if training and m < 2:
        raise ValueError(f"a training batch of shape {X.shape} has {m} value per channel, so its variance "
                         f"is undefined (zero) and the output would be just beta. Use inference mode "
                         f"(training=False, or call outside autograd.record()) or a larger batch.")
    return axis, C, m
