"""Fashion-MNIST: find the four IDX files, verify them, download them if they are nowhere.

The same data ships in three wrappings: Zalando's original .gz files, the Debian package
``dataset-fashion-mnist`` (re-compressed) and MXNet's mirror (re-compressed again). Their gzip bytes
differ, their content does not, so every copy is checked by the SHA-1 of the decompressed content.

A folder the caller names (``root``, i.e. ``--data-dir``, or ``$BN_GLUON_DATA``) is used as given or is an
error naming the file; only the default search skips a bad copy, with a warning. The loaded arrays carry
their ``source``: the folder, how it was chosen, and each file with the SHA-1 of its content.
"""
import collections
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Which copy was loaded: its folder, how that folder was chosen, and {file name: content SHA-1}."""

    folder: str
    place: str          # e.g. '--data-dir (root argument)', '$BN_GLUON_DATA', 'the project'
    files: dict         # in the order of FILES: train images, train labels, test images, test labels

    @property
    def published(self):
        """True when every file holds the published Fashion-MNIST content (its SHA-1 is in ``SHA1``)."""
        return list(self.files.values()) == [SHA1[k] for k in FILES]

    def to_dict(self):
        return {'folder': self.folder, 'place': self.place, 'published': self.published, 'files': dict(self.files)}

    def describe(self):
        """One line for a person: the folder, how it was chosen, and whether it is the published data."""
        differ = [name for (name, sha1), key in zip(self.files.items(), FILES) if sha1 != SHA1[key]]
        what = ('the published Fashion-MNIST' if not differ else
                f'not the published Fashion-MNIST (other content in '
                f'{"all four files" if len(differ) == len(FILES) else ", ".join(differ)})')
        return f'{self.folder} [{self.place}]: {what}'


class FashionMNIST(collections.namedtuple('FashionMNIST', 'train_images train_labels test_images test_labels')):
    """Fashion-MNIST as uint8 numpy arrays: images (N, 28, 28), labels (N,) in 0-9.

    ``source`` is the :class:`DataSource` the arrays were read from (None for arrays put together by hand);
    it is not one of the tuple's items, so unpacking gives the four arrays.
    """
    source = None

    def __new__(cls, train_images, train_labels, test_images, test_labels, source=None):
        self = super().__new__(cls, train_images, train_labels, test_images, test_labels)
        self.source = source
        return self


class DataNotFoundError(FileNotFoundError):
    """No complete, verified copy of the data set anywhere, and none could be downloaded."""


def named_folder(root=None):
    """(how it was named, folder) of the folder given by ``root`` or else ``$BN_GLUON_DATA``; or None."""
    for label, folder in (('--data-dir (root argument)', root), (f'${ENV_VAR}', os.environ.get(ENV_VAR))):
        if folder:
            return label, Path(folder)
    return None


def search_places(root=None):
    """[(where it came from, folder)] in the order they are tried: a named folder alone, or the defaults."""
    named = named_folder(root)
    if named is not None:
        return [named]
    mxnet_home = Path(os.environ.get('MXNET_HOME', Path.home() / '.mxnet'))
    return [('the project', PROJECT_DIR), ('Debian package dataset-fashion-mnist', SYSTEM_DIR),
            ("MXNet's cache ($MXNET_HOME)", mxnet_home / 'datasets' / 'fashion-mnist')]


def _file_in(folder, key):
    """The path of ``key``'s file in ``folder``, gzipped or not, or None."""
    for suffix in ('.gz', ''):
        path = folder / (FILES[key] + suffix)
        if path.is_file():
            return path
    return None


def _read_checked(path, key, verify):
    """(decompressed content of ``path``, its SHA-1); with ``verify``, only if the SHA-1 is the expected one."""
    content = decompress(path.read_bytes(), str(path))
    digest = hashlib.sha1(content).hexdigest()
    if verify and digest != SHA1[key]:
        raise DataError(f'{path}: content SHA-1 {digest}, expected {SHA1[key]} '
                        '(a different, truncated or corrupt file).')
    return content, digest


def read_folder(folder, verify=True, place='read_folder'):
    """The data set in ``folder``; DataError names the file and what is wrong with it.

    ``place`` says how the folder was chosen; it goes into the result's ``source``.
    """
    folder = Path(folder)
    missing = [FILES[k] + '[.gz]' for k in FILES if _file_in(folder, k) is None]
    if missing:
        raise DataError(f'{folder}: missing {", ".join(missing)}')
    arrays, files = {}, {}
    for key in FILES:
        path = _file_in(folder, key)
        magic = IMAGES_MAGIC if key.endswith('images') else LABELS_MAGIC
        content, files[path.name] = _read_checked(path, key, verify)
        arrays[key] = parse_idx(content, str(path), magic)
    for split in ('train', 'test'):
        check_pair(arrays[f'{split}_images'], arrays[f'{split}_labels'],
                   FILES[f'{split}_images'], FILES[f'{split}_labels'])
    return FashionMNIST(**arrays, source=DataSource(str(folder.resolve()), place, files))


