"""The course site builds from the committed notebooks and reads in headless Chromium, offline.

The site is served from 127.0.0.1 and every page is opened in a real browser: no console error, every
image decoded, every formula drawn as MathML (no TeX left in the text), every internal link answered,
no request to anywhere but the local server. Screenshots go to test-artifacts/.
"""
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / 'docs' / 'build_site.py'
ARTIFACTS = ROOT / 'test-artifacts'
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('[0-9][0-9]_*.ipynb'))
PAGES = ['index.html'] + [p.stem + '.html' for p in NOTEBOOKS]

_spec = importlib.util.spec_from_file_location('build_site', BUILDER)
build_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_site)

# What a page looks like to a reader, gathered in the browser after the page has loaded.
PAGE_REPORT_JS = r"""
const prose = [];  // visible text outside code, where TeX would show if a formula were not converted
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  if (!walker.currentNode.parentElement.closest('pre, code, script, style')) prose.push(walker.currentNode.data);
}
const attr = (selector, name) => [...document.querySelectorAll(selector)].map(
  e => ({tag: e.tagName.toLowerCase(), url: e.getAttribute(name)}));
return {
  title: document.title,
  charset: document.characterSet,
  prose: prose.join(' '),
  images: [...document.images].map(i => ({src: i.currentSrc.slice(0, 40), done: i.complete, width: i.naturalWidth})),
  math: [...document.querySelectorAll('math')].map(m => ({
    display: m.getAttribute('display'), mathml: m instanceof MathMLElement,
    width: m.getBoundingClientRect().width, height: m.getBoundingClientRect().height})),
  urls: attr('[src]', 'src').concat(attr('[href]', 'href')),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  prev: document.querySelector('a[rel=prev]')?.getAttribute('href') ?? null,
  next: document.querySelector('a[rel=next]')?.getAttribute('href') ?? null,
  source: document.querySelector('a.source-notebook')?.getAttribute('href') ?? null,
  lessons: [...document.querySelectorAll('.lessons > li')].map(li => ({
    title: li.querySelector('.lesson-title').innerText, href: li.querySelector('.lesson-title').getAttribute('href'),
    sentence: li.querySelector('.lesson-sentence').innerText})),
};
"""


def _browser_or_skip():
    """Chromium, ChromeDriver and Selenium, or a skip; CI must have them, so there it fails instead."""
    missing = [name for name in ('chromium', 'chromedriver') if not shutil.which(name)]
    if importlib.util.find_spec('selenium') is None:
        missing.append('selenium')
    if missing:
        reason = (f'the site test needs {", ".join(missing)}: apt-get install chromium chromium-driver; '
                  'pip install -e ".[test]"')
        if os.environ.get('CI'):
            pytest.fail(f'CI is set, so the browser test may not be skipped: {reason}')
        pytest.skip(reason)


BROWSER_UI = ('chrome://', 'chrome-untrusted://')


def _open(browser, url):
    """Load url and wait until the whole page is parsed: ChromeDriver's get() can return while a large
    page is still loading (document.readyState 'loading', half its images not in the DOM yet)."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 60, poll_frequency=0.05).until(
        lambda b: b.execute_script('return document.readyState') == 'complete', f'{url} still loading after 60 s')


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site') / 'site'
    result = subprocess.run([sys.executable, str(BUILDER), '--out', str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope='module')
def server(site):
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_QuietHandler, directory=site))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_port}/'
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which('chromium')
    for flag in build_site.CHROMIUM_FLAGS + ['--window-size=1200,900', '--hide-scrollbars',
                                             f'--user-data-dir={tmp_path_factory.mktemp("profile")}']:
        options.add_argument(flag)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL', 'performance': 'ALL'})
    driver = webdriver.Chrome(service=Service(shutil.which('chromedriver')), options=options)  # no download
    yield driver
    driver.quit()


@pytest.fixture(scope='module')
def visit(browser, server):
    """visit(page) -> the page's report plus its console errors and requests; each page is loaded once."""
    reports = {}

    def load(page):
        if page not in reports:
            browser.get_log('browser'), browser.get_log('performance')  # drop what earlier pages left
            _open(browser, server + page)
            report = browser.execute_script(PAGE_REPORT_JS)
            report['severe'] = [e['message'] for e in browser.get_log('browser') if e['level'] == 'SEVERE']
            events = [json.loads(e['message'])['message'] for e in browser.get_log('performance')]
            # chrome:// and chrome-untrusted:// pages are the browser's own UI (its new-tab page), served
            # from inside Chromium, never from a network.
            report['requests'] = [e['params']['request']['url'] for e in events
                                  if e['method'] == 'Network.requestWillBeSent'
                                  and not e['params']['request']['url'].startswith(BROWSER_UI)]
            reports[page] = report
        return reports[page]
    return load


