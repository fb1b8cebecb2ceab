"""Build the course website from notebooks/ and README.md: static pages that read without a network.

    python docs/build_site.py                                      # writes site/
    python docs/build_site.py --out /tmp/site                      # somewhere else
    python docs/build_site.py --screenshot docs/screenshot-index.png   # and a picture of the index

Every lesson (``notebooks/NN_title.ipynb``, in name order) becomes ``NN_title.html`` with its committed
outputs and figures (PNG embedded in the page), previous/next links and a link to a copy of the
notebook. The index takes each lesson's title and first sentence from its first markdown cell.
Formulas are turned into MathML here, at build time, which browsers draw natively: the pages load no
script, font or style from outside the site.
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

import jinja2
import nbformat
from latex2mathml.converter import convert as latex_to_mathml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

ROOT = Path(__file__).resolve().parents[1]
THEME = Path(__file__).resolve().parent / 'theme'
LESSONS = '[0-9][0-9]_*.ipynb'  # the notebooks notebooks/execute.py runs, in the same order
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']
_SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')  # http:, mailto:, data:, attachment: ...
# A period ends a sentence unless it closes one of these abbreviations (fixed-width look-behinds).
_SENTENCE_END = re.compile(r'(?<!e\.g)(?<!i\.e)(?<!\bcf)(?<!\bvs)(?<!\bal)(?<!Fig)(?<!Eq)[.!?](?=\s|$)|[。！？]')


def tex_to_mathml(tex, display):
    """One formula as a MathML element; ValueError for TeX the converter would show as raw text."""
    tex = re.sub(r'\\(begin|end)\{aligned\}', r'\\\1{split}', tex)  # same layout, and converted
    try:
        mathml = latex_to_mathml(tex, display='block' if display else 'inline')
    except Exception as error:  # latex2mathml's own exception types
        raise ValueError(f'cannot render the formula {tex!r}: {type(error).__name__} {error}') from None
    unknown = re.findall(r'>(\\[A-Za-z]+|&)<', mathml)
    if unknown:
        raise ValueError(f'cannot render the formula {tex!r}: {", ".join(unknown)} is not supported by '
                         'latex2mathml; write it with other commands')
    return mathml


def _slug(text, taken):
    slug = re.sub(r'[\s-]+', '-', re.sub(r'[^\w\- ]', '', text.lower()).strip()) or 'section'
    unique, n = slug, 1
    while unique in taken:
        unique, n = f'{slug}-{n}', n + 1
    taken.add(unique)
    return unique


def _site_href(href, env):
    """Where a link of a source file points in the site, or None when the site has no such page."""
    path, hash_, fragment = href.partition('#')
    if path.startswith('attachment:'):  # an image pasted into a markdown cell
        for mime, data in env['attachments'].get(unquote(path[len('attachment:'):]), {}).items():
            return f'data:{mime};base64,{"".join(data)}'
    elif not path or _SCHEME.match(path):
        return href
    else:
        target = (env['base'] / unquote(path)).resolve()
        if target.name in env['pages'] and target.parent == env['root'] / 'notebooks':
            return env['pages'][target.name] + hash_ + fragment
        if target.is_file() and env['root'] in target.parents:
            relative = target.relative_to(env['root']).as_posix()
            env['copies'].add(relative)
            return quote(relative) + hash_ + fragment
    print(f'warning: the site holds nothing for the link {href!r} in {env["base"]}; left out', file=sys.stderr)
    return None


def _links_and_headings(state):
    """Point links at site pages, give h2/h3 ids unique in the page, and note the h2 for the outline."""
    env, tokens = state.env, state.tokens
    for i, token in enumerate(tokens):
        if token.type == 'heading_open' and token.tag in ('h2', 'h3'):
            inline = tokens[i + 1]
            text = ''.join(t.content for t in inline.children if t.type in ('text', 'code_inline'))
            token.attrSet('id', _slug(text, env['slugs']))
            if token.tag == 'h2':
                heading = state.md.renderer.render(inline.children, state.md.options, env)
                env['sections'].append((token.attrGet('id'), heading))
        if token.type != 'inline':
            continue
        unwrapped = []  # link_open tokens whose target is missing; their link_close follows
        for child in token.children:
            attr = {'link_open': 'href', 'image': 'src'}.get(child.type)
            if attr:
                href = _site_href(child.attrGet(attr) or '', env)
                if href is not None:
                    child.attrSet(attr, href)
                elif child.type == 'link_open':
                    child.tag, child.attrs = 'span', {}
                    unwrapped.append(child)
            if child.type == 'link_close' and unwrapped and child.level == unwrapped[-1].level:
                child.tag = 'span'
                unwrapped.pop()


def markdown():
    """CommonMark with tables, $...$ and $$...$$ as MathML, and the site's link rules."""
    md = MarkdownIt('commonmark', {'html': True}).enable(['table', 'strikethrough'])
    dollarmath_plugin(md, double_inline=True,
                      renderer=lambda tex, options: tex_to_mathml(tex, options['display_mode']))
    md.core.ruler.push('site_links', _links_and_headings)
    return md


def new_env(root, base, pages, copies):
    """What the link rule needs while one page is rendered: where links start, what the site holds."""
    return {'root': root, 'base': base, 'pages': pages, 'copies': copies, 'slugs': set(), 'sections': [],
            'attachments': {}}


def first_sentence(text):
    """The first sentence of the first paragraph that is not a heading."""
    for paragraph in re.split(r'\n\s*\n', text):
        paragraph = ' '.join(paragraph.split())
        if paragraph and not paragraph.startswith('#'):
            end = _SENTENCE_END.search(paragraph)
            return paragraph[:end.end()] if end else paragraph
    return ''


