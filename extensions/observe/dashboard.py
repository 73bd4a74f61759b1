"""The operators' dashboard page: a static shell (no data in it) whose script fetches
``<path>/data?window=hour|day`` with the master key and draws the charts as SVG.

The key is typed into the page (or passed once as ``#key=...``: a URL fragment is
never sent to the server, so it does not reach access logs) and kept in the tab's
sessionStorage. No script or font is loaded from elsewhere: the page works offline.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PAGE = Path(__file__).with_name("dashboard.html")


@cache
def dashboard_page() -> bytes:
    """The page's bytes (read on first use, then kept)."""
    return PAGE.read_bytes()