def _is_local(url, server):
    """Relative, data:, or on the local server."""
    return url.startswith('data:') or urljoin(server, url).startswith(server)


def _tex_in_markdown(nb):
    """(display, inline) formula counts in the markdown cells, counted apart from the builder's parser."""
    text = '\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown')
    text = re.sub(r'```.*?```|`[^`]*`', '', text, flags=re.S)  # code is not math
    display = re.findall(r'\$\$.+?\$\$', text, flags=re.S)
    inline = re.findall(r'(?<!\\)\$[^$]+?(?<!\\)\$', re.sub(r'\$\$.+?\$\$', '', text, flags=re.S))
    return len(display), len(inline)


def test_build_writes_a_page_per_lesson_and_copies_every_notebook(site):
    assert sorted(p.name for p in site.glob('*.html')) == sorted(PAGES)
    for path in NOTEBOOKS:
        assert (site / 'notebooks' / path.name).read_bytes() == path.read_bytes()
        assert '<script' not in (site / (path.stem + '.html')).read_text(encoding='utf-8')


@pytest.mark.parametrize('page', PAGES)
def test_page_reads_in_the_browser_without_errors_or_outside_requests(page, visit, server):
    report = visit(page)
    assert report['charset'] == 'UTF-8'
    outside = [u for u in report['requests'] + report['resources'] if not _is_local(u, server)]
    assert not outside, f'{page}: requests that left 127.0.0.1: {outside}'
    assert not report['severe'], f'{page}: console errors {report["severe"]}'
    broken = [i for i in report['images'] if not i['done'] or i['width'] == 0]
    assert not broken, f'{page}: images that did not load: {broken}'
    assert server + page in report['requests'], 'the request log must see the page itself'
    # Links to other sites are fine to read (a click, not a load); everything the page loads must be local.
    loaded = [u for u in report['urls'] if not (u['tag'] == 'a' and re.match(r'https?://', u['url']))]
    assert not [u for u in loaded if not _is_local(u['url'], server)], f'{page}: {loaded}'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_lesson_shows_its_figures_and_formulas(path, visit):
    report, nb = visit(path.stem + '.html'), nbformat.read(path, as_version=4)
    title, _ = build_site.lesson_intro(path)
    assert report['title'].startswith(title)  # Chinese in the title survives: UTF-8 end to end
    figures = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if 'image/png' in o.get('data', {})]
    assert len([i for i in report['images'] if i['src'].startswith('data:image/png')]) == len(figures)

    for raw in ('$$', '\\(', '\\[', '\\begin'):
        assert raw not in report['prose'], f'unconverted TeX {raw!r} in the text of {path.name}'
    assert not re.search(r'\\[A-Za-z]+|\$\S[^$]*\$', report['prose']), f'TeX left in {path.name}'
    display, inline = _tex_in_markdown(nb)
    shown = [m for m in report['math'] if m['mathml'] and m['width'] > 0 and m['height'] > 0]
    assert len(shown) == len(report['math']), 'every <math> element is laid out by the browser as MathML'
    assert len([m for m in shown if m['display'] == 'block']) == display
    assert len(shown) >= display + inline


def test_index_outlines_every_lesson_in_order_with_its_first_sentence(visit):
    report = visit('index.html')
    assert [lesson['href'] for lesson in report['lessons']] == PAGES[1:]
    for lesson, path in zip(report['lessons'], NOTEBOOKS):
        title, sentence = build_site.lesson_intro(path)
        assert lesson['title'] == title
        assert lesson['sentence'] and lesson['sentence'][:20] == sentence.replace('`', '')[:20]


def test_lessons_link_to_previous_next_and_their_notebook(visit):
    for i, page in enumerate(PAGES[1:], start=1):
        report = visit(page)
        assert report['prev'] == (PAGES[i - 1] if i > 1 else None)
        assert report['next'] == (PAGES[i + 1] if i + 1 < len(PAGES) else None)
        assert report['source'] == f'notebooks/{NOTEBOOKS[i - 1].name}'


