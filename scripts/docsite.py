"""The series as a static site, built from the stored outputs that nbval verifies (no re-execution).

    python scripts/docsite.py build   [--out site]   # stage the sources, run Sphinx: site/index.html
    python scripts/docsite.py check   [--out site]   # every page, link, anchor and image; no other host
    python scripts/docsite.py browser [--out site] [--screenshots DIR]
                                                  # every page in headless Chromium: no failed request

The site is Sphinx + MyST-NB (execution off) with the book theme: it reads the .ipynb files as they
are stored, so a page shows exactly what `pytest --nbval` compared. The pages work from a folder or
a USB stick (file://) with no network: MathJax, fonts, icons and search are all served by the site.

`build` first stages the sources into build/site/src/, in order:
  index.md (from README.md), notebooks/NN_*.ipynb, glossary.md (notebooks/glossary.md),
  teaching.md (docs/teaching.md), contributing.md (CONTRIBUTING.md), each present one included.
While staging it
  - turns `<a id="x"></a>` anchors into MyST targets, so links to them are resolved and checked;
  - rewrites links between the project's files (README's `notebooks/01_x.ipynb`, a notebook's
    `glossary.md#logit`, `05_decoding.ipynb#temperature-myth`, a Jupyter heading anchor such as
    `#4.-Temperature`) to the pages and anchors of the site; a link to a file that has no page
    (a module, the licence) keeps its text only;
  - collapses exercise solutions (cells tagged `solution`) behind a "Show solution" toggle, and
    hides any other cell's source or output that Jupyter keeps collapsed;
  - replaces an ipywidgets view (which needs a running kernel) with a note that says to run the
    notebook.
The notebooks and the other sources are not changed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import html
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
WORK = ROOT / "build" / "site"  # staged sources, Sphinx's doctrees and output, MyST-NB's files
OUT = ROOT / "site"

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<div class="widget-note"><p><strong>Interactive widget.</strong> In JupyterLab this cell shows '
    "controls that re-run the computation as you move them. A static page cannot run Python: open "
    "the notebook (<code>make lab</code>) to use them.</p></div>"
)
SOLUTION_PROMPTS = {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}


# --------------------------------------------------------------------------------------------------
# Staging
# --------------------------------------------------------------------------------------------------

@dataclass
class Doc:
    name: str  # staged file name, e.g. "01_tokenization.ipynb"
    origin: str  # repository path it comes from, e.g. "notebooks/01_tokenization.ipynb"
    caption: str  # toctree caption it is listed under ("" for the landing page)
    chunks: list[str] = field(default_factory=list)  # markdown: the file, or each markdown cell
    notebook: dict | None = None  # the notebook's JSON (for .ipynb)
    anchors: set[str] = field(default_factory=set)  # explicit anchors, turned into MyST targets
    raw_anchors: set[str] = field(default_factory=set)  # anchors left as inline HTML
    headings: list[tuple[int, int, str]] = field(default_factory=list)  # (chunk, line, text)

    @property
    def stem(self) -> str:
        return Path(self.name).stem


def site_documents(root: Path = ROOT) -> list[Doc]:
    """The site's pages in reading order, from the sources present now."""
    docs = [Doc("index.md", "README.md", "")]
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        docs.append(Doc(path.name, f"notebooks/{path.name}", "The series"))
    for origin, name in [("notebooks/glossary.md", "glossary.md"), ("docs/teaching.md", "teaching.md"),
                         ("CONTRIBUTING.md", "contributing.md")]:
        if (root / origin).exists():
            docs.append(Doc(name, origin, "Reference"))
    for doc in docs:
        source = root / doc.origin
        if doc.name.endswith(".ipynb"):
            doc.notebook = json.loads(source.read_text(encoding="utf-8"))
            doc.chunks = [_text(c["source"]) for c in doc.notebook["cells"] if c["cell_type"] == "markdown"]
        else:
            doc.chunks = [source.read_text(encoding="utf-8")]
    return docs


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def _outside_fences(lines: list[str]):
    """Indices of the lines that are not inside a fenced code block."""
    fence = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is None and marker:
            fence = marker.group(1)
            continue
        if fence is not None:
            if stripped.startswith(fence) and not stripped[len(fence):].strip():
                fence = None
            continue
        yield i


