#!/bin/sh
# Re-vendor the pages' front-end files from the npm registry at the pinned versions (needs npm).
# The files are committed: serving and testing need neither npm nor internet. Bump a version
# here, run this script, and review the diff and the licence files.
set -eu
HTMX=2.0.11
CHARTJS=4.6.1
SWAGGER_UI=5.35.0
AXE_CORE=4.14.1
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund \
  "htmx.org@$HTMX" "chart.js@$CHARTJS" "swagger-ui-dist@$SWAGGER_UI" "axe-core@$AXE_CORE"
n=node_modules
v="$root/serving/ui/static/vendor"
mkdir -p "$v/htmx" "$v/chartjs" "$v/swagger-ui" "$root/tests/browser/vendor/axe-core"
cp "$n/htmx.org/dist/htmx.min.js" "$n/htmx.org/LICENSE" "$v/htmx/"
cp "$n/chart.js/dist/chart.umd.min.js" "$n/chart.js/LICENSE.md" "$v/chartjs/"
cp "$n/swagger-ui-dist/swagger-ui-bundle.js" "$n/swagger-ui-dist/swagger-ui.css" \
  "$n/swagger-ui-dist/swagger-ui-bundle.js.LICENSE.txt" "$n/swagger-ui-dist/LICENSE" \
  "$n/swagger-ui-dist/NOTICE" "$v/swagger-ui/"
cp "$n/axe-core/axe.min.js" "$n/axe-core/LICENSE" "$root/tests/browser/vendor/axe-core/"
echo "vendored htmx $HTMX, chart.js $CHARTJS, swagger-ui $SWAGGER_UI, axe-core $AXE_CORE"