def test_every_internal_link_resolves(visit, server):
    for page in PAGES:
        for link in visit(page)['urls']:
            url = urljoin(server + page, link['url'])
            if not url.startswith(server):
                continue  # data: URLs and links to other sites
            target, _, fragment = url.partition('#')
            with urllib.request.urlopen(target) as response:
                assert response.status == 200 and response.read(), f'{page}: {link}'
            if fragment:
                name = unquote(urlsplit(target).path).lstrip('/')
                assert unquote(fragment) in visit(name)['ids'], f'{page}: no #{fragment} in {name}'


def test_screenshots_of_the_index_and_a_lesson(browser, server):
    ARTIFACTS.mkdir(exist_ok=True)
    _open(browser, server + 'index.html')
    browser.save_screenshot(str(ARTIFACTS / 'site-index.png'))
    _open(browser, server + PAGES[1])
    browser.execute_script("document.querySelector('math[display=block]')?.scrollIntoView({block: 'center'})")
    browser.save_screenshot(str(ARTIFACTS / 'site-lesson.png'))
    for name in ('site-index.png', 'site-lesson.png'):
        assert (ARTIFACTS / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    print(f'screenshots in {ARTIFACTS}')


# The builder itself: bad input is refused before anything is written.

def _course(tmp_path, markdown):
    (tmp_path / 'notebooks').mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)])
    nbformat.write(nb, tmp_path / 'notebooks' / '01_intro.ipynb')
    (tmp_path / 'README.md').write_text('# A course\n\nAbout it.\n', encoding='utf-8')
    return tmp_path


def test_first_sentence_skips_abbreviations_and_code():
    text = 'Use `nn.BatchNorm`, e.g. in a CNN. Then stop.'
    assert build_site.first_sentence(text) == 'Use `nn.BatchNorm`, e.g. in a CNN.'
    assert build_site.first_sentence('# Title\n\n批归一化很有用。它很快。') == '批归一化很有用。'


def test_unsupported_tex_names_the_notebook_and_writes_nothing(tmp_path):
    root = _course(tmp_path, '# 01 · Intro\n\nA formula: $\\foo{x}$.')
    with pytest.raises(ValueError, match=r'01_intro\.ipynb.*\\foo'):
        build_site.build(tmp_path / 'out', root=root)
    assert not (tmp_path / 'out').exists()


def test_a_lesson_without_a_title_is_refused(tmp_path):
    root = _course(tmp_path, 'No heading here.')
    with pytest.raises(ValueError, match='01_intro.ipynb: the first markdown cell must start with'):
        build_site.build(tmp_path / 'out', root=root)


def test_a_folder_that_is_not_a_site_is_not_wiped(tmp_path):
    root = _course(tmp_path, '# 01 · Intro\n\nFirst sentence. Second.')
    (tmp_path / 'keep').mkdir()
    (tmp_path / 'keep' / 'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match='is not a built site'):
        build_site.build(tmp_path / 'keep', root=root)
    assert (tmp_path / 'keep' / 'notes.txt').read_text() == 'mine'
    pages = build_site.build(tmp_path / 'site', root=root)
    assert 'First sentence.' in pages[0].read_text(encoding='utf-8')
    assert build_site.build(tmp_path / 'site', root=root) == pages  # an earlier build is replaced


def test_readme_links_point_into_the_site(tmp_path):
    root = _course(tmp_path, '# 01 · Intro\n\nFirst sentence.')
    (root / 'docs').mkdir()
    (root / 'docs' / 'shot.png').write_bytes(b'\x89PNG\r\n\x1a\n')
    (root / 'pkg').mkdir()
    (root / 'README.md').write_text('# A course\n\nAbout it.\n\n## Links\n\n[lesson](notebooks/01_intro.ipynb) '
                                    '![shot](docs/shot.png) [code](pkg/) [paper](https://arxiv.org/abs/1502.03167)\n',
                                    encoding='utf-8')
    index = build_site.build(tmp_path / 'site', root=root)[0].read_text(encoding='utf-8')
    assert 'href="01_intro.html"' in index and 'src="docs/shot.png"' in index
    assert (tmp_path / 'site' / 'docs' / 'shot.png').read_bytes() == b'\x89PNG\r\n\x1a\n'
    assert 'href="pkg/"' not in index and '<span>code</span>' in index  # a folder has no page: text only
    assert 'href="https://arxiv.org/abs/1502.03167"' in index
