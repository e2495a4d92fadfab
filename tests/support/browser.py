"""Driving a real headless Chromium (Debian's /usr/bin/chromium) with Playwright.

No browser is downloaded: Playwright launches the system's Chromium (`make system-deps`
installs it). Each page a test opens records every request the browser makes, so a test can
say that nothing went to another host; axe-core, vendored in tests/browser/vendor, checks the
accessibility of the rendered page.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Request

from tests.support import REPO

AXE = REPO / "tests" / "browser" / "vendor" / "axe-core" / "axe.min.js"
# Where screenshots go (docs/UI.md shows copies of them); CI keeps the folder as an artifact.
SCREENSHOTS = Path(os.environ.get("ATTRITION_SCREENSHOTS", REPO / "reports" / "ui"))
SERIOUS = frozenset({"serious", "critical"})


def chromium_path() -> str:
    """The system's Chromium: Debian names it `chromium`, others `chromium-browser`."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no chromium on PATH: `make system-deps` installs Debian's package")


def launch_arguments() -> list[str]:
    # Chromium refuses to start its sandbox as root (CI's containers run as root).
    return ["--no-sandbox"] if os.geteuid() == 0 else []


@dataclass
class Visit:
    """A browser context on the service, and every URL its pages requested."""

    origin: str
    context: BrowserContext
    requested: list[str] = field(default_factory=list)

    def new_page(self) -> Page:
        page = self.context.new_page()

        def record(request: Request) -> None:
            self.requested.append(request.url)

        page.on("request", record)
        return page

    def foreign_requests(self) -> list[str]:
        """Requests to any origin other than the service's (data: URLs are not requests)."""
        return [
            url
            for url in self.requested
            if not url.startswith("data:") and _origin(url) != self.origin
        ]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def open_visit(browser: Browser, base_url: str) -> Visit:
    """A fresh context (no cookies). CSP is bypassed only so that axe-core can be injected:
    the network log then sees what the page itself asks for, with no policy hiding it."""
    context = browser.new_context(base_url=base_url, bypass_csp=True, locale="fr-FR")
    return Visit(_origin(base_url), context)


def sign_in(page: Page, key: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto("/ui/sign-in")
    page.get_by_label("Clé d'API").fill(key)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/ui")


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as rendered now."""
    page.add_script_tag(path=str(AXE))
    results: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"][:5]],
        }
        for violation in results["violations"]
        if violation["impact"] in SERIOUS
    ]


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
