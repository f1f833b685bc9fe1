#!/usr/bin/env bash
# Regenerate the upgrade fixtures (tests/test_upgrade.py) from a release's code:
#   tests/upgrade/make_fixtures.sh [COMMIT]          default: afe337e, the release before the
#                                                    worker/ rooms move
# Extracts COMMIT, runs ITS serve (with this checkout's venv) on a fresh data folder (SQLite)
# and on a fresh PostgreSQL database (127.0.0.1:5432, as the tests use), and writes
# tests/upgrade/<COMMIT>/{sqlite,postgres}/{database.sql,data/}.
set -euo pipefail
cd "$(dirname "$0")/../.."
commit=${1:-afe337e}
admin=${CXR_UPGRADE_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/test}
release=$(mktemp -d /tmp/cxr-release-XXXXXX)
database="cxr_upgrade_$$"
cleanup() {
  rm -rf "$release"
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
git archive "$commit" | tar -x -C "$release"
out=tests/upgrade/$commit
.venv/bin/python tests/upgrade/make_installation.py --release "$release" --out "$out/sqlite"
psql -q "$admin" -c "CREATE DATABASE $database"
.venv/bin/python tests/upgrade/make_installation.py --release "$release" --out "$out/postgres" \
  --database-url "postgresql+psycopg://$(dirname "${admin#postgresql://}")/$database"
