"""Fashion-MNIST: find the four IDX files, verify them, download them if they are nowhere.

The same data ships in three wrappings: Zalando's original .gz files, the Debian package
``dataset-fashion-mnist`` (re-compressed) and MXNet's mirror (re-compressed again). Their gzip bytes
differ, their content does not, so every copy is checked by the SHA-1 of the decompressed content.
"""
import collections
import hashlib
import os
import tempfile
import urllib.request
import warnings
from pathlib import Path

from tqdm import tqdm

from .idx import IMAGES_MAGIC, LABELS_MAGIC, DataError, check_pair, decompress, parse_idx

CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
               'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')

FILES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}
# SHA-1 of the decompressed IDX content, the same for every distribution of the data set.
SHA1 = {
    'train_images': 'b9bd999c0106c9b8b4b0cefce58c9a6060f27095',
    'train_labels': '4bccf37222e01638381eaa326bf730337a597267',
    'test_images': '880056926db704f9f713097915f99da346f5b1d1',
    'test_labels': '958122e8b4b97fd4e71eca2d08ef754ed77c3ad9',
}
MIRRORS = (
    'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',                      # Zalando's own
    'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/',
    'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/dataset/fashion-mnist/',
)
PROJECT_DIR = Path(__file__).resolve().parents[2] / 'data' / 'fashion-mnist'
SYSTEM_DIR = Path('/usr/share/datasets/fashion-mnist')
ENV_VAR = 'BN_GLUON_DATA'

FashionMNIST = collections.namedtuple('FashionMNIST', 'train_images train_labels test_images test_labels')
FashionMNIST.__doc__ = 'Fashion-MNIST as uint8 numpy arrays: images (N, 28, 28), labels (N,) in 0-9.'


class DataNotFoundError(FileNotFoundError):
    """No complete, verified copy of the data set anywhere, and none could be downloaded."""


def search_places(root=None):
    """[(where it came from, folder)] in the order they are tried."""
    mxnet_home = Path(os.environ.get('MXNET_HOME', Path.home() / '.mxnet'))
    places = [('root argument (--data-dir)', root), (f'${ENV_VAR}', os.environ.get(ENV_VAR)),
              ('the project', PROJECT_DIR), ('Debian package dataset-fashion-mnist', SYSTEM_DIR),
              ("MXNet's cache ($MXNET_HOME)", mxnet_home / 'datasets' / 'fashion-mnist')]
    return [(label, Path(folder)) for label, folder in places if folder]


def _file_in(folder, key):
    """The path of ``key``'s file in ``folder``, gzipped or not, or None."""
    for suffix in ('.gz', ''):
        path = folder / (FILES[key] + suffix)
        if path.is_file():
            return path
    return None


def _read_checked(path, key, verify):
    """The decompressed content of ``path``; with ``verify``, only if its SHA-1 is the expected one."""
    content = decompress(path.read_bytes(), str(path))
    if verify:
        digest = hashlib.sha1(content).hexdigest()
        if digest != SHA1[key]:
            raise DataError(f'{path}: content SHA-1 {digest}, expected {SHA1[key]} '
                            '(a different, truncated or corrupt file).')
    return content


def read_folder(folder, verify=True):
    """The data set in ``folder``; DataError names the file and what is wrong with it."""
    missing = [FILES[k] + '[.gz]' for k in FILES if _file_in(folder, k) is None]
    if missing:
        raise DataError(f'{folder}: missing {", ".join(missing)}')
    arrays = {}
    for key in FILES:
        path = _file_in(folder, key)
        magic = IMAGES_MAGIC if key.endswith('images') else LABELS_MAGIC
        arrays[key] = parse_idx(_read_checked(path, key, verify), str(path), magic)
    for split in ('train', 'test'):
        check_pair(arrays[f'{split}_images'], arrays[f'{split}_labels'],
                   FILES[f'{split}_images'], FILES[f'{split}_labels'])
    return FashionMNIST(**arrays)


def load_fashion_mnist(root=None, *, download=True, verify=True, mirrors=MIRRORS):
    """Fashion-MNIST from the first complete, verified copy found; downloaded if there is none.

    Searched in order: ``root``, ``$BN_GLUON_DATA``, ``data/fashion-mnist/`` in the project,
    ``/usr/share/datasets/fashion-mnist/`` (Debian), ``$MXNET_HOME/datasets/fashion-mnist/``. Then, with
    ``download``, the files are fetched into ``data/fashion-mnist/``. ``verify=False`` skips the SHA-1
    check (for generated files) but never the structural checks.
    """
    tried = []
    for label, folder in search_places(root):
        try:
            return read_folder(folder, verify)
        except DataError as e:
            tried.append(f'  {label}: {e}' if folder.exists() else f'  {label}: {folder} does not exist')
            if folder.exists() and any(_file_in(folder, k) for k in FILES):
                warnings.warn(f'skipping {folder}: {e}', stacklevel=2)
    if download:
        try:
            download_fashion_mnist(PROJECT_DIR, mirrors)
            return read_folder(PROJECT_DIR, verify)
        except (OSError, DataError) as e:
            tried.append(f'  download into {PROJECT_DIR}: {e}')
    raise DataNotFoundError(
        'Fashion-MNIST was not found. Places searched:\n' + '\n'.join(tried) + '\n'
        'Get it in one of three ways:\n'
        '  1. sudo apt-get install dataset-fashion-mnist   (Debian / Ubuntu; files in /usr/share/datasets)\n'
        '  2. let bn-gluon download it: run without --no-download while online\n'
        f'  3. copy the four files ({", ".join(v + ".gz" for v in FILES.values())}) into {PROJECT_DIR}/ '
        f'or a folder named by --data-dir or ${ENV_VAR}')


def download_fashion_mnist(directory=PROJECT_DIR, mirrors=MIRRORS, *, timeout=30, progress=True):
    """Fetch the missing or bad files into ``directory``, trying ``mirrors`` in turn; return it.

    Each file goes into a temporary file first and is renamed only once its SHA-1 is right, so an
    interrupted or corrupt download leaves nothing that could pass for data.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in FILES.items():
        path = directory / (name + '.gz')
        try:
            _read_checked(path, key, verify=True)
            continue                                          # already there and good
        except (OSError, DataError):
            pass
        errors = []
        for mirror in mirrors:
            try:
                _fetch(mirror + name + '.gz', path, key, timeout, progress)
                break
            except (OSError, DataError) as e:
                errors.append(f'{mirror}: {e}')
        else:
            raise DataError(f'could not download {name}.gz:\n    ' + '\n    '.join(errors))
    return directory


def _fetch(url, path, key, timeout, progress):
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.part', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get('Content-Length') or 0) or None
            received = 0
            with tqdm(total=total, unit='B', unit_scale=True, desc=path.name, disable=not progress,
                      leave=False) as bar:
                while chunk := response.read(1 << 16):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DataError(f'connection closed after {received} of {total} bytes')
        _read_checked(Path(tmp), key, verify=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
