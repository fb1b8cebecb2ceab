"""Fashion-MNIST found, verified and fed at the speed of the model (see data/README.md)."""
from .fashion_mnist import (CLASS_NAMES, FILES, MIRRORS, SHA1, DataNotFoundError, DataSource, FashionMNIST,
                            download_fashion_mnist, load_fashion_mnist, named_folder, read_folder,
                            search_places)
from .feed import DataIter, gluon_dataloader, to_nd
from .idx import DataError, write_synthetic_fashion_mnist

TRAIN_MEAN, TRAIN_STD = 0.2860, 0.3530   # of the train split's pixels scaled to [0, 1]

__all__ = ['CLASS_NAMES', 'FILES', 'MIRRORS', 'SHA1', 'TRAIN_MEAN', 'TRAIN_STD', 'DataError', 'DataIter',
           'DataNotFoundError', 'DataSource', 'FashionMNIST', 'download_fashion_mnist', 'gluon_dataloader',
           'load_fashion_mnist', 'named_folder', 'read_folder', 'search_places', 'to_nd',
           'write_synthetic_fashion_mnist']