def lesson_intro(path):
    """(title, first sentence) from the first markdown cell, which must open with a '# ' title."""
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == 'markdown'), None)
    lines = cell.source.strip().splitlines() if cell else []
    if not lines or not lines[0].startswith('# '):
        raise ValueError(f'{path.name}: the first markdown cell must start with a "# Title" line, got '
                         f'{lines[0] if lines else "no markdown cell"!r}')
    return lines[0][2:].strip(), first_sentence('\n'.join(lines[1:]))


def render_lesson(path, md, env):
    """The notebook's cells as an HTML fragment; markdown (and its math) goes through `md`."""
    @jinja2.pass_context
    def markdown2html(context, source):
        env['attachments'] = context.get('cell', {}).get('attachments', {})
        return md.render(source, env)

    exporter = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True,
                            filters={'markdown2html': markdown2html})
    body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
    return body


def split_readme(text):
    """(title, the part before the first '## ' section, the rest), ignoring lines inside code fences."""
    lines, fenced = text.splitlines(), False
    title = next((line[2:].strip() for line in lines if line.startswith('# ')), 'Course')
    for i, line in enumerate(lines):
        fenced ^= line.lstrip().startswith('```')
        if not fenced and line.startswith('## '):
            break
    else:
        i = len(lines)
    intro = '\n'.join(line for line in lines[:i] if not line.startswith('# '))
    return title, intro, '\n'.join(lines[i:])


def _check_out(out):
    """Refuse to wipe a folder that is not an earlier build."""
    if out.exists() and (not out.is_dir() or any(out.iterdir()) and not (out / 'index.html').is_file()):
        raise ValueError(f'--out {out} exists and is not a built site; give a new or empty folder, '
                         'or remove it first')


def render_site(root=ROOT):
    """{path in the site: HTML} for the index and every lesson, and the repository files pages link to."""
    notebooks = sorted((root / 'notebooks').glob(LESSONS))
    if not notebooks:
        raise ValueError(f'no lesson notebook matching {LESSONS} in {root / "notebooks"}')
    md, copies = markdown(), set()
    pages = {p.name: p.stem + '.html' for p in notebooks}
    lessons = []
    for path in notebooks:
        title, sentence = lesson_intro(path)
        env = new_env(root, path.parent, pages, copies)
        try:
            body = render_lesson(path, md, env)
            sentence = md.renderInline(sentence, new_env(root, path.parent, pages, copies))
        except ValueError as error:
            raise ValueError(f'{path.name}: {error}') from None
        lessons.append({'page': pages[path.name], 'notebook': 'notebooks/' + quote(path.name),
                        'title': title, 'sentence': sentence, 'sections': env['sections'], 'body': body})

    title, intro, rest = split_readme((root / 'README.md').read_text(encoding='utf-8'))
    readme_env = new_env(root, root, pages, copies)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(THEME), autoescape=True,
                                   undefined=jinja2.StrictUndefined)
    html = {'index.html': templates.get_template('index.html.j2').render(
        site_title=title, intro=md.render(intro, readme_env), about=md.render(rest, readme_env),
        lessons=lessons)}
    for i, lesson in enumerate(lessons):
        html[lesson['page']] = templates.get_template('lesson.html.j2').render(
            site_title=title, lesson=lesson, prev=lessons[i - 1] if i else None,
            next=lessons[i + 1] if i + 1 < len(lessons) else None)
    copies.update(f'notebooks/{p.name}' for p in notebooks)
    return html, sorted(copies)


def build(out=ROOT / 'site', root=ROOT):
    """Write the whole site into `out` (replacing an earlier build); return the pages, index first."""
    out, root = Path(out).resolve(), Path(root).resolve()
    _check_out(out)
    html, copies = render_site(root)  # every error is raised here, before anything is written
    if out.exists():
        shutil.rmtree(out)
    (out / 'static').mkdir(parents=True)
    for name, text in html.items():
        (out / name).write_text(text, encoding='utf-8')
    shutil.copyfile(THEME / 'style.css', out / 'static' / 'style.css')
    (out / 'static' / 'pygments.css').write_text(HtmlFormatter().get_style_defs('.highlight'), encoding='utf-8')
    for relative in copies:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, out / relative)
    return [out / name for name in html]


def screenshot(page, png, width=1200, height=900, chromium='chromium'):
    """Save a PNG of `page` as headless Chromium draws it, reduced to 256 colours to stay small."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f'--user-data-dir={profile}', '--hide-scrollbars',
                        f'--window-size={width},{height}', f'--screenshot={Path(png).resolve()}',
                        Path(page).resolve().as_uri()], check=True, capture_output=True, timeout=120)
    Image.open(png).convert('RGB').quantize(256).save(png, optimize=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=ROOT / 'site', help='output folder (default: site/)')
    parser.add_argument('--screenshot', type=Path, help='also save a PNG of the index page here')
    args = parser.parse_args(argv)
    if args.screenshot and not shutil.which('chromium'):
        parser.error('--screenshot needs Chromium: apt-get install chromium')
    pages = build(args.out)
    print(f'{len(pages)} pages in {args.out}; open {pages[0]}')
    if args.screenshot:
        screenshot(pages[0], args.screenshot)
        print(f'screenshot: {args.screenshot} ({args.screenshot.stat().st_size // 1024} KB)')


if __name__ == '__main__':
    main()
