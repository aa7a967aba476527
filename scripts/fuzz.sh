#!/usr/bin/env bash
# Run the cargo-fuzz targets in fuzz/ for a while each (needs a nightly toolchain and
# cargo-fuzz: `rustup toolchain install nightly && cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh                  # every target, 25 s each (what scripts/test.sh runs)
#   scripts/fuzz.sh 600              # every target, 10 minutes each
#   scripts/fuzz.sh 3600 kms_box     # one target for an hour
#
# New inputs go to a scratch corpus (.tmp/fuzz-corpus/<target>, seeded from fuzz/corpus), so the
# committed corpus changes only when you copy a file in. A crash stops the run with the input in
# fuzz/artifacts/<target>/: fix the defect, then add the input to fuzz/corpus/<target>/ so
# tests/fuzz_corpus.rs replays it on stable from then on. Prints one line per target:
# executions, seconds, corpus size and findings. FUZZ_JOBS=N runs N processes per target.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT/fuzz"
SECONDS_EACH=${1:-25}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi
nice -n 19 cargo +nightly fuzz build -O >&2
status=0
jobs=()
# several processes per target only when asked (libFuzzer then writes fuzz-N.log in fuzz/)
[ "${FUZZ_JOBS:-1}" -gt 1 ] && jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
for t in "${TARGETS[@]}"; do
  scratch="$ROOT/.tmp/fuzz-corpus/$t"
  mkdir -p "$scratch" "$ROOT/.tmp/fuzz-logs"
  log="$ROOT/.tmp/fuzz-logs/$t.log"
  if nice -n 19 cargo +nightly fuzz run -O "$t" "$scratch" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 \
      "${jobs[@]}" >"$log" 2>&1; then
    found=0
  else
    found=1; status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$SECONDS_EACH")
  corpus=$(find "$scratch" -type f | wc -l)
  printf '%-18s %12s executions in %4s s, corpus %5s, findings %s\n' "$t" "$runs" "$secs" "$corpus" "$found"
  [ "$found" -eq 0 ] || tail -40 "$log" >&2
done
exit $status
