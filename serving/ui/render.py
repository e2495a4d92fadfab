"""Rendering the HR page: the Jinja environment (templates in `templates/`, autoescaped, fr-FR
filters), the words the pages use for the data's codes, and the pages the gate answers itself
(the sign-in form, error pages).

Every page answer carries `serving.ui.assets.PAGE_HEADERS` (the Content-Security-Policy that
keeps the pages self-hosted and free of inline scripts).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse
from starlette.types import Scope

from serving.authentication import (
    SIGN_IN_COOKIE,
    SIGN_IN_PATH,
    caller_of,
    cookie_header,
    cookies,
    session_of,
)
from serving.ui import formatting
from serving.ui.assets import PAGE_HEADERS, STATIC_PATH

Headers = list[tuple[bytes, bytes]]

BANDS = {"low": "Faible", "medium": "Moyen", "high": "Élevé"}
DECISIONS = {"agree": "D'accord", "disagree": "Pas d'accord", "no_action": "Aucune action"}
DRIFT_STATUSES = {
    "stable": "Stable",
    "watch": "À surveiller",
    "drift": "Dérive",
    "insufficient_data": "Données insuffisantes",
}
# The page title of an error, by status; the envelope's own message follows it.
ERROR_TITLES = {
    400: "Requête incorrecte",
    401: "Connexion refusée",
    403: "Accès refusé",
    404: "Page introuvable",
    405: "Méthode non autorisée",
    413: "Requête trop volumineuse",
    422: "Données invalides",
    429: "Trop de tentatives",
    503: "Service indisponible",
}

# What an error means for the person at the page, by the envelope's code (its message, in
# English like the API's, follows as the detail).
ERROR_HINTS = {
    "missing_api_key": "Saisissez votre clé d'API.",
    "invalid_api_key": "Cette clé d'API est inconnue.",
    "revoked_api_key": "Cette clé d'API a été révoquée ; demandez-en une nouvelle.",
    "csrf_failed": "Le formulaire a expiré ou ne vient pas de ces pages : rechargez la page.",
    "forbidden": "Votre clé n'a pas le rôle nécessaire pour cette page ou cette action.",
    "too_many_requests": "Trop d'échecs de connexion depuis cette adresse : patientez.",
    "not_found": "Cette page, ou cet employé, n'existe pas ici.",
    "validation_error": "Une valeur envoyée n'est pas valide.",
}


class Renderer:
    """Templates with the pages' filters; `page(...)` answers a full page."""

    def __init__(self, time_zone: str) -> None:
        self.env = Environment(
            loader=PackageLoader("serving.ui", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            number=formatting.number,
            percent=formatting.percent,
            moment=partial(formatting.moment, zone=ZoneInfo(time_zone)),
            day=formatting.day,
            band=lambda code: BANDS.get(code, code),
            decision=lambda code: DECISIONS.get(code, code),
            drift_status=lambda code: DRIFT_STATUSES.get(code, code),
        )
        self.env.globals.update(static=STATIC_PATH, bands=BANDS, decisions=DECISIONS)

    def html(self, template: str, scope: Scope, **context: Any) -> str:
        """A template rendered with who is signed in (name, roles, the session's CSRF token)."""
        live = session_of(scope)
        return self.env.get_template(template).render(
            caller=caller_of(scope),
            csrf_token=live.csrf_token if live else None,
            **context,
        )

    def page(self, template: str, scope: Scope, **context: Any) -> HTMLResponse:
        return self.respond(self.html(template, scope, **context))

    def respond(self, html: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> HTMLResponse:
        """A 200 page with `PAGE_HEADERS` (and `extra`, e.g. a cookie)."""
        response = HTMLResponse(html, headers=PAGE_HEADERS)
        response.raw_headers.extend(extra)
        return response

    def sign_in(self, scope: Scope, error: dict[str, Any] | None = None) -> tuple[str, Headers]:
        """The sign-in form with its double-submit CSRF token: the browser's, or a new one set
        as a cookie (HttpOnly, SameSite=Strict, only sent to the form)."""
        token = cookies(scope).get(SIGN_IN_COOKIE)
        headers: Headers = []
        if not token:
            token = secrets.token_urlsafe(32)
            cookie = cookie_header(
                SIGN_IN_COOKIE,
                token,
                path=SIGN_IN_PATH,
                secure=scope.get("scheme") == "https",
                max_age=None,
            )
            headers.append((b"set-cookie", cookie.encode()))
        html = self.html("sign_in.html", scope, sign_in_token=token, error=error)
        return html, headers

    def error_page(
        self, scope: Scope, status: int, envelope: dict[str, Any]
    ) -> tuple[bytes, Headers]:
        """The envelope's content as HTML (the gate keeps the status): the sign-in form again
        on the sign-in route; a message htmx puts in the page's alert region for htmx calls;
        else an error page."""
        error = {
            **envelope,
            "title": ERROR_TITLES.get(status, "Erreur"),
            "hint": ERROR_HINTS.get(envelope["error"]),
        }
        headers = [(name.lower().encode(), value.encode()) for name, value in PAGE_HEADERS.items()]
        if scope["path"] == SIGN_IN_PATH:
            html, cookie = self.sign_in(scope, error)
            return html.encode(), headers + cookie
        if any(name.lower() == b"hx-request" for name, _ in scope["headers"]):
            html = self.html("_alert.html", scope, error=error)
            return html.encode(), [
                *headers,
                (b"hx-retarget", b"#alert"),
                (b"hx-reswap", b"innerHTML"),
            ]
        return self.html("error.html", scope, error=error, status=status).encode(), headers
