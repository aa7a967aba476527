#!/usr/bin/env bash
# `cargo package --no-verify` for every publishable crate of the workspace: the manifests are
# complete (description, license, readme, …), every path dependency also has a `version`, and
# the README and LICENSE files are in each package. No compilation (--no-verify); --allow-dirty
# so it runs in a work tree with uncommitted changes.
#
# The crates are packaged in one `cargo package` call: cargo then resolves the dependencies
# between them (kms-fields-diesel → kms-fields → kms-fields-derive) against the packages it just
# built instead of crates.io, where they may not be published yet.
set -euo pipefail
cd "$(dirname "$0")/.."

# every workspace member without `publish = false`
mapfile -t CRATES < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
for p in meta["packages"]:
    if p["id"] in members and p.get("publish") != []:
        print(p["name"])
')
[ "${#CRATES[@]}" -gt 0 ] || { echo "package-check: no publishable crate found" >&2; exit 1; }

args=()
for c in "${CRATES[@]}"; do args+=(-p "$c"); done
echo "package-check: cargo package --no-verify --allow-dirty ${args[*]}"
if ! cargo package --no-verify --allow-dirty "${args[@]}"; then
  echo "package-check: cargo package failed" >&2
  exit 1
fi

# each package carries its README and both licence texts
status=0
for c in "${CRATES[@]}"; do
  files=$(cargo package --no-verify --allow-dirty --list -p "$c")
  for f in README.md LICENSE-MIT LICENSE-APACHE; do
    if ! printf '%s\n' "$files" | grep -qx "$f"; then
      echo "package-check: $c's package has no $f" >&2
      status=1
    fi
  done
done
[ "$status" -eq 0 ] && echo "package-check: ok — ${CRATES[*]}"
exit "$status"
