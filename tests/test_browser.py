"""The built book in a real browser: headless Chromium driven by Playwright, the site on 127.0.0.1.

Runs after ``make book`` (``.ci/run`` calls it with LNLIB_REQUIRE_BROWSER=1, which turns every skip
into a failure). In a plain ``make test`` on a fresh clone there is no built site yet, and it skips
saying so. Per page of the table of contents it checks: no console or page errors and no request to
any host but the local server; every equation rendered by MathJax; every image loaded; no sideways
scrolling at a 390-pixel phone width; every internal link and anchor resolves. On the site: search
finds "cancellation" and "rstd"; exercise solutions start collapsed and open on click; the dark
theme switches on and figures stay opaque in it.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import socketserver
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("LNLIB_SITE", ROOT / "_build" / "html"))  # the built book
REQUIRE = os.environ.get("LNLIB_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# raw TeX that MathJax would have replaced: a page showing any of these has an unrendered equation
RAW_TEX = re.compile(r"\\(frac|mathrm|begin\{|hat\{|sum_|overline|varepsilon)|\$\$")


def _skip_or_fail(reason: str):
    if REQUIRE:
        pytest.fail(reason)
    pytest.skip(reason)


def toc_pages(site: Path = SITE) -> list[str]:
    """The HTML pages of the table of contents, as paths relative to the site."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return [f"{f}.html" for f in files]


# ---- links, without a browser: every href and anchor of the built HTML ----------------------------

_IDS = functools.lru_cache(maxsize=None)(lambda path: set(re.findall(r'\bid="([^"]+)"', path.read_text())))


def broken_links(site: Path, pages: list[str]) -> list[str]:
    """Internal links (and #anchors) of ``pages`` that point nowhere."""
    bad = []
    for page in pages:
        html = (site / page).read_text()
        for href in re.findall(r'<a [^>]*href="([^"]+)"', html):
            url = urlparse(href)
            if url.scheme in ("http", "https", "mailto") or href.startswith("//"):
                continue
            target = (site / page).parent / unquote(url.path) if url.path else site / page
            target = target.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                bad.append(f"{page}: {href} (no such file)")
            elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in _IDS(target):
                bad.append(f"{page}: {href} (no such anchor)")
    return bad


# ---- the browser -------------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        _skip_or_fail("no built book: run `make book` first (the browser test checks _build/html)")
    handler = functools.partial(_Quiet, directory=str(SITE))
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install playwright)")
    options = {"args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync"]}
    if CHROMIUM:  # Debian's Chromium; without it, the one `playwright install chromium` downloads
        options["executable_path"] = CHROMIUM
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(**options)
        except Exception as err:  # no browser at all
            _skip_or_fail(f"no Chromium could be started (apt-get install chromium): {str(err)[:200]}")
        yield b
        b.close()


def visit(browser, url: str, width: int = 1280, dark: bool = False):
    """Open ``url`` in a fresh context; return (page, problems) where problems lists console errors,
    page errors and requests to any other host, as they happen."""
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  color_scheme="dark" if dark else "light")
    page = context.new_page()
    problems = []
    host = urlparse(url).netloc
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def route(r):
        if urlparse(r.request.url).netloc not in (host, ""):
            problems.append(f"request to another host: {r.request.url}")
            return r.abort()
        return r.continue_()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    page.evaluate("() => (window.MathJax && MathJax.startup) ? MathJax.startup.promise : null")
    page.wait_for_timeout(300)
    return page, problems


def page_faults(browser, url: str) -> list[str]:
    """Everything wrong with one page: the problems of :func:`visit`, unrendered TeX, images that
    did not load, and sideways scrolling on a phone."""
    page, problems = visit(browser, url)
    # the prose a reader sees: code listings and outputs may show TeX on purpose (SymPy's LaTeX)
    text = page.evaluate("""() => { const a = (document.querySelector('article') || document.body).cloneNode(true);
        a.querySelectorAll('pre, code, .highlight, .cell_input, .cell_output').forEach(e => e.remove());
        return a.innerText; }""")
    raw = RAW_TEX.findall(text)
    if raw:
        problems.append(f"unrendered TeX, e.g. {raw[:3]}")
    broken = page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.src)")
    REPORT[urlparse(url).path] = page.evaluate(
        "() => ({equations: document.querySelectorAll('mjx-container').length,"
        " images: document.images.length, links: document.querySelectorAll('a[href]').length})")
    problems += [f"image did not load: {s}" for s in broken]
    page.context.close()
    phone, _ = visit(browser, url, width=390)
    overflow = phone.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        problems.append(f"scrolls sideways by {overflow} px at a 390-px width")
    phone.context.close()
    return problems


