"""Headless Chromium for the tests that look at MLflow's web app, and a reader of its rendered tables."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def render(
    binary: str, url: str, profile: Path, *, screenshot: Path | None = None, budget_ms: int = 20000
) -> str:
    """The page's DOM after its JS app has run (and, with ``screenshot``, a picture of the same render)."""
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
    if screenshot is not None:
        command += ["--window-size=1400,1000", f"--screenshot={screenshot}"]
    done = subprocess.run(
        [*command, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
    )
    return done.stdout


VOID_ELEMENTS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class VersionRows(HTMLParser):
    """Collects the text of each table row (``role="row"``) of the rendered MLflow app."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self._depth = 0  # element depth inside the current row; 0 = outside any row

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth:
            self._depth += tag not in VOID_ELEMENTS  # void elements never get an end tag
            title = dict(attrs).get("title")
            if title:
                self.rows[-1] += f" [{title}] "
        elif dict(attrs).get("role") == "row":
            self.rows.append("")
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag not in VOID_ELEMENTS:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.rows[-1] += f" {data}"


def version_rows(dom: str) -> dict[int, str]:
    """The model page's table, one text per version (alias tags read ``@ alias``)."""
    parser = VersionRows()
    parser.feed(dom)
    rows: dict[int, str] = {}
    for text in parser.rows:
        flat = " ".join(text.replace("\xa0", " ").split())
        found = re.search(r"\bVersion (\d+)\b", flat)
        if found:
            rows[int(found.group(1))] = flat
    return rows


class PageText(HTMLParser):
    """The visible text of a rendered page, one chunk per text node (scripts and styles left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._hidden = 0  # depth inside <script>/<style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style") and self._hidden > 0

    def handle_data(self, data: str) -> None:
        text = " ".join(data.replace("\xa0", " ").split())
        if text and not self._hidden:
            self.chunks.append(text)


def page_text(dom: str) -> list[str]:
    """What the page shows as text, in document order."""
    parser = PageText()
    parser.feed(dom)
    return parser.chunks
