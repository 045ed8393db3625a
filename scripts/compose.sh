# Sourced: sets COMPOSE to the Compose command this machine has ("docker compose" with the v2
# plugin, else Compose v1's "docker-compose"), with the project name "strom" (or
# $STROM_COMPOSE_PROJECT).
project=${STROM_COMPOSE_PROJECT:-strom}
if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose -p $project"
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE="docker-compose -p $project"
else
  echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 1
fi
export COMPOSE

# Starts the cluster (extra `-f file` arguments overlay the compose file) and waits until
# every broker's HTTP API answers.
compose_up() {
  $COMPOSE -f docker-compose.yml "$@" up -d >/dev/null 2>&1
  for port in 19644 19645 19646; do
    for _ in $(seq 1 300); do
      curl -sf "http://127.0.0.1:$port/v1/cluster" >/dev/null && break
      sleep 0.2
    done
  done
}