REPORT: dict[str, dict] = {}  # what was checked on each page: written next to the site at the end


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if REPORT and SITE.exists():
        lines = [f"{page}: {c['equations']} equations rendered, {c['images']} images loaded, {c['links']} links"
                 for page, c in sorted(REPORT.items())]
        (SITE.parent / "browser-report.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name", toc_pages())
def test_page_is_clean(server, browser, name):
    assert not page_faults(browser, urljoin(server, name))


def test_internal_links_and_anchors_resolve(server):
    pages = [p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html") if "_static" not in p.parts]
    assert not broken_links(SITE, pages)


@pytest.mark.parametrize("word", ["cancellation", "rstd"])
def test_search_finds(server, browser, word):
    page, problems = visit(browser, urljoin(server, f"search.html?q={word}"))
    page.wait_for_selector("#search-results ul.search li", timeout=15000)
    hits = page.query_selector_all("#search-results ul.search li")
    page.context.close()
    assert hits and not problems


def test_solutions_start_collapsed_and_open_on_click(server, browser):
    page, problems = visit(browser, urljoin(server, "book/01_what_layernorm_computes.html"))
    solutions = page.query_selector_all(".solution.dropdown")
    assert len(solutions) >= 2, "no collapsible solutions found"
    body = "(s) => [...s.children].filter(c => !c.classList.contains('admonition-title'))"
    visible = f"(s) => ({body})(s).some(c => c.offsetParent !== null && c.getBoundingClientRect().height > 0)"
    for solution in solutions:
        assert not solution.evaluate(visible), "a solution is visible before it is opened"
    solutions[0].query_selector(".toggle-button, .admonition-title").click()
    page.wait_for_timeout(400)
    assert solutions[0].evaluate(visible), "the solution did not open on click"
    assert not solutions[1].evaluate(visible)
    page.context.close()
    assert not problems


def test_dark_mode_switches_and_figures_stay_opaque(server, browser):
    page, problems = visit(browser, urljoin(server, "book/02_backward_with_sympy.html"))
    page.evaluate("() => document.documentElement.dataset.mode = 'dark'")
    button = page.query_selector(".theme-switch-button")
    assert button is not None, "no theme switch button"
    for _ in range(3):  # the button cycles light -> dark -> auto
        if page.evaluate("() => document.documentElement.dataset.theme") == "dark":
            break
        button.click()
        page.wait_for_timeout(100)
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    alphas = page.evaluate("""() => [...document.querySelectorAll('article img')].map(img => {
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let min = 255; for (let i = 3; i < d.length; i += 4 * 97) min = Math.min(min, d[i]); return min; })""")
    page.context.close()
    assert alphas and min(alphas) == 255, "a figure has transparent pixels: unreadable on a dark page"
    assert not problems


def test_the_checks_catch_injected_faults(server, browser, tmp_path):
    # the checks must be able to fail: a copy of one page with a broken link and a console error
    page = SITE / "book" / "01_what_layernorm_computes.html"
    html = page.read_text()
    html = html.replace("</article>", '<a href="no_such_page.html">x</a><a href="#no-such-anchor">y</a></article>', 1)
    html = html.replace("</body>", "<script>console.error('injected')</script></body>", 1)
    faulty = SITE / "book" / "zz_injected_fault.html"
    try:
        faulty.write_text(html)
        links = broken_links(SITE, ["book/zz_injected_fault.html"])
        assert any("no_such_page.html" in b for b in links) and any("no-such-anchor" in b for b in links)
        faults = page_faults(browser, urljoin(server, "book/zz_injected_fault.html"))
        assert any("injected" in f for f in faults)
    finally:
        faulty.unlink()
        REPORT.pop("/book/zz_injected_fault.html", None)
