"""The static site (make site): built from the stored outputs, every page, link, anchor and image
present, solutions collapsed, no widget view, nothing loaded from another host.

The first tests check the staging and the checker on small inputs; `built_site` builds the real
site once (Sphinx, execution off: about 10 s of CPU) into a temporary folder and checks all of it.
The browser check (headless Chromium) is `make site-check`.
"""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import docsite  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def notebook(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def code(text, outputs=(), **metadata):
    return {"cell_type": "code", "metadata": metadata, "source": text, "outputs": list(outputs),
            "execution_count": 1}


@pytest.fixture
def tree(tmp_path):
    """A small project: README, two notebooks, a glossary with anchors, links between them all."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "README.md").write_text(
        "# Project\n\n[first](notebooks/01_a.ipynb), [its script](notebooks/01_a.py), "
        "[the package](llm_tutorial/), [logit](notebooks/glossary.md#logit)\n\n"
        "```bash\n[not a link](notebooks/01_a.ipynb)\n```\n")
    (tmp_path / "notebooks" / "glossary.md").write_text(
        "# Glossary\n\n<a id=\"logit\"></a>\n## Logit\n\nA score. See [the loop](02_b.ipynb#loop-home).\n\n"
        "## <a id=\"eos\"></a>EOS\n\nThe end, inline<a id=\"inline-one\"></a> here.\n")
    a = notebook(
        md("# 01 · A\n\nA [logit](glossary.md#logit), [section 4](02_b.ipynb#4.-Temperature), "
           "[here](#2.-Second-part), [inline](glossary.md#inline-one), [gone](02_b.ipynb#no-such)."),
        md("## 2. Second part"),
        code("x = 1", [{"output_type": "display_data", "metadata": {},
                        "data": {docsite.WIDGET_MIME: {"model_id": "abc"}, "text/plain": "VBox()"}}]),
        code("answer = 2", tags=["solution"], jupyter={"source_hidden": True, "outputs_hidden": True}),
        code("helper = 3", jupyter={"source_hidden": True}),
    )
    b = notebook(md("# 02 · B"), md("<a id=\"loop-home\"></a>\n## 4. Temperature\n\nText."))
    for name, nb in [("01_a.ipynb", a), ("02_b.ipynb", b)]:
        (tmp_path / "notebooks" / name).write_text(json.dumps(nb))
    return tmp_path


def test_pages_in_reading_order(tree):
    docs = docsite.site_documents(tree)
    assert [d.name for d in docs] == ["index.md", "01_a.ipynb", "02_b.ipynb", "glossary.md"]
    (tree / "CONTRIBUTING.md").write_text("# Contributing\n")
    (tree / "docs").mkdir()
    (tree / "docs" / "teaching.md").write_text("# Teaching\n")
    names = [d.name for d in docsite.site_documents(tree)]
    assert names[-3:] == ["glossary.md", "teaching.md", "contributing.md"]


def test_staging_rewrites_links_and_anchors(tree, tmp_path_factory):
    stage = tmp_path_factory.mktemp("stage")
    docs, warnings = docsite.stage(stage, tree)
    index = (stage / "index.md").read_text()
    assert "[first](01_a.ipynb)" in index and "[its script](01_a.ipynb)" in index
    assert "[logit](#logit)" in index  # an explicit anchor becomes a label, resolved across pages
    assert "the package" in index and "llm_tutorial/" not in index.split("```")[0]  # no page: text only
    assert "[not a link](notebooks/01_a.ipynb)" in index  # code blocks are left alone
    assert index.rstrip().endswith("```") and ":caption: The series" in index and "01_a\n02_b" in index

    glossary = (stage / "glossary.md").read_text()
    assert "(logit)=\n## Logit" in glossary and "(eos)=\n## EOS" in glossary
    assert '<a id="inline-one"></a>' in glossary  # inside a line: left as HTML
    assert "[the loop](#loop-home)" in glossary

    a = json.loads((stage / "01_a.ipynb").read_text())
    first = a["cells"][0]["source"]
    assert "[logit](#logit)" in first
    assert "[section 4](#02_b-4-temperature)" in first  # a Jupyter heading anchor gets a label
    assert "[here](#01_a-2-second-part)" in first
    assert '<a class="reference internal" href="glossary.html#inline-one">inline</a>' in first
    assert "[gone](02_b.ipynb#no-such)" in first
    assert warnings == ["notebooks/01_a.ipynb: no anchor #no-such in notebooks/02_b.ipynb "
                        "(link [gone](02_b.ipynb#no-such))"]
    b = json.loads((stage / "02_b.ipynb").read_text())
    assert "(loop-home)=\n(02_b-4-temperature)=\n## 4. Temperature" in b["cells"][1]["source"]

    widget, solution, hidden = a["cells"][2:5]
    assert widget["outputs"][0]["data"] == {"text/html": docsite.WIDGET_NOTE}
    assert "hide-cell" in solution["metadata"]["tags"]
    assert solution["metadata"]["mystnb"]["code_prompt_show"] == "Show solution"
    assert hidden["metadata"]["tags"] == ["hide-input"]
    # the sources themselves are untouched
    assert "glossary.md#logit" in (tree / "notebooks" / "01_a.ipynb").read_text()


def test_duplicate_anchors_are_reported(tree, tmp_path_factory):
    (tree / "notebooks" / "glossary.md").write_text("<a id=\"loop-home\"></a>\n# Glossary\n")
    _, warnings = docsite.stage(tmp_path_factory.mktemp("stage"), tree)
    assert any("anchor #loop-home is defined in 02_b.ipynb, glossary.md" in w for w in warnings)


def test_anchors_of_headings():
    assert docsite.jupyter_anchor("4. Temperature: the `myth`") == "4.-Temperature:-the-myth"
    assert docsite.slug("4. Temperature: the `myth`") == "4-temperature-the-myth"
    assert docsite.slug("Top-k, top-p, min-p") == "top-k-top-p-min-p"


def write_site(folder: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return folder


def page(body, head=""):
    return f"<html><head>{head}</head><body>{body}</body></html>"


@pytest.fixture
def small_site(tmp_path):
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    site = write_site(tmp_path / "site", {
        "index.html": page('<a href="a.html#sec">a</a> <a class="reference external" href="https://example.org/">'
                           'docs</a> <img src="_images/p.png">', '<link rel="stylesheet" href="_static/s.css">'),
        "a.html": page('<section id="sec">A</section><a href="index.html">home</a>'),
        "search.html": page(""), "searchindex.js": "", "_images/p.png": "png",
        "_static/s.css": "body { background: url(bg.png) }", "_static/bg.png": "png",
    })
    return site, root


def test_checker_passes_a_sound_site(small_site):
    site, root = small_site
    report = docsite.check(site, root)
    assert report.problems == []
    assert (report.pages, report.links, report.anchors, report.images) == (3, 2, 1, 1)
    assert report.external_links == ["index.html: https://example.org/"]  # a hyperlink in prose is allowed


@pytest.mark.parametrize("bad, expected", [
    ('<script src="https://cdn.example.org/x.js"></script>', "loads https://cdn.example.org/x.js from another host"),
    ('<link rel="stylesheet" href="//fonts.example.org/css">', "from another host"),
    ('<img srcset="p.png 1x, https://img.example.org/p.png 2x">', "from another host"),
    ('<div style="background: url(https://example.org/b.png)"></div>', "from another host"),
    ('<style>@import "https://example.org/x.css";</style>', "from another host"),
    ('<a href="https://example.org/">a link the theme makes</a>', "a link to another host"),
    ('<a href="a.html#nowhere">x</a>', "no anchor #nowhere in a.html"),
    ('<a href="missing.html">x</a>', "broken link missing.html"),
    ('<img src="_images/none.png">', "_images/none.png is missing"),
])
def test_checker_finds_problems(small_site, bad, expected):
    site, root = small_site
    (site / "a.html").write_text(page(f'<section id="sec">A</section>{bad}'))
    problems = docsite.check(site, root).problems
    assert any(expected in p for p in problems), problems


def test_checker_reads_css_and_missing_pages(small_site):
    site, root = small_site
    (site / "_static" / "s.css").write_text("@font-face { src: url('https://fonts.example.org/f.woff2') }")
    (root / "notebooks" / "07_new.ipynb").write_text(json.dumps(notebook(md("# 07"))))
    problems = docsite.check(site, root).problems
    assert any("_static/s.css: loads https://fonts.example.org/f.woff2" in p for p in problems)
    assert "missing page 07_new.html" in problems


def test_browser_failures_are_read_from_devtools_events():
    events = [
        {"method": "Network.requestWillBeSent", "params": {"requestId": "1", "request": {"url": "file:///s/a.js"}}},
        {"method": "Network.requestWillBeSent", "params": {"requestId": "2", "request": {"url": "https://cdn.x/m.js"}}},
        {"method": "Network.loadingFailed", "params": {"requestId": "1", "errorText": "net::ERR_FILE_NOT_FOUND"}},
        {"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {"text": "Uncaught", "exception": {
            "description": "TypeError: x is undefined"}}}},
        {"method": "Page.loadEventFired", "params": {}},
    ]
    assert docsite.failures(events) == [
        "request to another host: https://cdn.x/m.js",
        "failed request: file:///s/a.js (net::ERR_FILE_NOT_FOUND)",
        "script error: TypeError: x is undefined",
    ]
    assert docsite.failures(events[-1:]) == []


# --------------------------------------------------------------------------------------------------
# The real site, built once
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    pytest.importorskip("myst_nb", reason="the docs extra is not installed (scripts/setup.sh installs it)")
    base = tmp_path_factory.mktemp("site")
    warnings = docsite.build(base / "site", work=base / "work", quiet=True)
    return base / "site", warnings


def test_site_builds_without_warnings(built_site):
    _, warnings = built_site
    assert not warnings, "\n".join(warnings)


def test_every_page_link_anchor_and_image(built_site):
    site, _ = built_site
    report = docsite.check(site)
    assert not report.problems, "\n".join(report.problems)
    assert report.pages >= len(NOTEBOOKS) + 3  # + landing page, search, index
    assert report.images >= 1 and report.anchors >= 1


def test_every_notebook_has_a_page_in_order(built_site):
    site, _ = built_site
    pages = ["index.html"] + [p.with_suffix(".html").name for p in NOTEBOOKS]
    for page in pages:
        assert (site / page).exists(), page
    for before, after in zip(pages, pages[1:]):  # previous/next links follow the series
        text = (site / after).read_text(encoding="utf-8")
        assert re.search(rf'<a class="left-prev"\s+href="{re.escape(before)}"', text), after
        text = (site / before).read_text(encoding="utf-8")
        assert re.search(rf'<a class="right-next"\s+href="{re.escape(after)}"', text), before
    for source, name in [("notebooks/glossary.md", "glossary.html"), ("docs/teaching.md", "teaching.html")]:
        assert (site / name).exists() == (ROOT / source).exists(), name


def test_math_is_served_by_the_site(built_site):
    site, _ = built_site
    assert (site / "_static" / "mathjax" / "MathJax.js").exists()
    config = (site / "_static" / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js")
    assert config.exists()
