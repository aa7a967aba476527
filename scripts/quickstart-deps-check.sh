#!/usr/bin/env bash
# The README's first command, `cargo run --example quickstart` from the repository root, must
# build on a machine with nothing but a Rust toolchain: no libpq, no libmysqlclient, no OpenSSL.
#
# `cargo run --example quickstart` (no -p) selects the workspace's default members and, because
# an example is a dev target, resolves features over them *including their dev-dependencies*
# (resolver 2/3 unify features across the selected packages). `cargo tree` with no -p and the
# normal, build and dev edges resolves the same package set the same way; --target all makes the
# answer independent of the host. This graph is a superset of the example's own build graph, so
# a crate absent here is absent from the quickstart build.
#
# Needs no compilation (cargo tree only reads manifests and the lock file).
set -euo pipefail
cd "$(dirname "$0")/.."

FORBIDDEN=(pq-sys mysqlclient-sys openssl-sys)

tree=$(cargo tree --target all -e normal,build,dev --prefix none --format '{p}')
# a line per package: "name vX.Y.Z (...)"; keep the names
names=$(printf '%s\n' "$tree" | awk '{print $1}' | sort -u)

status=0
for crate in "${FORBIDDEN[@]}"; do
  if printf '%s\n' "$names" | grep -qx -- "$crate"; then
    echo "quickstart-deps-check: \`cargo run --example quickstart\` would build $crate (a system library)." >&2
    echo "  what pulls it in (default members, normal+build+dev edges, all targets):" >&2
    cargo tree --target all -e normal,build,dev -i "$crate" 2>&1 | sed 's/^/    /' >&2
    status=1
  fi
done
if [ "$status" -eq 0 ]; then
  echo "quickstart-deps-check: ok — no ${FORBIDDEN[*]} in the quickstart's graph ($(printf '%s\n' "$names" | wc -l) packages)"
fi
exit "$status"
