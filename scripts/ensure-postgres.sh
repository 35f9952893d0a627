#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the tests and the bench:
# when nothing answers there, installs Debian's `postgresql` (unless installed), starts its
# cluster with trust authentication for local connections, and creates the database
# `test` (the tests' default TEST_POSTGRES_URL: postgres://postgres@127.0.0.1:5432/test).
# A server that already answers is left as it is. Needs root (or sudo) to install and
# start; says so and fails otherwise.
set -euo pipefail

answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if answers; then
  exit 0
fi
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "ensure-postgres: nothing answers on 127.0.0.1:5432 and installing needs root" >&2; exit 1
  fi
}
if ! command -v pg_ctlcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian's postgresql package)..." >&2
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main"; then
  as_root pg_createcluster "$version" main >&2
fi
conf=/etc/postgresql/$version/main
# Local connections only, without passwords: a throwaway server for tests.
as_root tee "$conf/pg_hba.conf" >/dev/null <<HBA
local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
HBA
as_root sed -i "s/^#\?listen_addresses.*/listen_addresses = 'localhost'/; s/^#\?port = .*/port = 5432/" "$conf/postgresql.conf"
as_root pg_ctlcluster "$version" main start >&2 || as_root pg_ctlcluster "$version" main restart >&2
for _ in $(seq 1 100); do answers && break; sleep 0.1; done
answers || { echo "ensure-postgres: PostgreSQL $version did not start; see /var/log/postgresql/" >&2; exit 1; }
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null
fi
echo "PostgreSQL $version answers on 127.0.0.1:5432 (database test, trust auth)" >&2
