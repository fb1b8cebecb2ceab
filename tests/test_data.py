"""bn_gluon.data: strict parsing, the search order, downloads against a local server, batching."""
import gzip
import hashlib
import http.server
import os
import threading
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, nd

from bn_gluon import data
from bn_gluon.data import fashion_mnist as fm
from bn_gluon.data.idx import IMAGES_MAGIC, LABELS_MAGIC, idx_bytes


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    return data.write_synthetic_fashion_mnist(tmp_path_factory.mktemp('synthetic'), n_train=60, n_test=20)


def content_sha1(folder):
    """The SHA-1 of each decompressed file, to let generated files pass verification."""
    return {k: hashlib.sha1(gzip.decompress((folder / (v + '.gz')).read_bytes())).hexdigest()
            for k, v in data.FILES.items()}


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """Every standard place points into an empty temporary folder."""
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet'))
    monkeypatch.setattr(fm, 'PROJECT_DIR', tmp_path / 'project' / 'data' / 'fashion-mnist')
    monkeypatch.setattr(fm, 'SYSTEM_DIR', tmp_path / 'system')
    return tmp_path


# --- parsing --------------------------------------------------------------------------------------------

def test_synthetic_files_parse_into_the_documented_arrays(synthetic):
    d = data.load_fashion_mnist(synthetic, download=False, verify=False)
    assert d.train_images.shape == (60, 28, 28) and d.train_images.dtype == np.uint8
    assert d.test_images.shape == (20, 28, 28)
    assert np.bincount(d.train_labels, minlength=10).tolist() == [6] * 10   # balanced
    assert d.train_labels.max() <= 9
    again = data.load_fashion_mnist(data.write_synthetic_fashion_mnist(synthetic.parent / 'again', 60, 20),
                                    download=False, verify=False)
    assert all(np.array_equal(a, b) for a, b in zip(d, again))               # same seed, same files


def test_uncompressed_files_are_accepted(synthetic, tmp_path):
    for name in data.FILES.values():
        (tmp_path / name).write_bytes(gzip.decompress((synthetic / (name + '.gz')).read_bytes()))
    a = data.read_folder(tmp_path, verify=False)
    b = data.read_folder(synthetic, verify=False)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def corrupt(folder, key, content):
    (folder / (data.FILES[key] + '.gz')).write_bytes(gzip.compress(content))


LABELS = np.arange(20, dtype=np.uint8) % 10
BROKEN = {
    'wrong magic': ('train_labels', idx_bytes(LABELS, IMAGES_MAGIC), 'magic number 2051, expected 2049'),
    'truncated payload': ('test_images', idx_bytes(np.zeros((20, 28, 28)), IMAGES_MAGIC)[:-100], 'truncated'),
    'trailing bytes': ('test_images', idx_bytes(np.zeros((20, 28, 28)), IMAGES_MAGIC) + b'x', 'too long'),
    'short header': ('test_labels', b'\x00\x00\x08', 'header'),
    'count mismatch': ('test_labels', idx_bytes(LABELS[:19], LABELS_MAGIC), '20 images but .* 19 labels'),
    'label 10': ('test_labels', idx_bytes(np.where(LABELS == 3, 10, LABELS), LABELS_MAGIC), 'label 10 at index 3'),
    'not 28x28': ('test_images', idx_bytes(np.zeros((20, 28, 27)), IMAGES_MAGIC), '28x27 pixels'),
}


@pytest.mark.parametrize('case', sorted(BROKEN))
def test_broken_files_raise_an_error_naming_the_file(synthetic, tmp_path, case):
    key, content, message = BROKEN[case]
    for name in data.FILES.values():
        (tmp_path / (name + '.gz')).write_bytes((synthetic / (name + '.gz')).read_bytes())
    corrupt(tmp_path, key, content)
    with pytest.raises(data.DataError, match=message) as info:
        data.read_folder(tmp_path, verify=False)
    assert data.FILES[key if case != 'count mismatch' else 'test_images'] in str(info.value)


def test_bad_gzip_and_missing_files_are_named(synthetic, tmp_path):
    for name in data.FILES.values():
        (tmp_path / (name + '.gz')).write_bytes((synthetic / (name + '.gz')).read_bytes())
    path = tmp_path / (data.FILES['train_images'] + '.gz')
    path.write_bytes(path.read_bytes()[:200])                    # a gzip stream cut short
    with pytest.raises(data.DataError, match='train-images-idx3-ubyte.gz: not a valid gzip file'):
        data.read_folder(tmp_path, verify=False)
    path.unlink()
    with pytest.raises(data.DataError, match=r'missing train-images-idx3-ubyte\[\.gz\]'):
        data.read_folder(tmp_path, verify=False)


