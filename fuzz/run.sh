#!/usr/bin/env bash
# Runs one of herd's fuzz targets with cargo-fuzz (libFuzzer) for a bounded time.
#
# Usage: fuzz/run.sh [TARGET] [SECONDS] [extra libFuzzer flags...]
#   TARGET   a target in fuzz/fuzz_targets/; default: manifest
#   SECONDS  how long to fuzz; default: 60
#
# cargo-fuzz needs a nightly toolchain (for -Zsanitizer); it is installed with
# `cargo install cargo-fuzz` when missing. The corpus is seeded from manifests/examples/ and
# crds/tests/broken/, so libFuzzer starts from real manifests and known-hostile ones.
# Crashing inputs land in fuzz/artifacts/TARGET/; replay one with
#   cargo +nightly fuzz run --fuzz-dir fuzz TARGET fuzz/artifacts/TARGET/crash-...
#
# Exit status: 0 no problem found, 1 a crash or a build failure, 2 no nightly toolchain.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz_dir")
target=${1:-manifest}
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))

if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz/run.sh: cargo-fuzz needs a nightly Rust toolchain, and none is installed." >&2
    echo "Install one with 'rustup toolchain install nightly', then run this again." >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is missing; installing it with 'cargo install cargo-fuzz'" >&2
    cargo install cargo-fuzz
fi

if [ ! -f "$fuzz_dir/fuzz_targets/$target.rs" ]; then
    echo "fuzz/run.sh: no target '$target'; the targets are:" >&2
    ls "$fuzz_dir/fuzz_targets" | sed 's/\.rs$//' >&2
    exit 1
fi

corpus="$fuzz_dir/corpus/$target"
mkdir -p "$corpus"
if [ "$target" = manifest ]; then
    find "$root/manifests/examples" "$root/crds/tests/broken" -type f \
        -exec cp -f {} "$corpus/" \;
fi

cd "$root"
# -max_len: room for the deeply nested seeds; -timeout: a manifest that takes seconds to
# parse is itself a bug (a denial of service), so report it as one.
exec cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$target" "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=5 "$@"
