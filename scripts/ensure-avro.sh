#!/usr/bin/env bash
# Fetches Apache Avro's Java library (and its dependencies, from Maven Central, through Maven:
# scripts/avro/pom.xml) into .tools/avro-<version>/libs, unless already there. Prints that
# folder. Needs Java 17+ and Maven. The interop tests run tests/interop/DecodeSingleObject.java
# with it.
set -euo pipefail
cd "$(dirname "$0")/.."
pom=scripts/avro/pom.xml
version=$(sed -n 's:.*<avro.version>\(.*\)</avro.version>.*:\1:p' "$pom")
libs="$PWD/.tools/avro-$version/libs"
mkdir -p .tools
# Tests running in parallel may call this at once: one fetches, the others wait.
exec 9>.tools/avro.lock
flock 9
if [ -f "$libs/.complete" ]; then
  echo "$libs"
  exit 0
fi
command -v java >/dev/null || { echo "ensure-avro: java (17 or newer) is not on PATH" >&2; exit 1; }
command -v mvn >/dev/null || { echo "ensure-avro: mvn (Maven) is not on PATH" >&2; exit 1; }
echo "fetching Apache Avro $version from Maven Central into $libs ..." >&2
rm -rf "$libs" && mkdir -p "$libs"
mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$libs" >&2
touch "$libs/.complete"
echo "$libs"
