# Shell functions the demo and the bench scripts share (sourced, not run).

# wait_port PORT [LOG]: waits up to 30 s until something listens on 127.0.0.1:PORT; says
# where to look (LOG) if nothing does.
wait_port() {
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1${2:+; see $2}" >&2
  return 1
}

# free_port FROM SPAN: a port in FROM..FROM+SPAN-1 that nothing listens on (random, so
# that runs side by side rarely race for one).
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$(($1 + RANDOM % $2))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port in $1..$(($1 + $2 - 1))" >&2
  return 1
}

# seed_config NAME BOOTSTRAP BASE_URL [TOPIC] [DEFAULTS_LINE]: the seed pipeline's config
# (the source document's rest_api_source dict, key for key, plus where Kafka is) on stdout.
seed_config() {
  cat <<TOML
# The seed's rest_api_source dict, key for key, plus where Kafka is.
[pipeline]
name = "$1"

[kafka]
"bootstrap.servers" = "$2"

[client]
base_url = "$3"
auth = { type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }

[resource_defaults]
primary_key = "id"
write_disposition = "merge"
${5:-}

[[resources]]
name = "communications_data"
${4:+topic = \"$4\"}
endpoint = { path = "/v1/resource", data_selector = "data", paginator = { type = "offset", limit = 100 } }
TOML
}