ANCHOR_LINE = re.compile(r'^(\s*(?:#{1,6}\s+)?)<a\s+(?:id|name)\s*=\s*"([^"]+)"\s*>\s*</a>\s*(.*)$')
ANCHOR_ANY = re.compile(r'<a\s+(?:id|name)\s*=\s*"([^"]+)"\s*>\s*</a>')
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def convert_anchors(doc: Doc) -> None:
    """`<a id="x"></a>` at the start of a line (or of a heading's text) -> a MyST target `(x)=`."""
    for c, chunk in enumerate(doc.chunks):
        lines = chunk.split("\n")
        out: list[str] = []
        keep = set(_outside_fences(lines))
        for i, line in enumerate(lines):
            match = ANCHOR_LINE.match(line) if i in keep else None
            while match:  # several anchors in a row
                prefix, anchor, rest = match.groups()
                out.append(f"({anchor})=")
                doc.anchors.add(anchor)
                line = prefix + rest
                match = ANCHOR_LINE.match(line) if line.strip() else None
            if i in keep:
                doc.raw_anchors.update(ANCHOR_ANY.findall(line))
            if line.strip() or not (out and out[-1].endswith(")=")):
                out.append(line)
        doc.chunks[c] = "\n".join(out)
    for c, chunk in enumerate(doc.chunks):
        lines = chunk.split("\n")
        for i in _outside_fences(lines):
            match = HEADING.match(lines[i])
            if match:
                doc.headings.append((c, i, match.group(2)))


