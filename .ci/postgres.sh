#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the store's contract tests and print its URL.
#
#   export SUBPLAN_TEST_POSTGRES_URL="$(.ci/postgres.sh)"
#   .ci/postgres.sh restart      # restart that server
#
# Installs the Debian `postgresql` package when no server binaries are present, creates a
# cluster owned by `postgres` under $SUBPLAN_PG_DIR (default /tmp/subplan-ci-postgres) with
# trust authentication on loopback only, and starts it on 127.0.0.1:$SUBPLAN_PG_PORT
# (default 54329). Running it again reuses the cluster (and the server, if it is up).
# The cluster is for tests only: fsync is off and anyone on this host may connect.
# Only the URL goes to stdout; progress goes to stderr.
set -euo pipefail

dir="${SUBPLAN_PG_DIR:-/tmp/subplan-ci-postgres}"
port="${SUBPLAN_PG_PORT:-54329}"
url="postgresql://postgres@127.0.0.1:${port}/postgres"

say() { printf '%s\n' "postgres.sh: $*" >&2; }

find_bin() {
    local candidate
    for candidate in /usr/lib/postgresql/*/bin; do
        if [[ -x "$candidate/initdb" ]]; then
            bin="$candidate" # the glob sorts, so the newest version wins
        fi
    done
}

bin=""
find_bin
if [[ -z "$bin" ]]; then
    say "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends postgresql >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends postgresql >&2
    fi
    find_bin
    [[ -n "$bin" ]] || { say "no initdb under /usr/lib/postgresql/*/bin after installing"; exit 1; }
fi

as_postgres() { runuser -u postgres -- "$@"; }
data="$dir/data"

# `.ci/postgres.sh restart`: restart the running test server (the tests of a lost run
# lock end every session this way).
if [[ "${1:-}" == "restart" ]]; then
    as_postgres "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 restart -m fast >&2
    exit 0
fi

if as_postgres "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    say "reusing the server running in $data"
    printf '%s\n' "$url"
    exit 0
fi

if [[ ! -f "$data/PG_VERSION" ]]; then
    # a half-made cluster from an interrupted run is started over
    mkdir -p -m 700 -- "$dir"
    chown postgres: -- "$dir"
    rm -rf -- "$data"
    as_postgres "$bin/initdb" --pgdata="$data" --username=postgres --auth=trust \
        --encoding=UTF8 --no-locale >&2
    # Settings go into the file rather than through `pg_ctl -o`, which passes its
    # options through a shell.
    as_postgres tee -a "$data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    # initdb's pg_hba.conf trusts local connections; keep loopback only.
    as_postgres tee "$data/pg_hba.conf" >/dev/null <<'EOF'
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
fi

as_postgres "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >&2 || {
    say "the server did not start; its log follows"
    cat -- "$dir/server.log" >&2 || true
    exit 1
}
printf '%s\n' "$url"
