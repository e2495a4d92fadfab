"""The HR page (`/ui`) and the API documentation page, served by the service itself.

Everything a page loads comes from this package's `static/` folder (vendored htmx, chart.js and
Swagger UI, pinned in `static/vendor/VENDORED.md`): no page makes a browser fetch anything from
another host, and the pages work on a network without internet.
"""