def _plain(markdown: str) -> str:
    """A heading's text as a browser shows it (enough for anchors)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "").replace("**", "").replace("__", "").strip()


def jupyter_anchor(heading: str) -> str:
    """The anchor JupyterLab and nbconvert give a heading: its text, spaces as hyphens."""
    return _plain(heading).replace(" ", "-")


def slug(heading: str) -> str:
    """GitHub's (and MyST's) anchor for a heading."""
    text = _plain(heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


LINK = re.compile(r"(?<!!)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^()\s<>]+)>?(\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


class Stager:
    """Rewrites the links of the staged documents; collects what it could not resolve."""

    def __init__(self, docs: list[Doc]):
        self.docs = docs
        self.by_origin: dict[str, Doc] = {}
        for doc in docs:
            self.by_origin[doc.origin] = doc
            if doc.origin.endswith(".ipynb"):  # a link to the notebook's .py twin is the same page
                self.by_origin[doc.origin[: -len(".ipynb")] + ".py"] = doc
        owners: dict[str, list[str]] = {}
        for doc in docs:
            for anchor in doc.anchors:
                owners.setdefault(anchor.lower(), []).append(doc.name)
        self.duplicates = {a: names for a, names in owners.items() if len(names) > 1}
        self.warnings: list[str] = [
            f"anchor #{a} is defined in {', '.join(names)}: links to it are ambiguous"
            for a, names in sorted(self.duplicates.items())
        ]
        self.labels: dict[tuple[str, int, int], str] = {}  # heading -> label to insert before it

    def target(self, doc: Doc, frag: str) -> str | None:
        """A MyST link target (`#label`) for the anchor `frag` of `doc`, or None."""
        frag = urllib.parse.unquote(frag)
        if frag in doc.anchors and frag.lower() not in self.duplicates:
            return f"#{frag}"
        for c, i, text in doc.headings:
            if frag in (jupyter_anchor(text), slug(text)):
                label = self.labels.setdefault((doc.name, c, i), f"{doc.stem}-{slug(text)}".lower())
                return f"#{label}"
        return None

    def rewrite(self, doc: Doc, markdown: str) -> str:
        lines = markdown.split("\n")
        for i in _outside_fences(lines):
            lines[i] = LINK.sub(lambda m: self._link(doc, m), lines[i])
        return "\n".join(lines)

    def _link(self, doc: Doc, match: re.Match) -> str:
        text, target, title = match.group(1), match.group(2), match.group(3) or ""
        if SCHEME.match(target):
            return match.group(0)  # an external or mailto link: left as written
        path, _, frag = target.partition("#")
        if path:
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(doc.origin), urllib.parse.unquote(path)))
            other = self.by_origin.get(resolved.rstrip("/"))
            if other is None:
                return text  # a file with no page (a module, the licence): its text only
        else:
            other = doc
        if not frag:
            return f"[{text}]({other.name}{title})"
        new = self.target(other, frag)
        if new is not None:
            return f"[{text}]({new}{title})"
        if frag in other.raw_anchors:  # an anchor inside a line: a plain HTML link to it
            label = html.escape(_plain(text))
            href = ("" if other is doc else Path(other.name).with_suffix(".html").name) + "#" + frag
            return f'<a class="reference internal" href="{href}">{label}</a>'
        self.warnings.append(f"{doc.origin}: no anchor #{frag} in {other.origin} (link [{text}]({target}))")
        return match.group(0)

    def insert_labels(self) -> None:
        for (name, c, i), label in self.labels.items():
            doc = next(d for d in self.docs if d.name == name)
            lines = doc.chunks[c].split("\n")
            if i == 0 or lines[i - 1].strip() != f"({label})=":
                lines.insert(i, f"({label})=")
            doc.chunks[c] = "\n".join(lines)


def stage_notebook(doc: Doc) -> dict:
    """The notebook as the site shows it: rewritten markdown, collapsed solutions, no widgets."""
    nb = copy.deepcopy(doc.notebook)
    nb.get("metadata", {}).pop("widgets", None)
    chunks = iter(doc.chunks)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = next(chunks)
            continue
        if cell["cell_type"] != "code":
            continue
        metadata = cell.setdefault("metadata", {})
        tags = list(metadata.get("tags", []))
        hidden = metadata.get("jupyter", {})
        if "solution" in tags:
            tags.append("hide-cell")  # source and output behind one "Show solution" toggle
            metadata["mystnb"] = {**metadata.get("mystnb", {}), **SOLUTION_PROMPTS}
        else:
            if hidden.get("source_hidden"):
                tags.append("hide-input")
            if hidden.get("outputs_hidden"):
                tags.append("hide-output")
        metadata["tags"] = tags
        for output in cell.get("outputs", []):
            if WIDGET_MIME in output.get("data", {}):
                output["data"] = {"text/html": WIDGET_NOTE}
    return nb


def index_page(doc: Doc, docs: list[Doc]) -> str:
    """The landing page: the README, then the (hidden) tables of contents that order the site."""
    parts = [doc.chunks[0].rstrip(), ""]
    captions: dict[str, list[str]] = {}
    for other in docs[1:]:
        captions.setdefault(other.caption, []).append(Path(other.name).stem)
    for caption, names in captions.items():
        parts += ["```{toctree}", ":hidden:", f":caption: {caption}", "", *names, "```", ""]
    return "\n".join(parts)


def stage(stage_dir: Path, root: Path = ROOT) -> tuple[list[Doc], list[str]]:
    """Write the site's sources into `stage_dir`; return the documents and the staging warnings."""
    docs = site_documents(root)
    for doc in docs:
        convert_anchors(doc)
    stager = Stager(docs)
    for doc in docs:
        doc.chunks = [stager.rewrite(doc, chunk) for chunk in doc.chunks]
    stager.insert_labels()
    stage_dir.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for doc in docs:
        if doc.notebook is not None:
            text = json.dumps(stage_notebook(doc), ensure_ascii=False, indent=1) + "\n"
        elif doc.name == "index.md":
            text = index_page(doc, docs)
        else:
            text = doc.chunks[0]
        _write_if_changed(stage_dir / doc.name, text)
        wanted.add(doc.name)
    for path in stage_dir.iterdir():  # pages whose source is gone
        if path.is_file() and path.name not in wanted:
            path.unlink()
    return docs, stager.warnings


