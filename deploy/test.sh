#!/usr/bin/env bash
# The README's test command: everything the tests need, then every test.
#
#   deploy/test.sh              # all tests (unit, property, end-to-end)
#   deploy/test.sh -p domain    # extra arguments go to `cargo test`
#
# Needs, as on a machine of this kind: PostgreSQL on 127.0.0.1:5432 with
# trust auth (MOTCUA_TEST_POSTGRES overrides the admin URL), `nats-server` on
# the PATH (each test starts its own on a free port), python3 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

command -v nats-server >/dev/null || { echo "nats-server is not on the PATH: apt-get install nats-server" >&2; exit 1; }

pg_url=${MOTCUA_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  say "PostgreSQL does not answer on 127.0.0.1:5432; starting the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi

if ! python3 -c 'import grpc, grpc_tools.protoc' 2>/dev/null; then
  say "installing the Python gRPC client used by the foreign-client test"
  python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

say "cargo test --workspace (PostgreSQL at ${pg_url%%@*}@…)"
exec cargo test --workspace "$@"
