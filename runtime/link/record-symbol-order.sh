#!/bin/sh
# Regenerates symbol-order.txt: runs the release sidecar under callgrind through the invoke,
# state and publish benchmarks at a low rate and lists every function of the binary that ran.
# The linker puts those first, so the code a running sidecar touches shares few pages.
#
# Symbol names carry a hash of their crate's dependencies, so a dependency update (or a changed
# feature) renames many of them; re-record after one. `--check` only tells how many of the
# listed functions the current release binary still has.
#
#   runtime/link/record-symbol-order.sh        (needs valgrind, redis-server, nginx, tansu)
#   runtime/link/record-symbol-order.sh --check
set -eu
here=$(cd "$(dirname "$0")" && pwd)
workspace=$(cd "$here/../.." && pwd)
binary="$workspace/target/release/outrigger"
if [ "${1:-}" = "--check" ]; then
  listed=$(mktemp)
  sort -u "$here/symbol-order.txt" > "$listed"
  present=$(nm "$binary" | awk 'NF == 3 { print $3 }' | sort -u | comm -12 - "$listed" | wc -l)
  echo "$present of $(wc -l < "$listed") listed functions are in $binary"
  rm -f "$listed"
  exit 0
fi
out=$(mktemp -d)
wrapper="$out/outrigger-under-callgrind"
# The harness kills the sidecar it started with SIGKILL, which callgrind cannot survive to write
# its profile; the wrapper leaves callgrind running so it can be told to dump afterwards.
cat > "$wrapper" <<WRAP
#!/bin/sh
valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
  --compress-pos=no --callgrind-out-file=$out/cg.%p --log-file=$out/vg.%p "$binary" "\$@" &
wait
WRAP
chmod +x "$wrapper"
dump_and_stop() {
  for pid in $(pgrep -f "valgrind.bin --tool=callgrind.*$out" || true); do
    callgrind_control -d "$pid" >/dev/null
    kill -9 "$pid"
  done
}
cd "$workspace"
# Where tests/run-all.sh installs the broker publish-bench starts.
export TANSU_BIN="${TANSU_BIN:-$HOME/.cache/outrigger/tansu/bin/tansu}"
# The sidecar is built on its own, as `cargo build --release` builds it: built together with
# the benchmarks, its dependencies would get their features unified with theirs, and every
# symbol name would differ from the product's.
cargo build --release --locked -p outrigger-e2e --bins
cargo build --release --locked -p outrigger-runtime --bin outrigger
OUTRIGGER_BIN="$wrapper" target/release/invoke-bench 5 50 4 >/dev/null
dump_and_stop
OUTRIGGER_BIN="$wrapper" target/release/state-bench 300 >/dev/null
dump_and_stop
OUTRIGGER_BIN="$wrapper" target/release/publish-bench 300 3 >/dev/null
dump_and_stop
python3 "$here/callgrind-symbols.py" "$binary" "$out"/cg.*.* > "$here/symbol-order.txt"
echo "$(wc -l < "$here/symbol-order.txt") symbols in $here/symbol-order.txt; rebuild with" \
  "cargo build --release -p outrigger-runtime to lay them out"
rm -rf "$out"