def _write_if_changed(path: Path, text: str) -> None:
    """Unchanged files keep their time stamp, so Sphinx rebuilds only what changed."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def build(out: Path = OUT, *, work: Path = WORK, root: Path = ROOT, fresh: bool = False,
          quiet: bool = False) -> list[str]:
    """Stage and build the site into `out`; returns the warnings (staging's and Sphinx's).

    Sphinx works in `work` (src/, doctrees/, html/, and MyST-NB's jupyter_execute/, which it puts
    beside its output folder); unchanged pages are not rebuilt. `out` receives a copy of html/.
    """
    started = time.perf_counter()
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    docs, warnings = stage(work / "src", root)
    log = work / "warnings.txt"
    html_dir = work / "html"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "auto", "-c", str(DOCS),
               "-d", str(work / "doctrees"), "-w", str(log), "--keep-going", str(work / "src"), str(html_dir)]
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"site: sphinx-build failed (exit {result.returncode})")
    warnings += [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    for template in (html_dir / "_static").glob("*webpack-macros.html"):  # the themes' build templates
        template.unlink()
    for doc in docs:  # the download button gives the file as the project has it, not the staged copy
        if (html_dir / "_sources" / doc.name).exists():
            shutil.copyfile(root / doc.origin, html_dir / "_sources" / doc.name)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(html_dir, out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    if not quiet:
        for line in warnings:
            print(f"site: warning: {line}", file=sys.stderr)
        seconds = time.perf_counter() - started
        print(f"site: {len(docs)} pages from the stored outputs in {seconds:.1f} s: {out / 'index.html'}")
    return warnings


# --------------------------------------------------------------------------------------------------
# Checking the built site
# --------------------------------------------------------------------------------------------------

# attributes that make the browser load something when the page opens
LOADS = {("img", "src"), ("img", "srcset"), ("script", "src"), ("link", "href"), ("iframe", "src"),
         ("source", "src"), ("source", "srcset"), ("video", "src"), ("video", "poster"), ("audio", "src"),
         ("embed", "src"), ("object", "data"), ("track", "src"), ("input", "src"), ("image", "href"),
         ("use", "href"), ("frame", "src")}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (href, class) of <a>
        self.loads: list[tuple[str, str]] = []  # (tag.attr, url) of what the page loads
        self.images: list[str] = []
        self.details: list[tuple[str, bool]] = []  # (class, open) of <details>
        self.summaries: list[str] = []
        self._summary: list[str] | None = None
        self.text: list[str] = []
        self._style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.links.append((a["href"], a.get("class") or ""))
        for name, value in attrs:
            if value is None:
                continue
            if (tag, name) in LOADS or name in ("xlink:href", "background"):
                if tag == "link" and (a.get("rel") or "") in ("canonical",):
                    continue
                urls = [u.strip().split(" ")[0] for u in value.split(",")] if name == "srcset" else [value]
                self.loads += [(f"{tag}.{name}", u) for u in urls if u]
            if name == "style":
                self.loads += [(f"{tag}.style", u or i) for u, i in CSS_URL.findall(value)]
            if name == "http-equiv" and value.lower() == "refresh":
                self.loads.append(("meta.refresh", a.get("content", "")))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "details":
            self.details.append((a.get("class") or "", "open" in a))
        if tag == "summary":
            self._summary = []
        if tag == "style":
            self._style = True

    def handle_endtag(self, tag):
        if tag == "summary" and self._summary is not None:
            self.summaries.append(" ".join("".join(self._summary).split()))
            self._summary = None
        if tag == "style":
            self._style = False

    def handle_data(self, data):
        if self._summary is not None:
            self._summary.append(data)
        if self._style:
            self.loads += [("style", u or i) for u, i in CSS_URL.findall(data)]
        self.text.append(data)


def _other_host(url: str) -> bool:
    """True for a URL that names a host (http://, https://, //host, ws://, ftp://...)."""
    url = url.strip()
    return url.startswith("//") or bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url)) and not url.startswith("file:")