def test_verification_rejects_files_whose_content_differs(synthetic):
    with pytest.raises(data.DataError, match='content SHA-1 .* expected b9bd999c'):
        data.read_folder(synthetic, verify=True)


# --- where the files are found --------------------------------------------------------------------------

def place(folder, n_train):
    return data.write_synthetic_fashion_mnist(folder, n_train=n_train, n_test=10)


def test_default_search_order_is_project_system_mxnet(nowhere):
    places = {'mxnet': nowhere / 'mxnet' / 'datasets' / 'fashion-mnist', 'system': fm.SYSTEM_DIR,
              'project': fm.PROJECT_DIR}
    labels = {'mxnet': "MXNet's cache ($MXNET_HOME)", 'system': 'Debian package dataset-fashion-mnist',
              'project': 'the project'}
    for n_train, (name, folder) in enumerate(places.items(), start=11):   # each place its own size
        place(folder, n_train)
        found = data.load_fashion_mnist(download=False, verify=False)
        assert len(found.train_images) == n_train, name                    # the later, higher place wins
        assert found.source.place == labels[name] and found.source.folder == str(folder.resolve())


@pytest.mark.parametrize('how', ['root', 'env'])
def test_a_named_folder_is_the_only_place_read(nowhere, monkeypatch, how):
    place(fm.SYSTEM_DIR, 30)                                          # a good copy elsewhere
    named = nowhere / 'named'
    if how == 'env':
        monkeypatch.setenv(fm.ENV_VAR, str(named))
    root = named if how == 'root' else None
    with pytest.raises(data.DataNotFoundError, match=f'not found in {named}, the folder named by .*does not exist'):
        data.load_fashion_mnist(root, download=False, verify=False)
    named.mkdir()
    with pytest.raises(data.DataNotFoundError, match='it holds none of the four files'):
        data.load_fashion_mnist(root, download=False, verify=False)
    place(named, 20)
    found = data.load_fashion_mnist(root, download=False, verify=False)
    assert len(found.train_images) == 20
    assert found.source.place == ('--data-dir (root argument)' if how == 'root' else '$BN_GLUON_DATA')


def test_the_root_argument_comes_before_the_environment_variable(nowhere, monkeypatch):
    monkeypatch.setenv(fm.ENV_VAR, str(place(nowhere / 'env', 25)))
    assert len(data.load_fashion_mnist(download=False, verify=False).train_images) == 25
    found = data.load_fashion_mnist(place(nowhere / 'root', 15), download=False, verify=False)
    assert len(found.train_images) == 15 and found.source.place == '--data-dir (root argument)'


NAMED_BROKEN = {   # what goes wrong in the named folder -> (verify, what the error says)
    'cut gzip': (False, 'train-images-idx3-ubyte.gz: not a valid gzip file'),
    'wrong labels': (False, 'train-labels-idx1-ubyte.gz: magic number'),
    'missing file': (False, r'missing t10k-labels-idx1-ubyte\[\.gz\]'),
    'other content': (True, 'train-images-idx3-ubyte.gz: content SHA-1 [0-9a-f]{40}, expected'),
}


@pytest.mark.parametrize('how', ['root', 'env'])
@pytest.mark.parametrize('case', sorted(NAMED_BROKEN))
def test_a_bad_named_folder_is_an_error_naming_the_file_not_a_fallback(nowhere, monkeypatch, case, how):
    verify, message = NAMED_BROKEN[case]
    named = place(nowhere / 'named', 20)
    if case == 'cut gzip':
        path = named / (data.FILES['train_images'] + '.gz')
        path.write_bytes(path.read_bytes()[:200])
    elif case == 'wrong labels':
        corrupt(named, 'train_labels', idx_bytes(LABELS, IMAGES_MAGIC))
    elif case == 'missing file':
        (named / (data.FILES['test_labels'] + '.gz')).unlink()
    if how == 'env':
        monkeypatch.setenv(fm.ENV_VAR, str(named))
    good = place(fm.SYSTEM_DIR, 30)                                   # a copy that would pass every check
    monkeypatch.setattr(fm, 'SHA1', content_sha1(good))
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='skipping')         # not skipped with a warning either
        with pytest.raises(data.DataError, match=message) as info:
            data.load_fashion_mnist(named if how == 'root' else None, download=False, verify=verify)
    assert f'{named} is the folder named by {"--data-dir" if how == "root" else "$BN_GLUON_DATA"}' in str(info.value)
    assert 'used as given' in str(info.value)


