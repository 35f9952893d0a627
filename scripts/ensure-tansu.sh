#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-compatible broker in Rust) unless `tansu --version`
# already answers. Tests and the demo run it with SQLite storage.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
if tansu --version >/dev/null 2>&1; then
  exit 0
fi
echo "installing tansu 0.6.0 (cargo install, about 8 minutes on 2 cores)..." >&2
cargo install tansu --version 0.6.0 --locked --features libsql
tansu --version >/dev/null
