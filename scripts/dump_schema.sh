#!/usr/bin/env bash
# Regenerate db/schema.sql from the Alembic migrations at head, on the local PostgreSQL.
# Usage: scripts/dump_schema.sh [postgresql://user@host:port]   (default: postgres@127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
server="${1:-postgresql://postgres@127.0.0.1:5432}"
scratch="attrition_schema_dump_$$"
psql "$server/postgres" -qc "CREATE DATABASE $scratch"
trap 'psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $scratch"' EXIT
.venv/bin/python -c "import db, sys; db.upgrade(sys.argv[1])" "$server/$scratch"
{
  head -3 db/schema.sql
  pg_dump --schema-only --no-owner --no-privileges --no-comments "$server/$scratch" \
    | grep -v -e '^--' -e '^SET ' -e '^SELECT pg_catalog' -e 'restrict ' | cat -s
  echo
  echo "INSERT INTO public.alembic_version (version_num) VALUES ('$(.venv/bin/python -c 'import db; print(db.head_revision())')');"
} > db/schema.sql.new
sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' db/schema.sql.new
mv db/schema.sql.new db/schema.sql
