#!/usr/bin/env bash
# Benchmark, not a test: the whole vmx-check process against kvm-ok
# (Debian cpu-checker) on this machine. Needs hyperfine and cpu-checker
# (apt-get install -y hyperfine cpu-checker). Figures go in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p user-app
# Optional: the static, LTO build the notes compare (flags apply to the
# target only because --target is given, so proc-macros still build).
if [[ "${STATIC:-0}" == 1 ]]; then
    CARGO_TARGET_DIR=target/bench-static CARGO_PROFILE_RELEASE_LTO=true \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_STRIP=true \
        RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release -p user-app --target x86_64-unknown-linux-gnu
    extra=("target/bench-static/x86_64-unknown-linux-gnu/release/vmx-check check")
else
    extra=()
fi
# -N: no shell in between; -i: both exit 1 on a machine without VT-x.
hyperfine -N -i --warmup 30 --runs "${RUNS:-500}" \
    /bin/true 'target/release/vmx-check check' "${extra[@]}" kvm-ok "$@"