def test_a_corrupt_copy_is_skipped_with_a_warning_for_the_next_good_one(nowhere, monkeypatch):
    place(fm.SYSTEM_DIR, 30)
    place(fm.PROJECT_DIR, 40)
    corrupt(fm.PROJECT_DIR, 'train_labels', b'garbage')
    with pytest.warns(UserWarning, match='skipping .*project.*train-labels-idx1-ubyte.gz: .*header'):
        found = data.load_fashion_mnist(download=False, verify=False)
    assert len(found.train_images) == 30 and found.source.folder == str(fm.SYSTEM_DIR.resolve())


def test_nothing_found_offline_lists_every_place_and_the_three_ways(nowhere):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_fashion_mnist(download=False)
    text = str(info.value)
    for expected in ('project', 'system', 'mxnet', 'apt-get install dataset-fashion-mnist',
                     '--no-download', 'copy the four files'):
        assert expected in text


# --- what was used --------------------------------------------------------------------------------------

def test_the_data_carries_its_folder_files_and_their_sha1(synthetic, monkeypatch):
    d = data.load_fashion_mnist(synthetic, download=False, verify=False)
    train_images, train_labels, test_images, test_labels = d               # still four arrays to unpack
    assert len(d) == 4 and train_images is d.train_images
    source = d.source
    assert source.folder == str(synthetic.resolve()) and source.place == '--data-dir (root argument)'
    expected = {data.FILES[k] + '.gz': sha1 for k, sha1 in content_sha1(synthetic).items()}
    assert source.files == expected and list(source.files) == list(expected)   # in FILES order
    assert not source.published and 'not the published Fashion-MNIST (other content in all four' in source.describe()
    assert source.to_dict() == {'folder': source.folder, 'place': source.place, 'published': False,
                                'files': expected}
    monkeypatch.setattr(fm, 'SHA1', dict(content_sha1(synthetic), train_labels='0' * 40))
    assert 'other content in train-labels-idx1-ubyte.gz)' in source.describe()
    monkeypatch.setattr(fm, 'SHA1', content_sha1(synthetic))
    assert source.published and source.describe() == f'{synthetic.resolve()} [--data-dir (root argument)]: ' \
                                                     'the published Fashion-MNIST'
    assert data.read_folder(synthetic).source.place == 'read_folder'      # verified here: SHA1 is patched


def test_an_uncompressed_file_is_recorded_under_its_own_name(synthetic, tmp_path):
    for name in data.FILES.values():
        (tmp_path / (name + '.gz')).write_bytes((synthetic / (name + '.gz')).read_bytes())
    plain = tmp_path / data.FILES['test_labels']
    plain.write_bytes(gzip.decompress((tmp_path / (plain.name + '.gz')).read_bytes()))
    (tmp_path / (plain.name + '.gz')).unlink()
    files = data.read_folder(tmp_path, verify=False).source.files
    assert files[plain.name] == hashlib.sha1(plain.read_bytes()).hexdigest()


# --- downloading ----------------------------------------------------------------------------------------

