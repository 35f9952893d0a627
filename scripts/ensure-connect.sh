#!/usr/bin/env bash
# Fetches Debezium's JDBC sink connector (the plugin archive io.debezium:debezium-connector-jdbc,
# with its PostgreSQL driver, from Maven Central, through Maven) into
# .tools/connect-plugins/debezium-connector-jdbc, unless already there, for the bench's
# Kafka Connect peer. Kafka Connect itself (connect-runtime, connect-json) comes with
# scripts/ensure-kafka.sh's jars. Prints the plugin path. Needs Java 17+ and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
version=3.6.0.Final
plugins="$PWD/.tools/connect-plugins"
stamp="$plugins/.complete-$version"
if [ -f "$stamp" ]; then
  echo "$plugins"
  exit 0
fi
command -v mvn >/dev/null || { echo "ensure-connect: mvn (Maven) is not on PATH" >&2; exit 1; }
echo "fetching Debezium's JDBC sink connector $version from Maven Central into $plugins ..." >&2
rm -rf "$plugins" && mkdir -p "$plugins"
# Run from an empty folder: the unpack goal needs no project, and writes nothing else.
work=$(mktemp -d)
(cd "$work" && mvn -q -B -Dstyle.color=never \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:unpack \
  "-Dartifact=io.debezium:debezium-connector-jdbc:$version:tar.gz:plugin" \
  -DoutputDirectory="$plugins" >&2)
rm -rf "$work"
test -f "$plugins/debezium-connector-jdbc/debezium-connector-jdbc-$version.jar"
touch "$stamp"
echo "$plugins"
