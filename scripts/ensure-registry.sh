#!/usr/bin/env bash
# Builds Apicurio Registry, a Confluent-compatible schema registry, from its jars on Maven
# Central (through Maven and Quarkus: scripts/registry/pom.xml) into
# .tools/registry/apicurio-<version>, unless already built from the same pom.xml. Prints that
# folder (run its quarkus-run.jar, or use scripts/registry.sh). Needs Java 17+ and Maven. Takes
# about 10-15 s with a warm ~/.m2 and 25 s to 2 min with an empty one (it fetches about 210 MB);
# the result is about 130 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
pom=scripts/registry/pom.xml
version=$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$pom")
app="$PWD/.tools/registry/apicurio-$version"
sum=$(sha256sum "$pom" | cut -d' ' -f1)
if [ -f "$app/.complete" ] && [ "$(cat "$app/.complete")" = "$sum" ]; then
  echo "$app"
  exit 0
fi
command -v java >/dev/null || { echo "ensure-registry: java (17 or newer) is not on PATH" >&2; exit 1; }
command -v mvn >/dev/null || { echo "ensure-registry: mvn (Maven) is not on PATH" >&2; exit 1; }
echo "building Apicurio Registry $version from Maven Central into $app ..." >&2
mkdir -p .tools/registry
build="$(mktemp -d "$PWD/.tools/registry/build.XXXXXX")"
trap 'rm -rf "$build"' EXIT
mvn -q -B -Dstyle.color=never -f "$pom" package -Dregistry.build.dir="$build" >&2
test -f "$build/quarkus-app/quarkus-run.jar"
echo "$sum" >"$build/quarkus-app/.complete"
# A stale build (another pom.xml) goes; one that a concurrent run just finished stays.
if [ -e "$app" ] && [ "$(cat "$app/.complete" 2>/dev/null)" != "$sum" ]; then
  rm -rf "$app"
fi
mv -T "$build/quarkus-app" "$app" 2>/dev/null || [ "$(cat "$app/.complete" 2>/dev/null)" = "$sum" ]
echo "$app"
