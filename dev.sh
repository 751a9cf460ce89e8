#!/usr/bin/env bash
# The two quick-start commands, and the lock both install from:
#   ./dev.sh demo   install pbx-crm into .venv and run the demo on SQLite
#   ./dev.sh test   install what the tests need (PostgreSQL included) and run the whole suite
#   ./dev.sh lock   refresh constraints.txt, the exact versions every install here uses
# Works on a fresh Debian 12 with Python 3.11, as root (missing system packages are installed
# with apt-get); as another user the system packages must already be there.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${PBX_CRM_VENV:-.venv}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "missing system packages: $*; install them (as root: apt-get install $*)"
        exit 1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi
    say "installing pbx-crm$1 into $VENV (versions from constraints.txt)"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -c constraints.txt -e ".$1"
}

# constraints.txt pins every package of a fresh ".[test]" install to an exact version; the
# production install, ./dev.sh and the tests all install through it, so a new upstream release
# changes nothing until the lock is refreshed here and the suite has passed on it. pip-compile
# (pip-tools) resolves setup.cfg with its test extra in a throw-away venv. Arguments go to
# pip-compile: none keeps the current pins and follows setup.cfg's changes; --upgrade takes
# the newest releases setup.cfg allows; --upgrade-package NAME only that one.
lock() {
    LOCK_TOOLS=$(mktemp -d)
    trap 'rm -rf "$LOCK_TOOLS"' EXIT
    python3 -m venv "$LOCK_TOOLS"
    "$LOCK_TOOLS/bin/pip" install -q "pip-tools>=7.4,<8"
    say "resolving setup.cfg [test] into constraints.txt"
    CUSTOM_COMPILE_COMMAND="./dev.sh lock" "$LOCK_TOOLS/bin/pip-compile" -q --extra test \
        --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
        --output-file constraints.txt "$@" setup.cfg
}

# Start the local PostgreSQL cluster (installing it if needed) and export the URL of a test
# role that may create databases: each test run makes and drops a database of its own.
ensure_postgres() {
    if [ -n "${PBX_CRM_TEST_POSTGRES_URL:-}" ]; then
        say "using PostgreSQL from PBX_CRM_TEST_POSTGRES_URL"
        return
    fi
    command -v pg_lsclusters >/dev/null || apt_install postgresql
    local version cluster port status
    read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1) || true
    if [ -z "${version:-}" ]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        pg_createcluster "$version" main >/dev/null
        read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
    fi
    if [ "$status" != online ]; then
        say "starting PostgreSQL $version/$cluster"
        pg_ctlcluster "$version" "$cluster" start
    fi
    local psql=(psql -X -q -v ON_ERROR_STOP=1 -p "$port")
    if [ "$(id -u)" = 0 ]; then psql=(runuser -u postgres -- "${psql[@]}"); fi
    "${psql[@]}" -d postgres <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pbx_crm_test') THEN
    CREATE ROLE pbx_crm_test LOGIN CREATEDB PASSWORD 'pbx_crm_test';
  END IF;
END $$;
SQL
    export PBX_CRM_TEST_POSTGRES_URL="postgresql+psycopg://pbx_crm_test:pbx_crm_test@127.0.0.1:$port/postgres"
}

case "${1:-}" in
    demo)
        ensure_venv ""
        "$VENV/bin/pbx-crm" db upgrade
        exec "$VENV/bin/pbx-crm" demo
        ;;
    test)
        shift
        ensure_postgres
        # The browser tests drive Debian's Chromium (Playwright never downloads a browser).
        command -v chromium >/dev/null || apt_install chromium
        ensure_venv "[test]"
        exec "$VENV/bin/pytest" "$@"
        ;;
    lock)
        shift
        lock "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo | ./dev.sh test [pytest arguments] | ./dev.sh lock [pip-compile arguments]" >&2
        exit 2
        ;;
esac
