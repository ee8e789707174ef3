#!/usr/bin/env sh
# Builds smsgate-bench in release mode and runs the in-process inbound (MO) benchmark, after
# printing the machine it runs on (for BENCHMARKS.md). Extra arguments go to `mo`, e.g.
#   benches/run-mo.sh --messages 100000 --concurrency 64
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bin smsgate-bench
echo "nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')  kernel: $(uname -r)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
./target/release/smsgate-bench mo "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
