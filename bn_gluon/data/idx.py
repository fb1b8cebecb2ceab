"""The IDX format of (Fashion-)MNIST, read strictly and written for tests and demos.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values. Fashion-MNIST uses unsigned bytes (type 0x08): images
have magic 2051 = 0x00000803 and dimensions (N, 28, 28), labels magic 2049 = 0x00000801 and (N,).
"""
import gzip
import os
import zlib

import numpy as np

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
NUM_CLASSES, SIDE = 10, 28


class DataError(ValueError):
    """A data file that is missing, truncated, corrupt or not what it claims to be."""


def decompress(raw, name):
    """The content of a file that may or may not be gzipped (gzip starts with the bytes 1f 8b)."""
    if raw[:2] != b'\x1f\x8b':
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f'{name}: not a valid gzip file ({e}); delete it and get it again.') from None


def parse_idx(content, name, magic):
    """The array in IDX ``content`` (bytes), after checking header and size; ``name`` is for errors."""
    expected_dims = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}[magic]
    header = 4 + 4 * expected_dims
    if len(content) < header:
        raise DataError(f'{name}: {len(content)} bytes, shorter than the {header}-byte IDX header.')
    found = int.from_bytes(content[:4], 'big')
    if found != magic:
        kind = 'images' if magic == IMAGES_MAGIC else 'labels'
        raise DataError(f'{name}: magic number {found}, expected {magic} (IDX {kind}, unsigned bytes); '
                        'is it the right file?')
    dims = tuple(int.from_bytes(content[4 + 4 * i:8 + 4 * i], 'big') for i in range(expected_dims))
    if magic == IMAGES_MAGIC and dims[1:] != (SIDE, SIDE):
        raise DataError(f'{name}: images of {dims[1]}x{dims[2]} pixels, expected {SIDE}x{SIDE}.')
    size = int(np.prod(dims))
    payload = len(content) - header
    if payload != size:
        what = 'truncated' if payload < size else 'too long'
        raise DataError(f'{name}: {what}: the header announces {dims} = {size} values, the file holds {payload}.')
    values = np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims).copy()
    if magic == LABELS_MAGIC and values.size and values.max() >= NUM_CLASSES:
        i = int(np.argmax(values >= NUM_CLASSES))
        raise DataError(f'{name}: label {values[i]} at index {i}, expected 0-{NUM_CLASSES - 1}.')
    return values


def check_pair(images, labels, images_name, labels_name):
    if len(images) != len(labels):
        raise DataError(f'{images_name} holds {len(images)} images but {labels_name} {len(labels)} labels; '
                        'they must pair one to one.')


def idx_bytes(array, magic):
    """``array`` (uint8) as IDX content with the given magic number."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
    return header + array.tobytes()


def write_idx_gz(path, array, magic):
    """Write ``array`` as a gzipped IDX file; byte-identical for identical input (no timestamp)."""
    with open(path, 'wb') as f:
        f.write(gzip.compress(idx_bytes(array, magic), mtime=0))


def synthetic_split(n, rng, templates):
    """``n`` images and labels: each class a fixed blocky template, plus noise and a random shift."""
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)
    noise = rng.normal(0, 40, size=(n, SIDE, SIDE))
    shifts = rng.integers(-2, 3, size=(n, 2))
    images = np.empty((n, SIDE, SIDE), np.uint8)
    for i in range(n):
        base = np.roll(templates[labels[i]], tuple(shifts[i]), axis=(0, 1))
        images[i] = np.clip(base + noise[i], 0, 255)
    return images, labels


def write_synthetic_fashion_mnist(directory, n_train=600, n_test=100, seed=0):
    """Write four small, valid, learnable Fashion-MNIST-format files into ``directory``; return it.

    Every class is a different 7x7 pattern of on/off blocks scaled to 28x28, so a small network learns
    it in a few steps; the files pass every structural check but not the SHA-1 of the real data, so load
    them with ``verify=False``.
    """
    for name, n in (('n_train', n_train), ('n_test', n_test)):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f'{name} must be a positive integer; got {n!r}.')
    from .fashion_mnist import FILES   # the file names belong to the data set
    rng = np.random.default_rng(seed)
    blocks = rng.random((NUM_CLASSES, 7, 7)) < 0.5
    templates = np.kron(blocks, np.ones((4, 4))) * 200.0
    os.makedirs(directory, exist_ok=True)
    for split, n in (('train', n_train), ('test', n_test)):
        images, labels = synthetic_split(n, rng, templates)
        write_idx_gz(os.path.join(directory, FILES[f'{split}_images'] + '.gz'), images, IMAGES_MAGIC)
        write_idx_gz(os.path.join(directory, FILES[f'{split}_labels'] + '.gz'), labels, LABELS_MAGIC)
    return directory
