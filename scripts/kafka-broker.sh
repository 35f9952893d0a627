#!/usr/bin/env bash
# Runs a one-node Apache Kafka (KRaft: broker and controller in one process) in DIR, for
# the tests, the bench and the demo:
#
#   scripts/kafka-broker.sh DIR PORT CONTROLLER_PORT [key=value ...]
#
# Clients connect to 127.0.0.1:PORT; the controller listens on CONTROLLER_PORT. Extra
# key=value arguments are appended to the broker's server.properties. The log directory
# (DIR/data) is formatted on the first start and kept on the next (a restart keeps the
# topics and offsets). The broker's log goes to stdout. The process becomes the JVM (exec), so
# signalling its pid stops the broker. JVM options, as Kafka's own scripts take them:
# KAFKA_HEAP_OPTS (default -Xms256m -Xmx1g), KAFKA_JVM_PERFORMANCE_OPTS (default G1 with
# 20 ms pauses) and KAFKA_JVM_OPTS (added).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 DIR PORT CONTROLLER_PORT [key=value ...]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
dir="$(mkdir -p "$1" && cd "$1" && pwd)"; port="$2"; cport="$3"; shift 3
libs="$("$here/ensure-kafka.sh")"

props="$dir/server.properties"
cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
for kv in "$@"; do printf '%s\n' "$kv" >>"$props"; done

java_opts=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
  ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true}
  "-Dlog4j2.configurationFile=$here/kafka/log4j2.properties" ${KAFKA_JVM_OPTS:-})
# A log directory formatted once (a JVM run of its own, about 1.2 s) and copied for every
# new broker: the format depends on neither the ports nor the directory.
if [ ! -f "$dir/data/meta.properties" ]; then
  template="$(dirname "$libs")/formatted"
  if [ ! -f "$template/meta.properties" ]; then
    scratch="$(mktemp -d "$(dirname "$libs")/format.XXXXXX")"
    sed "s:^log.dirs=.*:log.dirs=$scratch/data:" "$props" >"$scratch/server.properties"
    # 16 random bytes, URL-safe base64, as Kafka's own ids; never starting with `-`, which
    # the storage tool would take for an option (Kafka's Uuid.randomUuid avoids it too).
    cluster_id=-
    while [ "${cluster_id:0:1}" = - ]; do
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    java "${java_opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format \
      --cluster-id "$cluster_id" --config "$scratch/server.properties" >/dev/null
    # Another broker starting at the same time may have made it first: keep either.
    mv -T "$scratch/data" "$template" 2>/dev/null || true
    rm -rf "$scratch"
  fi
  mkdir -p "$dir/data"
  cp -R "$template/." "$dir/data/"
fi
exec java "${java_opts[@]}" -cp "$libs/*" kafka.Kafka "$props"
