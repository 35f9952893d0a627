#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end tests, which start
# their own broker (Tansu), demo API and binaries on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/ensure-tansu.sh
cargo fmt --all --check
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads "${TEST_THREADS:-2}"
