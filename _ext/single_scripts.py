"""Each inline script once per page: under Jupyter Book 1, sphinx-thebe's configuration script
(``const THEBE_JS_URL = ...``) and sphinx-togglebutton's selector script are written twice into every
page's head, and the second ``const`` declaration is a JavaScript error on every page. After the build,
this extension removes any inline ``<script>`` in a page's head that repeats an earlier one.
tests/test_browser.py checks every page's console.
"""

import re
from pathlib import Path

_INLINE = re.compile(r"[ \t]*<script>(.*?)</script>\n?", re.S)


def dedupe_head(html: str) -> str:
    """``html`` with repeated inline scripts removed from its <head> (the first copy is kept)."""
    end = html.find("</head>")
    if end < 0:
        return html
    seen = set()

    def keep_first(m):
        if m.group(1) in seen:
            return ""
        seen.add(m.group(1))
        return m.group(0)

    return _INLINE.sub(keep_first, html[:end]) + html[end:]


def _after_build(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    for path in Path(app.outdir).rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        fixed = dedupe_head(text)
        if fixed != text:
            path.write_text(fixed, encoding="utf-8")


def setup(app):
    app.connect("build-finished", _after_build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
