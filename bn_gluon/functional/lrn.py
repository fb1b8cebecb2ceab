"""Local Response Normalization (LRN), the lateral inhibition of AlexNet, as a pure function.

Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NIPS 2012, section 3.3. Each activation is divided by a power of the energy of its neighbours, so a strong
response damps the weak ones around it. Inter-channel LRN (the paper's) takes the neighbours at the same
position in the nearby channels::

    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n//2)}^{min(C - 1, i + n//2)} a[j] ** 2) ** beta

Intra-channel LRN takes them inside the channel instead: the square of side ``2 * (n//2) + 1`` centred
on the pixel, cut at the borders, which is (n + 1) x (n + 1) for an even n such as n = 2 (3 x 3).
Both windows hold ``2 * (n//2) + 1`` values along each axis: n + 1 for an even n, n for an odd one
(AlexNet's n = 5 sums 5 channels).

Two conventions for alpha:

- ``'alexnet'``: the paper's formula above.
- ``'mxnet'``: ``nd.LRN`` (like Caffe) multiplies the sum by ``alpha / n``, so its alpha is n times the
  paper's. MXNet's CPU kernel refuses an even n and its MKL-DNN kernel sums n - 1 channels for one, so
  this convention takes odd n only; for odd n both conventions sum the same n channels.

LRN has no parameters and no state; AlexNet uses k = 2, n = 5, alpha = 1e-4, beta = 0.75. Every sum is a
zero-padded sum pooling over the squares, and the function also accepts Symbols, so the LRN layer
hybridizes with this same body.
"""
import numbers

from mxnet import nd, symbol

from ._checks import check_array

REGIONS = ('inter', 'intra')
CONVENTIONS = ('alexnet', 'mxnet')
NDIMS = {'inter': (2, 3, 4, 5), 'intra': (4,)}  # input ranks each region accepts


def lrn(X, n=5, k=2.0, alpha=1e-4, beta=0.75, *, region='inter', convention='alexnet'):
    """Divide every activation by ``(k + alpha * sum of its neighbours' squares) ** beta``.

    Parameters
    ----------
    X : NDArray or Symbol
        'inter': (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); 'intra': (N, C, H, W).
    n : int
        Neighbourhood size: the window reaches ``n // 2`` channels (or pixels) to each side.
    k : float
        Added to the sum; keeps the division finite.
    alpha : float
        Weight of the sum of squares (divided by n under ``convention='mxnet'``).
    beta : float
        Exponent of the divisor.
    region : {'inter', 'intra'}
        Neighbours across channels at one position, or within one channel around a position.
    convention : {'alexnet', 'mxnet'}
        ``alpha`` as in the paper, or as in ``nd.LRN`` (``alpha / n``; odd n, 'inter' only).
    """
    check_lrn(n, k, alpha, beta, region, convention)
    F = symbol if isinstance(X, symbol.Symbol) else nd  # nd: the checks turn anything else away
    if F is nd:
        check_array(X, ndims=NDIMS[region])
    half = n // 2
    width = 2 * half + 1
    squares = F.square(X)
    if region == 'inter':
        S = F.expand_dims(F.reshape(squares, shape=(0, 0, -1)), axis=1)  # (N, C, H, W) -> (N, 1, C, H*W)
        # Zero padding: channels beyond the first and last add nothing, the paper's max(0, .) / min(C-1, .)
        S = F.Pooling(S, kernel=(width, 1), pad=(half, 0), stride=(1, 1), pool_type='sum')
    else:
        S = F.expand_dims(F.reshape(squares, shape=(-3, 0, 0)), axis=1)  # (N, C, H, W) -> (N*C, 1, H, W)
        S = F.Pooling(S, kernel=(width, width), pad=(half, half), stride=(1, 1), pool_type='sum')
    S = F.reshape_like(S, X)                                             # back to (N, C, H, W)
    scale = alpha / n if convention == 'mxnet' else alpha
    return X / (k + scale * S) ** beta


def check_lrn(n, k, alpha, beta, region='inter', convention='alexnet'):
    """Validate the hyperparameters of :func:`lrn`."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}; got {region!r}.")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}.")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n (the neighbourhood size) must be an integer >= 1; got {n!r}.")
    for name, v in (('k', k), ('alpha', alpha), ('beta', beta)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
            raise ValueError(f"{name} must be a real number >= 0 (the divisor's base must not go "
                             f"negative); got {v!r}.")
    if convention == 'mxnet':
        if region == 'intra':
            raise ValueError("nd.LRN has no intra-channel mode, so convention='mxnet' applies to "
                             "region='inter' only; use convention='alexnet' for region='intra'.")
        if n % 2 == 0:
            raise ValueError(f"convention='mxnet' needs an odd n (nd.LRN's CPU kernel rejects even sizes); "
                             f"got n={n}. Use n={n + 1}, or convention='alexnet', whose window for an "
                             f"even n is n + 1 wide.")
