#!/bin/sh
# Regenerates symbol-order.txt: runs the release sidecar under callgrind through the invoke,
# state and publish benchmarks at a low rate and lists every function of the binary that ran.
# The linker puts those first, so the code a running sidecar touches shares few pages.
#
#   cargo build --release -p outrigger-runtime -p outrigger-e2e --bins
#   runtime/link/record-symbol-order.sh        (needs valgrind, redis-server, nginx, tansu)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
workspace=$(cd "$here/../.." && pwd)
binary="$workspace/target/release/outrigger"
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
OUTRIGGER_BIN="$wrapper" target/release/invoke-bench 5 50 4 >/dev/null
dump_and_stop
OUTRIGGER_BIN="$wrapper" target/release/state-bench 300 >/dev/null
dump_and_stop
OUTRIGGER_BIN="$wrapper" target/release/publish-bench 300 3 >/dev/null
dump_and_stop
python3 "$here/callgrind-symbols.py" "$binary" "$out"/cg.*.* > "$here/symbol-order.txt"
echo "$(wc -l < "$here/symbol-order.txt") symbols in $here/symbol-order.txt"
rm -rf "$out"
