"""Sphinx configuration of the series' static site. Build it with `make site` (scripts/docsite.py).

scripts/docsite.py stages the sources (the README as the landing page, the notebooks with their
stored outputs, the glossary, the teaching notes, CONTRIBUTING) into a build folder and runs
`sphinx-build -c docs <stage> site`; this file is the configuration, read from docs/.

Everything a page needs is served from the site itself: MathJax comes from the
`jupyter-server-mathjax` wheel (the copy Jupyter's own offline tools serve), the theme's icons and
fonts are in its own static files, and no widget JavaScript is loaded. Notebooks are never
executed: the pages show the outputs that `pytest --nbval` has compared.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# nbformat validates notebooks with jsonschema, whose "iri" format check imports rfc3987_syntax,
# which compiles 38 grammars at import (a third of the build's time on 2 cores). The stored
# notebooks are validated by nbval and the hygiene tests; the site does not need that format.
sys.modules.setdefault("rfc3987_syntax", None)

project = "llm-tutorial"
author = "the llm-tutorial authors"
copyright = "Apache-2.0"
html_title = "How an LLM turns a prompt into text"

extensions = ["myst_nb", "sphinx.ext.mathjax"]
root_doc = "index"
exclude_patterns = ["_build", "_mathjax", "**.ipynb_checkpoints", "jupyter_execute"]
suppress_warnings = ["myst.header"]  # a notebook may start its numbered sections at ##

# --- notebooks: stored outputs only ---------------------------------------------------------------
nb_execution_mode = "off"
nb_merge_streams = True  # consecutive print() lines read as one block, as in Jupyter
nb_ipywidgets_js = {}  # no require.js or widget manager from a CDN; widget views become a note
nb_output_stderr = "show"
nb_code_prompt_show = "Show code cell {type}"
nb_code_prompt_hide = "Hide code cell {type}"

# --- Markdown ---------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "html_image"]
myst_heading_anchors = 3

# --- math, from this site only ---------------------------------------------------------------------
# MathJax 2.7 as shipped by the jupyter-server-mathjax wheel (the copy Jupyter's own offline tools
# serve), copied into _static/mathjax. MathJax parses the TeX and hands the browser MathML, which
# current browsers draw themselves (Chromium since 109, Firefox, Safari) with their own math fonts.
# Its HTML-CSS output would draw nicer glyphs from web fonts, but it probes them with a
# url(about:blank) font face that browsers refuse on file:// pages: a failed request on every page
# with math when the site is opened from a folder or a USB stick. The HTML-CSS jax still starts (it
# is part of the combined configuration), so its STIX-Web font data is copied and named.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "jax": ["input/TeX", "output/NativeMML"],
    "menuSettings": {"renderer": "NativeMML"},
    "HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web",
                 "imageFont": None},
    # MyST marks sections `mathjax_ignore` and the math itself `math`: only the math is typeset
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
                "ignoreClass": "tex2jax_ignore|mathjax_ignore",
                "processClass": "tex2jax_process|mathjax_process|math|output_area"},
    "MathMenu": {"showRenderer": False, "showLocale": False, "showFontMenu": False},
}
# not needed for that: the accessibility explorer, translations, SVG output (4 of MathJax's 12 MB)
MATHJAX_SKIP = ["extensions/a11y", "localization", "jax/output/SVG"]

# --- theme ------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_show_sphinx = False
html_show_sourcelink = False
html_copy_source = True  # the notebook download button serves the stored .ipynb
html_last_updated_fmt = None
# search results without excerpts: an excerpt is fetched from the page, which a browser refuses for
# file:// pages (a site opened from a folder or a USB stick); the results list works either way
html_show_search_summary = False
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,  # the per-page table of contents: sections and their subsections
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "use_issues_button": False,
    "use_edit_page_button": False,
    "launch_buttons": {},
    "navigation_with_keys": False,
    "footer_content_items": [],
    "footer_start": [],
    "footer_end": [],
    "icon_links": [],
    "navbar_persistent": [],  # the sidebar has the search field; no second one in a top bar
    "search_bar_text": "Search the series...",
}
html_context = {"default_mode": "light"}


def _copy_mathjax(app) -> None:
    """Put MathJax into the site's _static folder (once per output folder)."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = Path(app.outdir) / "_static" / "mathjax"
    if (target / "MathJax.js").exists():
        return
    skip = {source / part for part in MATHJAX_SKIP}

    def ignore(folder, names):
        return [n for n in names if Path(folder, n) in skip]

    shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(source / "localization" / "en", target / "localization" / "en", dirs_exist_ok=True)


def setup(app):
    app.connect("builder-inited", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