def load_fashion_mnist(root=None, *, download=True, verify=True, mirrors=MIRRORS):
    """Fashion-MNIST from a folder the caller names, or else from the first good copy found.

    A folder named by ``root`` (``--data-dir``) or, without it, by ``$BN_GLUON_DATA`` is used as given: a
    missing, corrupt or (with ``verify``) different file in it is a DataError naming the file, never a
    reason to take another copy. With ``download`` the files missing from it are fetched into it, but no
    file in it is replaced. Without a named folder the search goes ``data/fashion-mnist/`` in the project,
    ``/usr/share/datasets/fashion-mnist/`` (Debian), ``$MXNET_HOME/datasets/fashion-mnist/``, skipping a
    bad copy with a warning that names it; with ``download`` the files are then fetched into
    ``data/fashion-mnist/``. ``verify=False`` skips the SHA-1 check (for generated files) but never the
    structural checks. The result's ``source`` records the folder and each file's SHA-1.
    """
    named = named_folder(root)
    if named is not None:
        return _load_named(*named, download=download, verify=verify, mirrors=mirrors)
    tried = []
    for label, folder in search_places():
        try:
            return read_folder(folder, verify, label)
        except DataError as e:
            tried.append(f'  {label}: {e}' if folder.exists() else f'  {label}: {folder} does not exist')
            if folder.exists() and any(_file_in(folder, k) for k in FILES):
                warnings.warn(f'skipping {folder}: {e}', stacklevel=2)
    if download:
        try:
            download_fashion_mnist(PROJECT_DIR, mirrors)
            return read_folder(PROJECT_DIR, verify, 'downloaded into the project')
        except (OSError, DataError) as e:
            tried.append(f'  download into {PROJECT_DIR}: {e}')
    raise DataNotFoundError(
        'Fashion-MNIST was not found. Places searched:\n' + '\n'.join(tried) + '\n'
        'Get it in one of three ways:\n'
        '  1. sudo apt-get install dataset-fashion-mnist   (Debian / Ubuntu; files in /usr/share/datasets)\n'
        '  2. let bn-gluon download it: run without --no-download while online\n'
        f'  3. copy the four files ({", ".join(v + ".gz" for v in FILES.values())}) into {PROJECT_DIR}/ '
        f'or a folder named by --data-dir or ${ENV_VAR}')


def _load_named(label, folder, *, download, verify, mirrors):
    """The copy in ``folder``, which the caller named: used as given, or an error that says what is wrong."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f'{folder} (named by {label}) is a file; name the folder that holds the four files.')
    missing = [k for k in FILES if not folder.is_dir() or _file_in(folder, k) is None]
    if missing and download:
        try:
            download_fashion_mnist(folder, mirrors, replace=False)
        except (OSError, DataError) as e:
            raise DataNotFoundError(f'Fashion-MNIST is not complete in {folder} (named by {label}) and could '
                                    f'not be downloaded into it: {e}\nCopy the four files there, or name another '
                                    f'folder.') from None
    elif len(missing) == len(FILES):
        raise DataNotFoundError(
            f'Fashion-MNIST was not found in {folder}, the folder named by {label}: '
            f'{"it holds none of the four files" if folder.is_dir() else "it does not exist"}. A named folder '
            f'is the only place read. Run without --no-download to download the files into it, copy the four '
            f'files ({", ".join(v + ".gz" for v in FILES.values())}) into it, or name no folder to search the '
            f'standard places (see data/README.md).')
    try:
        return read_folder(folder, verify, label)
    except DataError as e:
        raise DataError(f'{e}\n{folder} is the folder named by {label}, so it is used as given and no other '
                        f'copy is tried. Replace the file named above (delete it and run without --no-download to '
                        f'download it again), or name another folder.') from None


def download_fashion_mnist(directory=PROJECT_DIR, mirrors=MIRRORS, *, timeout=30, progress=True, replace=True):
    """Fetch the missing or bad files into ``directory``, trying ``mirrors`` in turn; return it.

    Each file goes into a temporary file first and is renamed only once its SHA-1 is right, so an
    interrupted or corrupt download leaves nothing that could pass for data. ``replace=False`` fetches
    only the missing files and leaves every file already there as it is.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in FILES.items():
        path = directory / (name + '.gz')
        if not replace and _file_in(directory, key) is not None:
            continue
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
