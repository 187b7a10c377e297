#!/usr/bin/env bash
# Instructions per acquire + release for every mode of benches/instructions.rs,
# counted by callgrind (steady where wall-clock time is not):
#
#     bash benches/count-instructions.sh
#
# Prints one line per mode: its name and (total - fixed cost) / 200,000.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (Debian package valgrind)" >&2; exit 1; }
binary=$(cargo bench --no-run --bench instructions --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*instructions[^"]*\)".*/\1/p' | tail -n 1)
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" "$1" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
fixed=$(count none)
modes=$(sed -n '/^const MODES/,/^];/s/^ *"\([a-z_]*\)",/\1/p' benches/instructions.rs)
for mode in $modes; do
    total=$(count "$mode")
    printf '%-36s %s\n' "$mode" $(( (total - fixed) / 200000 ))
done
