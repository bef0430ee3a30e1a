"""Debian's headless Chromium, started per call with a new empty profile (flags from
/work/shared/reference/tooling.md: no network of its own, no sync, no GPU)."""

from __future__ import annotations

import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic")


def chromium(binary: str, url: str, *args: str, timeout: float = 120) -> str:
    """Run Chromium on ``url`` with ``args`` (``--dump-dom``, ``--screenshot=...``); its
    stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        result = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=timeout,
        )
    if result.returncode != 0:
        raise AssertionError(f"chromium exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


def screenshot(binary: str, url: str, path: Path, width: int = 1400, height: int = 1800) -> Path:
    chromium(binary, url, f"--screenshot={path}", f"--window-size={width},{height}",
             "--hide-scrollbars")
    return path


class Rows(HTMLParser):
    """The body rows (``<tbody><tr>``) of the table with ``id``: attributes and cell texts."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.depth = 0  # >0 inside the wanted table
        self.rows: list[tuple[dict[str, str], list[str]]] = []
        self._cell: list[str] | None = None
        self._body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "table":
            if self.depth or attributes.get("id") == self.table_id:
                self.depth += 1
        elif self.depth and tag == "tbody":
            self._body = True
        elif self.depth and self._body and tag == "tr":
            self.rows.append((attributes, []))
        elif self.depth and tag in ("td", "th") and self.rows:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif tag == "tbody":
            self._body = False
        elif tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1][1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(dom: str, table_id: str) -> list[tuple[dict[str, str], list[str]]]:
    parser = Rows(table_id)
    parser.feed(dom)
    return parser.rows
