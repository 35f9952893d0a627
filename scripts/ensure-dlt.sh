#!/usr/bin/env bash
# Creates the Python virtualenv .tools/dlt-venv with dlt 1.31.0 and its SQLAlchemy destination
# (the differential test against dlt, tests/tests/dlt_parity.rs), every version pinned in
# scripts/dlt/requirements.txt, unless it was already made from the same file (the stamp
# .tools/dlt-venv/.complete holds its sha256). Prints the venv's python. Needs python3
# (3.11+: the driver reads TOML with tomllib) with venv and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
req=scripts/dlt/requirements.txt
venv="$PWD/.tools/dlt-venv"
sum=$(sha256sum "$req" | cut -d' ' -f1)
mkdir -p .tools
# Tests running in parallel may call this at once: one installs, the others wait.
exec 9>.tools/dlt-venv.lock
flock 9
if [ -f "$venv/.complete" ] && [ "$(cat "$venv/.complete")" = "$sum" ]; then
  echo "$venv/bin/python"
  exit 0
fi
command -v python3 >/dev/null || { echo "ensure-dlt: python3 is not on PATH" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "ensure-dlt: python3 is older than 3.11 (the driver needs tomllib)" >&2; exit 1; }
echo "creating $venv from $req ..." >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
echo "$sum" >"$venv/.complete"
echo "$venv/bin/python"
