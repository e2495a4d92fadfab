"""The API documentation page at `/` and `/docs`: Swagger UI from vendored files.

BentoML's own index page loads Google Tag Manager from googletagmanager.com and FastAPI's
`/docs` loads Swagger UI from a public CDN; neither is acceptable for an HR system (a tracker
on a page about employees; both break without internet). BentoML 1.4 has no setting to drop
the tag from its page, so this router answers `/` and `/docs` first (the mounted app is routed
before BentoML's index) with one page that loads Swagger UI from `/ui/static` and reads the
service's full OpenAPI document, `/docs.json`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from serving.ui.assets import PAGE_HEADERS, STATIC_PATH

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>attrition API</title>
  <link rel="stylesheet" href="{STATIC_PATH}/vendor/swagger-ui/swagger-ui.css">
  <link rel="stylesheet" href="{STATIC_PATH}/docs.css">
  <link rel="icon" href="{STATIC_PATH}/favicon.svg" type="image/svg+xml">
</head>
<body>
  <main id="swagger-ui"></main>
  <script src="{STATIC_PATH}/vendor/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="{STATIC_PATH}/docs.js"></script>
</body>
</html>
"""

# The OpenAPI document's description (`describe_service` in serving.bentoml_compat): text and
# links to this service only, so the page renders nothing from another host.
API_DESCRIPTION = """\
Scores how likely a TechNova employee is to leave, and keeps the trail: every score is stored
before it is answered, with the model, the threshold and who asked.

- Keys: send `X-API-Key: <key>` or `Authorization: Bearer <key>`; roles `read`, `predict`,
  `review`, `audit`.
- The HR page for people: [/ui](/ui).
- A score is a decision aid, not a decision: a person reviews it
  (`POST /predictions/{id}/reviews`).
"""

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
@router.get("/docs", response_class=HTMLResponse)
def docs_page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=PAGE_HEADERS)
