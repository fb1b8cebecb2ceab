"""Feeding the network: the whole split as one array on the device, batches as slices of it.

The articles' ``DataLoader`` with ``transforms.ToTensor`` converts every example in Python, which costs
more than the model's step. Here the conversion happens once per split and an epoch is one permutation
(one ``take``) followed by cheap slices. ``gluon_dataloader`` keeps the articles' path for comparison.
"""
import numbers

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

ORDERS = ('random', 'sequential', 'by_class')


def to_nd(images, labels, ctx=None, *, mean=None, std=None):
    """(X, y) on ``ctx``: X float32 (N, 1, 28, 28) scaled to [0, 1] as ``ToTensor`` does, y float32 (N,).

    With ``mean`` and ``std`` (e.g. the train split's 0.2860 and 0.3530), X is standardised after scaling.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f'images must be uint8 of shape (N, H, W); got {images.dtype} {images.shape}.')
    if labels.shape != images.shape[:1]:
        raise ValueError(f'labels must have shape ({len(images)},) to match the images; got {labels.shape}.')
    if (mean is None) != (std is None):
        raise ValueError('give both mean and std to standardise, or neither.')
    if std is not None and not std > 0:
        raise ValueError(f'std must be > 0; got {std!r}.')
    ctx = ctx or mx.cpu()
    X = nd.array(images[:, None], ctx=ctx, dtype='uint8').astype('float32') / 255   # bytes travel, not floats
    if mean is not None:
        X = (X - mean) / std
    return X, nd.array(labels, ctx=ctx, dtype='float32')


class DataIter:
    """Batches of (X, y) NDArrays, reshuffled every epoch from a seeded generator.

    ``order``: 'random' (a new permutation per epoch, the same for the same seed and epoch), 'sequential'
    (as stored) or 'by_class' (all examples of class 0, then class 1, ...: the unshuffled, sorted order
    that stops a network from learning). ``drop_last`` drops the last, smaller batch (for training);
    kept by default so that evaluation counts every example. ``len()`` is the number of batches per epoch.
    """

    def __init__(self, X, y, batch_size, *, shuffle=True, seed=0, drop_last=False, order=None):
        X = X if isinstance(X, nd.NDArray) else nd.array(X)
        y = y if isinstance(y, nd.NDArray) else nd.array(y)
        if X.shape[:1] != y.shape[:1] or X.shape[0] == 0:
            raise ValueError(f'X and y must hold the same, non-zero number of examples; got X {X.shape}, '
                             f'y {y.shape}.')
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive integer; got {batch_size!r}.')
        order = order or ('random' if shuffle else 'sequential')
        if order not in ORDERS:
            raise ValueError(f'order must be one of {ORDERS}; got {order!r}.')
        if drop_last and batch_size > X.shape[0]:
            raise ValueError(f'batch_size {batch_size} > {X.shape[0]} examples with drop_last: no batch at all.')
        self.X, self.y, self.batch_size = X, y, int(batch_size)
        self.seed, self.drop_last, self.order = seed, drop_last, order
        self._by_class = None

    @property
    def num_examples(self):
        return self.X.shape[0]

    def __len__(self):
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def indices(self, epoch):
        """The order of the examples in ``epoch`` (numpy int array); a function of (seed, epoch) only."""
        if self.order == 'random':
            return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        if self.order == 'by_class':
            if self._by_class is None:
                self._by_class = np.argsort(self.y.asnumpy(), kind='stable')
            return self._by_class
        return np.arange(self.num_examples)

    def epoch(self, epoch):
        """Yield the batches of epoch ``epoch`` (0-based)."""
        X, y = self.X, self.y
        if self.order != 'sequential':
            idx = nd.array(self.indices(epoch), ctx=X.context, dtype='int64')
            # One gather into new arrays (batches of an earlier epoch may still be held); the batches
            # below are views of it.
            X, y = nd.take(self.X, idx), nd.take(self.y, idx)
        stop = len(self) * self.batch_size if self.drop_last else self.num_examples
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, stop)
            yield X[start:end], y[start:end]

    def __iter__(self):
        return self.epoch(0)


def gluon_dataloader(images, labels, batch_size, *, shuffle=True, num_workers=0):
    """The articles' pipeline: an ArrayDataset over the uint8 images, ``ToTensor`` per example, DataLoader."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f'images must be uint8 of shape (N, H, W); got {images.dtype} {images.shape}.')
    dataset = gluon.data.ArrayDataset(nd.array(images[..., None], dtype='uint8'),   # HWC, as ToTensor wants
                                      np.asarray(labels).astype('float32'))
    transform = gluon.data.vision.transforms.ToTensor()
    return gluon.data.DataLoader(dataset.transform_first(transform), batch_size, shuffle=shuffle,
                                 num_workers=num_workers)
