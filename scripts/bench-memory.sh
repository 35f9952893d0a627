#!/usr/bin/env bash
# Peak memory against the number of records (issue 16: under 64 MB per binary at 1M, and
# no more than 10% higher at 10M). On a one-node Apache Kafka of its own, for each count:
# the extractor publishes that many demo records to a fresh pipeline (transactions on), then
# the loader replays the topic into a fresh SQLite file (--until-caught-up). Prints each
# run's wall time and peak RSS (/usr/bin/time), then the 10M peaks against the 1M ones.
#
#   scripts/bench-memory.sh                 # 1,000,000 and 10,000,000 records (~5 min)
#   scripts/bench-memory.sh 100000 1000000  # other counts: the last is compared with the first
#
# Needs about 6 GB of disk under .bench/ at 10M (the topic and the SQLite file).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/lib.sh

counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000000 10000000)
kafka_libs=$(scripts/ensure-kafka.sh)
cargo build --release --locked --bins
bin=target/release
run=.bench/memory
rm -rf "$run" && mkdir -p "$run"
export API_KEY="mem-$RANDOM$RANDOM"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

broker_port=$(free_port 19600 200)
scripts/kafka-broker.sh "$run/kafka" "$broker_port" "$((broker_port + 1))" >"$run/kafka.log" 2>&1 &
pids+=($!)
wait_port "$broker_port"

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' (with uncommitted changes)'); broker: kafka ($(basename "$(dirname "$kafka_libs")"))"
printf '%-10s %-10s %10s %10s\n' stage records wall_s peak_MB
declare -A peak
for n in "${counts[@]}"; do
  api_port=$(free_port 18100 800)
  DEMO_API_KEY="$API_KEY" "$bin/demo-api" --listen "127.0.0.1:$api_port" --records "$n" \
    --latency-ms 0 >"$run/api-$n.out" 2>"$run/api-$n.log" &
  api_pid=$!
  pids+=("$api_pid")
  wait_port "$api_port" "$run/api-$n.log"
  seed_config "m$n" "127.0.0.1:$broker_port" "http://127.0.0.1:$api_port" "m$n.communications_data" >"$run/m$n.toml"
  for stage in extractor loader; do
    if [ "$stage" = extractor ]; then
      cmd=("$bin/extractor" --config "$run/m$n.toml")
    else
      cmd=("$bin/loader" --config "$run/m$n.toml" --destination "sqlite://$run/m$n.db" --until-caught-up --no-progress)
    fi
    if ! /usr/bin/time -f "%e %M" -o "$run/$stage-$n.time" "${cmd[@]}" >"$run/$stage-$n.out" 2>"$run/$stage-$n.log"; then
      echo "$stage failed at $n records; see $run/$stage-$n.log" >&2
      exit 1
    fi
    read -r wall kb <"$run/$stage-$n.time"
    # Every record published and loaded, or the peak means nothing.
    if [ "$stage" = extractor ]; then
      done_n=$(awk '/^total/ { for (i = 1; i <= NF; i++) if ($i ~ /^records=/) { split($i, a, "="); print a[2] } }' "$run/$stage-$n.out")
    else
      done_n=$(awk '/^loaded/ { for (i = 1; i <= NF; i++) if ($i ~ /^records=/) { split($i, a, "="); print a[2] } }' "$run/$stage-$n.out")
    fi
    if [ "${done_n:-0}" != "$n" ]; then
      echo "$stage handled ${done_n:-no} records of $n; see $run/$stage-$n.out" >&2
      exit 1
    fi
    peak[$stage-$n]=$kb
    awk -v s="$stage" -v n="$n" -v w="$wall" -v kb="$kb" 'BEGIN { printf "%-10s %-10s %10s %10.1f\n", s, n, w, kb / 1024 }'
  done
  kill "$api_pid" 2>/dev/null || true
  rm -f "$run/m$n.db" "$run/m$n.db-wal" "$run/m$n.db-shm"
done
first=${counts[0]}
last=${counts[$((${#counts[@]} - 1))]}
for stage in extractor loader; do
  awk -v a="${peak[$stage-$first]}" -v b="${peak[$stage-$last]}" -v s="$stage" -v f="$first" -v l="$last" \
    'BEGIN { printf "%s peak at %d records: %+.1f%% against %d\n", s, l, (b - a) * 100 / a, f }'
done