def _local(page: Path, url: str) -> tuple[Path | None, str]:
    """The file and fragment a relative URL of `page` points to (None for data:, javascript:...)."""
    if SCHEME.match(url) or url.startswith("//"):
        return None, ""
    parts = urllib.parse.urlsplit(url)
    if not parts.path:
        return page, urllib.parse.unquote(parts.fragment)
    target = (page.parent / urllib.parse.unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, urllib.parse.unquote(parts.fragment)


def site_pages(out: Path) -> list[Path]:
    """The HTML pages of a built site (not the theme's static files or the copied sources)."""
    return sorted(p for p in out.rglob("*.html") if p.relative_to(out).parts[0] not in ("_static", "_sources"))


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    pages: int = 0
    links: int = 0
    anchors: int = 0
    images: int = 0
    resources: int = 0
    external_links: list[str] = field(default_factory=list)


def check(out: Path = OUT, root: Path = ROOT) -> Report:
    """Every page, internal link, anchor and image; what a page loads comes from the site only.

    A page may *link* to another host with an ordinary hyperlink that the prose itself makes (an
    `<a class="reference external">` a reader chooses to follow); nothing a page *loads* when it opens
    (scripts, styles, fonts, images, frames, CSS url() and @import) may come from another host.
    """
    report = Report()
    out = out.resolve()
    pages = site_pages(out)
    parsed: dict[Path, Page] = {}
    for path in pages:
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        parsed[path.resolve()] = page
    report.pages = len(pages)
    if not pages:
        report.problems.append(f"no pages under {out}")
        return report

    expected = ["index.html"] + [p.with_suffix(".html").name for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    expected += [n for o, n in [("notebooks/glossary.md", "glossary.html"), ("docs/teaching.md", "teaching.html"),
                                ("CONTRIBUTING.md", "contributing.html")] if (root / o).exists()]
    expected += ["search.html", "searchindex.js"]
    report.problems += [f"missing page {name}" for name in expected if not (out / name).exists()]

    for path, page in parsed.items():
        rel = path.relative_to(out)
        for href, cls in page.links:
            if _other_host(href):
                if "external" in cls.split():
                    report.external_links.append(f"{rel}: {href}")
                else:
                    report.problems.append(f"{rel}: a link to another host that the prose does not make: {href}")
                continue
            target, frag = _local(path, href)
            if target is None:
                continue
            report.links += 1
            if not target.exists():
                report.problems.append(f"{rel}: broken link {href}")
                continue
            if frag and target.suffix == ".html":
                report.anchors += 1
                other = parsed.get(target)
                if other is None or frag not in other.ids:
                    report.problems.append(f"{rel}: link {href}: no anchor #{frag} in {target.name}")
        for what, url in page.loads:
            if _other_host(url):
                report.problems.append(f"{rel}: loads {url} from another host ({what})")
                continue
            target, _ = _local(path, url)
            if target is None:
                continue
            report.resources += 1
            if not target.exists():
                report.problems.append(f"{rel}: {what} {url} is missing")
        for src in page.images:
            target, _ = _local(path, src)
            if target is not None and (not target.exists() or target.stat().st_size == 0):
                report.problems.append(f"{rel}: image {src} missing or empty")
        report.images += len(page.images)

    for css in sorted(out.rglob("*.css")):
        text = css.read_text(encoding="utf-8", errors="replace")
        for u, i in CSS_URL.findall(text):
            url = u or i
            if _other_host(url):
                report.problems.append(f"{css.relative_to(out)}: loads {url} from another host")
            else:
                target, _ = _local(css, url)
                if target is not None and not target.exists():
                    report.problems.append(f"{css.relative_to(out)}: url({url}) is missing")

    for notebook in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        path = (out / notebook.with_suffix(".html").name).resolve()
        page = parsed.get(path)
        if page is None:
            continue
        report.problems += _check_notebook_page(notebook, path.name, page)
    return report


def _check_notebook_page(notebook: Path, name: str, page: Page) -> list[str]:
    """A notebook's page has its plots, its solutions collapsed and no widget view."""
    problems = []
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    images = widgets = solutions = 0
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            images += any(k.startswith("image/") for k in data)
            widgets += WIDGET_MIME in data
        solutions += cell["cell_type"] == "code" and "solution" in cell.get("metadata", {}).get("tags", [])
    shown = [src for src in page.images if "_images/" in src or src.startswith("data:image")]
    if len(shown) < images:
        problems.append(f"{name}: {len(shown)} images for the notebook's {images} plots")
    collapsed = [s for s in page.summaries if s.startswith(SOLUTION_PROMPTS["code_prompt_show"])]
    if len(collapsed) != solutions:
        problems.append(f"{name}: {len(collapsed)} collapsed solutions for the notebook's {solutions}")
    if any(is_open for _, is_open in page.details):
        problems.append(f"{name}: a collapsed cell is open")
    text = " ".join(page.text)
    if text.count("Interactive widget.") != widgets:
        problems.append(f"{name}: {widgets} widget views, {text.count('Interactive widget.')} notes in their place")
    return problems


# --------------------------------------------------------------------------------------------------
# Checking in a real browser (headless Chromium through the DevTools protocol)
# --------------------------------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--remote-debugging-port=0", "--window-size=1280,900"]


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """A headless Chromium driven over the DevTools protocol (websocket-client, a Jupyter dependency)."""

    def __init__(self, executable: str, profile: Path):
        import urllib.request

        import websocket

        self.process = subprocess.Popen([executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Network.setCacheDisabled", cacheDisabled=True)
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def pump(self, seconds: float) -> None:
        """Collect events for up to `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.ws.settimeout(left)
            try:
                message = json.loads(self.ws.recv())
            except Exception:  # the socket's timeout: nothing more came
                break
            if "method" in message:
                self.events.append(message)
        self.ws.settimeout(30)

    def open(self, url: str, *, settle: float = 0.8, limit: float = 20) -> list[dict]:
        """Load `url`, wait until it is quiet (no request for `settle` s), return its events."""
        self.events = []
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + limit
        loaded = False
        quiet_since = time.monotonic()
        seen = 0
        while time.monotonic() < deadline:
            self.pump(0.1)
            if len(self.events) != seen:
                seen = len(self.events)
                quiet_since = time.monotonic()
            loaded = loaded or any(e["method"] == "Page.loadEventFired" for e in self.events)
            if loaded and time.monotonic() - quiet_since >= settle:
                break
        if not loaded:
            self.events.append({"method": "timeout", "params": {"url": url}})
        return self.events

    def wait_for(self, expression: str, limit: float = 30, settle: float = 0.8) -> bool:
        """Poll `expression` until it is true, then collect what the page does next; False on time-out."""
        self.events = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                self.pump(settle)
                return True
            self.pump(0.2)
        return False

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path, selector: str | None = None) -> None:
        import base64

        if selector:
            self.evaluate(f"(document.querySelector({json.dumps(selector)}) || document.body)"
                          ".scrollIntoView({block: 'start'}); window.scrollBy(0, -80); true")
            self.pump(0.5)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def failures(events: list[dict]) -> list[str]:
    """Failed or outside requests, script errors and console errors among a page's events."""
    problems, urls = [], {}
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params["requestId"]] = url
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                problems.append(f"request to another host: {url}")
        elif method == "Network.loadingFailed":
            problems.append(f"failed request: {urls.get(params['requestId'], '?')} ({params.get('errorText')}"
                            f"{', blocked: ' + params['blockedReason'] if params.get('blockedReason') else ''})")
        elif method == "Network.responseReceived" and params["response"].get("status", 200) >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            problems.append(f"script error: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            problems.append("console error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"console error: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "timeout":
            problems.append("did not finish loading")
    return problems


# MathJax 2 is done when its queue is empty and every formula holds what it rendered
TYPESET = ("window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0"
           " && Array.from(document.querySelectorAll('.math.notranslate')).filter("
           "e => e.querySelector('math, .MathJax, .MathJax_SVG')).length >= {}")
DEFAULT_SHOTS = [("index.html", None), ("03_forward_pass.html", "div.cell_output img")]


def browser_check(out: Path = OUT, screenshots: Path | None = None, shots=None, executable: str | None = None,
                  search: str = "logit") -> list[str]:
    """Open every page from file:// in headless Chromium: no failed request, no request to another
    host, no script error; math typeset; the search page finds `search`. Screenshots on request."""
    import tempfile

    executable = executable or find_chromium()
    if not executable:
        return ["Chromium not found (Debian: apt-get install chromium; or set CHROMIUM=/path/to/chrome)"]
    out = out.resolve()
    problems = []
    with tempfile.TemporaryDirectory(prefix="site-chromium-") as profile:
        browser = Browser(executable, Path(profile))
        try:
            for path in site_pages(out):
                rel = path.relative_to(out)
                events = browser.open(path.as_uri())
                problems += [f"{rel}: {p}" for p in failures(events)]
                formulas = browser.evaluate("document.querySelectorAll('.math.notranslate').length")
                if formulas:  # MathJax typesets after the load event: wait for it, then for its fonts
                    typeset = browser.wait_for(TYPESET.format(formulas))
                    problems += [f"{rel}: {p}" for p in failures(browser.events)]
                    if not typeset:
                        problems.append(f"{rel}: the {formulas} formulas were not all typeset by MathJax")
            events = browser.open((out / "search.html").as_uri() + "?q=" + urllib.parse.quote(search), settle=1.5)
            problems += [f"search.html?q={search}: {p}" for p in failures(events)]
            found = browser.evaluate("document.querySelectorAll('#search-results li').length") or 0
            if not found:
                problems.append(f"search.html: no result for {search!r}")
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                for name, selector in shots or DEFAULT_SHOTS:
                    browser.open((out / name).as_uri())
                    browser.screenshot(screenshots / (Path(name).stem + ".png"), selector)
        finally:
            browser.close()
    return problems


# --------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "check", "browser"])
    parser.add_argument("--out", default=str(OUT), help="the site's folder (default: site/)")
    parser.add_argument("--fresh", action="store_true", help="build: from scratch, no cached doctrees")
    parser.add_argument("--screenshots", help="browser: write PNG screenshots of two pages here")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.command == "build":
        build(out, fresh=args.fresh)
        return 0
    if args.command == "check":
        report = check(out)
        for problem in report.problems:
            print(f"site: {problem}")
        print(f"site: {report.pages} pages, {report.links} internal links ({report.anchors} to anchors), "
              f"{report.images} images, {report.resources} loaded files, all from the site; "
              f"{len(report.external_links)} hyperlinks to other hosts in the prose"
              + (f"; {len(report.problems)} problems" if report.problems else ""))
        return 1 if report.problems else 0
    started = time.perf_counter()
    problems = browser_check(out, Path(args.screenshots) if args.screenshots else None)
    for problem in problems:
        print(f"site: {problem}")
    pages = len(site_pages(out))
    print(f"site: {pages} pages opened in headless Chromium from file:// in {time.perf_counter() - started:.1f} s: "
          + (f"{len(problems)} problems" if problems else "no failed request, nothing from another host"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
