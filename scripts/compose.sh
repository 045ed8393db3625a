# Sourced: sets COMPOSE to the Compose command this machine has ("docker compose" with the v2
# plugin, else Compose v1's "docker-compose"), with the project name "strom".
if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose -p strom"
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE="docker-compose -p strom"
else
  echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 1
fi
export COMPOSE