class Mirror(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (name -> bytes); mode 'good', 'corrupt' (flipped bytes), 'drop' (half, then close)."""
    files, mode = {}, 'good'

    def do_GET(self):
        body = self.files.get(self.path.rsplit('/', 1)[-1])
        if body is None:
            self.send_error(404)
            return
        if self.mode == 'corrupt':
            body = gzip.compress(gzip.decompress(body)[::-1])
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if self.mode == 'drop' else body)
        self.wfile.flush()
        if self.mode == 'drop':
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def mirrors(synthetic, monkeypatch):
    """URLs of three local servers, 'good', 'corrupt' and 'drop', serving the synthetic files."""
    monkeypatch.setattr(fm, 'SHA1', content_sha1(synthetic))
    files = {p.name: p.read_bytes() for p in synthetic.iterdir()}
    servers, urls = [], {}
    for mode in ('good', 'corrupt', 'drop'):
        handler = type(f'Mirror_{mode}', (Mirror,), {'files': files, 'mode': mode})
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls[mode] = f'http://127.0.0.1:{server.server_address[1]}/files/'
    yield urls
    for server in servers:
        server.shutdown()
        server.server_close()


def test_download_when_nothing_is_found(nowhere, mirrors, synthetic):
    found = data.load_fashion_mnist(download=True, mirrors=[mirrors['good']])
    expected = data.read_folder(synthetic, verify=False)
    assert all(np.array_equal(a, b) for a, b in zip(found, expected))
    assert sorted(p.name for p in fm.PROJECT_DIR.iterdir()) == sorted(v + '.gz' for v in data.FILES.values())


@pytest.mark.parametrize('bad', ['corrupt', 'drop'])
def test_a_bad_mirror_leaves_no_file_and_the_next_one_is_tried(nowhere, mirrors, bad):
    with pytest.raises(data.DataError, match='could not download') as info:
        data.download_fashion_mnist(fm.PROJECT_DIR, [mirrors[bad]], progress=False)
    assert ('SHA-1' if bad == 'corrupt' else 'connection closed after') in str(info.value)
    assert list(fm.PROJECT_DIR.iterdir()) == []                  # not even a partial file
    data.download_fashion_mnist(fm.PROJECT_DIR, [mirrors[bad], mirrors['good']], progress=False)
    assert len(list(fm.PROJECT_DIR.iterdir())) == 4


def test_an_empty_named_folder_is_filled_but_a_file_in_it_is_never_replaced(nowhere, mirrors, synthetic):
    named = nowhere / 'named'
    found = data.load_fashion_mnist(named, mirrors=[mirrors['good']])
    assert sorted(p.name for p in named.iterdir()) == sorted(v + '.gz' for v in data.FILES.values())
    assert not fm.PROJECT_DIR.exists() and found.source.folder == str(named.resolve())
    path = named / (data.FILES['train_labels'] + '.gz')
    path.write_bytes(gzip.compress(b'garbage'))
    (named / (data.FILES['test_images'] + '.gz')).unlink()
    with pytest.raises(data.DataError, match='(?s)train-labels-idx1-ubyte.gz: .*used as given'):
        data.load_fashion_mnist(named, mirrors=[mirrors['good']])
    assert gzip.decompress(path.read_bytes()) == b'garbage'           # left as it was
    assert (named / (data.FILES['test_images'] + '.gz')).exists()     # the missing one was fetched


def test_a_named_folder_that_cannot_be_filled_is_not_found(nowhere):
    with pytest.raises(data.DataNotFoundError, match='not complete in .*named.* could not be downloaded'):
        data.load_fashion_mnist(nowhere / 'named', mirrors=['http://127.0.0.1:9/'])
    assert not fm.PROJECT_DIR.exists()


def test_an_unreachable_mirror_ends_in_data_not_found(nowhere):
    with pytest.raises(data.DataNotFoundError, match='could not download'):
        data.load_fashion_mnist(mirrors=['http://127.0.0.1:9/'])
    assert not any(fm.PROJECT_DIR.iterdir())


# --- feeding --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def arrays(synthetic):
    d = data.load_fashion_mnist(synthetic, download=False, verify=False)
    return d.train_images[:50], d.train_labels[:50]


def test_to_nd_equals_gluons_to_tensor(arrays):
    images, labels = arrays
    X, y = data.to_nd(images, labels)
    assert X.shape == (50, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.float32
    ref = np.stack([gluon.data.vision.transforms.ToTensor()(nd.array(im[..., None], dtype='uint8')).asnumpy()
                    for im in images])
    np.testing.assert_array_equal(X.asnumpy(), ref)
    np.testing.assert_array_equal(y.asnumpy(), labels)
    Z, _ = data.to_nd(images, labels, mean=0.5, std=0.25)
    np.testing.assert_allclose(Z.asnumpy(), (ref - 0.5) / 0.25, rtol=1e-6, atol=1e-6)


def test_the_gluon_dataloader_gives_the_same_tensors(arrays):
    images, labels = arrays
    X, y = data.to_nd(images, labels)
    batches = list(data.gluon_dataloader(images, labels, 16, shuffle=False))
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    np.testing.assert_array_equal(nd.concat(*[b[0] for b in batches], dim=0).asnumpy(), X.asnumpy())


def test_shuffling_is_deterministic_and_covers_every_example_once(arrays):
    X, y = data.to_nd(*arrays)
    it = data.DataIter(X, nd.arange(50), 16, seed=3)             # labels = example ids
    order = lambda it, e: np.concatenate([b[1].asnumpy() for b in it.epoch(e)])
    assert len(it) == 4 and [len(b[0]) for b in it.epoch(0)] == [16, 16, 16, 2]   # last batch kept
    first = order(it, 0)
    assert sorted(first) == list(range(50))                       # every example exactly once
    assert np.array_equal(first, order(data.DataIter(X, nd.arange(50), 16, seed=3), 0))
    assert not np.array_equal(first, order(it, 1))                # a new permutation per epoch
    assert not np.array_equal(first, order(data.DataIter(X, nd.arange(50), 16, seed=4), 0))
    for xb, yb in it.epoch(1):                                    # images travel with their labels
        np.testing.assert_array_equal(xb.asnumpy(), X.asnumpy()[yb.asnumpy().astype(int)])


def test_drop_last_sequential_and_by_class_orders(arrays):
    X, y = data.to_nd(*arrays)
    dropped = data.DataIter(X, y, 16, drop_last=True)
    assert len(dropped) == 3 and [len(b[0]) for b in dropped.epoch(0)] == [16] * 3
    seq = np.concatenate([b[1].asnumpy() for b in data.DataIter(X, y, 16, shuffle=False)])
    np.testing.assert_array_equal(seq, arrays[1])
    by_class = np.concatenate([b[1].asnumpy() for b in data.DataIter(X, y, 16, order='by_class').epoch(5)])
    np.testing.assert_array_equal(by_class, np.sort(arrays[1]))


@pytest.mark.parametrize('kwargs, message', [
    (dict(batch_size=0), 'batch_size must be a positive integer; got 0'),
    (dict(batch_size=2.5), 'batch_size must be a positive integer; got 2.5'),
    (dict(batch_size=4, order='sorted'), "order must be one of .*; got 'sorted'"),
    (dict(batch_size=64, drop_last=True), 'batch_size 64 > 50 examples'),
])
def test_data_iter_rejects_bad_arguments(arrays, kwargs, message):
    X, y = data.to_nd(*arrays)
    with pytest.raises(ValueError, match=message):
        data.DataIter(X, y, **kwargs)


def test_to_nd_rejects_bad_arrays(arrays):
    images, labels = arrays
    with pytest.raises(ValueError, match='uint8 of shape'):
        data.to_nd(images.astype('float32'), labels)
    with pytest.raises(ValueError, match=r'labels must have shape \(50,\)'):
        data.to_nd(images, labels[:49])
    with pytest.raises(ValueError, match='both mean and std'):
        data.to_nd(images, labels, mean=0.3)


# --- the real data, where it is installed (CI installs the Debian package) ------------------------------

@pytest.fixture(scope='module')
def real():
    try:
        return data.load_fashion_mnist(download=False)
    except data.DataNotFoundError:
        if os.environ.get('CI'):
            raise
        pytest.skip('Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist)')


def test_real_data_facts(real):
    assert (len(real.train_images), len(real.test_images)) == (60000, 10000)
    assert np.bincount(real.train_labels).tolist() == [6000] * 10
    assert np.bincount(real.test_labels).tolist() == [1000] * 10
    assert (real.train_labels[0], real.test_labels[0]) == (9, 9)
    assert data.CLASS_NAMES[9] == 'Ankle boot'
    X, _ = data.to_nd(real.train_images, real.train_labels, mx.cpu())
    assert abs(X.mean().asscalar() - data.TRAIN_MEAN) < 1e-4


def test_batches_kept_by_the_caller_survive_the_next_epochs(arrays):
    """A batch still held must not change under its holder when later epochs are drawn."""
    X, y = data.to_nd(*arrays)
    it = data.DataIter(X, nd.arange(50), 16, seed=0)
    kept_tuples = list(it.epoch(0))
    kept_arrays = [yb for _, yb in it.epoch(1)]
    snapshot = [b[1].asnumpy().copy() for b in kept_tuples] + [a.asnumpy().copy() for a in kept_arrays]

    def consume(e):
        return np.concatenate([yb.asnumpy() for _, yb in it.epoch(e)])
    later = [consume(e) for e in (2, 3, 4)]
    after = [b[1].asnumpy() for b in kept_tuples] + [a.asnumpy() for a in kept_arrays]
    assert all(np.array_equal(a, b) for a, b in zip(snapshot, after))
    fresh = data.DataIter(X, nd.arange(50), 16, seed=0)
    assert all(np.array_equal(a, np.concatenate([yb.asnumpy() for _, yb in fresh.epoch(e)]))
               for a, e in zip(later, (2, 3, 4)))                # an epoch is a function of (seed, epoch)
