#!/usr/bin/env bash
# Regenerates .sqlx/ — the offline data that lets `sqlx::query!` check queries at compile time
# without a database — after a query or a migration changed. Needs the local Postgres.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

server=${TOLLGATE_PG_SERVER:-postgres://postgres@127.0.0.1:5432}
db=${TOLLGATE_SQLX_DB:-tollgate_sqlx_prepare}
psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
for migration in migrations/*.sql; do
  psql "$server/$db" -q -v ON_ERROR_STOP=1 -f "$migration"
done
rm -rf .sqlx && mkdir .sqlx
# Recompiling the crate re-expands every query macro, which writes its data to SQLX_OFFLINE_DIR.
touch control-plane/src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/.sqlx" DATABASE_URL="$server/$db" \
  cargo build -p tollgate-control-plane --lib --bins
psql "$server/postgres" -qc "DROP DATABASE $db"
echo "regenerated $(ls .sqlx | wc -l) query files in .sqlx/"
