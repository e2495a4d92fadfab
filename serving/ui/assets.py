"""Static files of the pages, and the Content-Security-Policy that keeps them self-hosted."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/ui/static"

# Every page answer carries this policy: the browser itself refuses to load a script, style,
# image, font or connection from any host other than the service (no CDN, no tag manager), and
# refuses inline scripts. Inline styles stay allowed: chart.js and Swagger UI set them.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def mount_static(app: FastAPI) -> None:
    """Serve `static/` under `/ui/static` (public: no key, no session; nothing personal there)."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="ui-static")
