#!/usr/bin/env bash
# Creates the Python virtualenv .tools/venv with the interop tests' third-party libraries,
# every version pinned in scripts/pytools/requirements.txt (confluent-kafka with its Avro and
# schema-registry extras: Consumer, SchemaRegistryClient, AvroDeserializer, fastavro), unless
# it was already made from the same file (the stamp .tools/venv/.complete holds its sha256).
# Prints the venv's python. Needs python3 (3.9+) with venv and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
req=scripts/pytools/requirements.txt
venv="$PWD/.tools/venv"
sum=$(sha256sum "$req" | cut -d' ' -f1)
mkdir -p .tools
# Tests running in parallel may call this at once: one installs, the others wait.
exec 9>.tools/venv.lock
flock 9
if [ -f "$venv/.complete" ] && [ "$(cat "$venv/.complete")" = "$sum" ]; then
  echo "$venv/bin/python"
  exit 0
fi
command -v python3 >/dev/null || { echo "ensure-pytools: python3 is not on PATH" >&2; exit 1; }
echo "creating $venv from $req ..." >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
echo "$sum" >"$venv/.complete"
echo "$venv/bin/python"
