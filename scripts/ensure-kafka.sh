#!/usr/bin/env bash
# Fetches Apache Kafka's broker and tools (jars and their dependencies, from Maven Central,
# through Maven: scripts/kafka/pom.xml) into .tools/kafka-<version>/libs, unless already
# there. Prints that folder. Needs Java 17+ and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
libs="$PWD/.tools/kafka-$version/libs"
if [ -f "$libs/.complete" ]; then
  echo "$libs"
  exit 0
fi
command -v java >/dev/null || { echo "ensure-kafka: java (17 or newer) is not on PATH" >&2; exit 1; }
command -v mvn >/dev/null || { echo "ensure-kafka: mvn (Maven) is not on PATH" >&2; exit 1; }
echo "fetching Apache Kafka $version from Maven Central into $libs ..." >&2
rm -rf "$libs" && mkdir -p "$libs"
mvn -q -B -Dstyle.color=never -f scripts/kafka/pom.xml dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$libs" >&2
touch "$libs/.complete"
echo "$libs"
