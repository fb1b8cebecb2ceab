"""``LRN``: Local Response Normalization as a Gluon layer (no parameters, no state).

Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NIPS 2012. The math and its two conventions for alpha are in :mod:`bn_gluon.functional.lrn`.
"""
from mxnet import nd
from mxnet.gluon import HybridBlock

from ..functional._checks import check_array
from ..functional.lrn import NDIMS, check_lrn, lrn


class LRN(HybridBlock):
    """Local response normalization across channels (AlexNet) or within each channel.

    ``LRN(n=5, k=2, alpha=1e-4, beta=0.75)`` is AlexNet's layer, placed after the ReLU of a convolution.
    ``LRN(n, k, alpha, beta, convention='mxnet')`` equals ``nd.LRN(x, nsize=n, knorm=k, alpha=alpha,
    beta=beta)``.

    Parameters
    ----------
    n : int, default 5
        Neighbourhood size: ``n // 2`` channels (or pixels) to each side.
    k : float, default 2.0
        Added to the weighted sum of squares.
    alpha : float, default 1e-4
        Weight of the sum (divided by n under ``convention='mxnet'``).
    beta : float, default 0.75
        Exponent of the divisor.
    region : {'inter', 'intra'}, default 'inter'
        Neighbours across channels, or in a square around the pixel within its channel.
    convention : {'alexnet', 'mxnet'}, default 'alexnet'
        How ``alpha`` scales the sum: as in the paper, or as ``nd.LRN`` (``alpha / n``).
    """

    def __init__(self, n=5, k=2.0, alpha=1e-4, beta=0.75, region='inter', convention='alexnet', **kwargs):
        super().__init__(**kwargs)
        check_lrn(n, k, alpha, beta, region, convention)
        self._kwargs = dict(n=n, k=k, alpha=alpha, beta=beta, region=region, convention=convention)

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray) and self._active:  # a hybridized graph sees Symbols: check the real input
            check_array(x, ndims=NDIMS[self._kwargs['region']])
        return super().forward(x, *args)

    def hybrid_forward(self, F, x):
        return lrn(x, **self._kwargs)

    def __repr__(self):
        args = ', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())
        return f'{self.__class__.__name__}({args})'
