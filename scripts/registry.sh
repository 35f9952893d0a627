#!/usr/bin/env bash
# Runs Apicurio Registry, a Confluent-compatible schema registry, with in-memory storage (H2),
# for the tests and the demo:
#
#   scripts/registry.sh PORT [key=value ...]
#
# It listens on 127.0.0.1:PORT; Confluent's REST API is under /apis/ccompat/v7 (and /v6), so
# clients take http://127.0.0.1:PORT/apis/ccompat/v7 as the registry URL. It answers about 2-4 s
# after the start. Builds it first if needed (scripts/ensure-registry.sh). The log goes to
# stdout. The process becomes the JVM (exec), so signalling its pid stops the registry (exit
# code 143 on SIGTERM); what it stored goes with it. Extra key=value arguments are Apicurio or
# Quarkus settings, e.g. registry.ccompat.use-canonical-hash=true (the same schema text with other
# whitespace or key order then gets the same id, as in Confluent's registry, and is returned in
# canonical form). REGISTRY_JVM_OPTS replaces the default JVM options below.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 PORT [key=value ...]" >&2
  exit 2
fi
port="$1"; shift
here="$(cd "$(dirname "$0")" && pwd)"
app="$("$here/ensure-registry.sh")"
# C1 only and the serial GC: about 1 s faster to start and a smaller footprint than the
# defaults, and plenty for a test's load.
java_opts=(${REGISTRY_JVM_OPTS:--Xms64m -Xmx512m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC})
props=()
for kv in "$@"; do props+=("-D$kv"); done
exec java "${java_opts[@]}" \
  -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" "${props[@]}" \
  -jar "$app/quarkus-run.jar"
