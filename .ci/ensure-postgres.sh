#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for the
# `postgres` role, as the test suite expects (POLYLOGUE_TEST_POSTGRES_URL default).
# Installs Debian's postgresql package when no server is installed, starts the cluster
# when it is down. Needs root (CI runs as root); prints what it did.
set -euo pipefail

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if command -v pg_isready >/dev/null && ready; then
  echo "postgres: already accepting connections on 127.0.0.1:5432"
else
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "postgres: no cluster installed; installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  edited=""
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    echo "postgres: allowing trust auth from 127.0.0.1 (test machine only)"
    sed -i '1i host all all 127.0.0.1/32 trust\nlocal all all trust' "$hba"
    edited=yes
  fi
  echo "postgres: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  # A package install may have started the server already, with its own pg_hba.conf.
  [ -n "$edited" ] && { pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true; }
  for _ in $(seq 1 60); do ready && break; sleep 1; done
  ready || { echo "postgres: server did not come up" >&2; exit 1; }
fi

# The databases the tests and docs use.
for db in test root; do
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db"
  fi
done
echo "postgres: ready"
