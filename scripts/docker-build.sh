#!/usr/bin/env bash
# Builds the scr image and smoke-tests it under docker/compose.yaml: PostgreSQL healthy, the seed
# service done, scr healthy by its own HEALTHCHECK, /health/ready 200, /metrics served, a read
# with a development token 200; then removes the containers and volumes.
#
# Not run by CI: a cold release build of the workspace (fhir-sdk alone takes minutes) does not fit
# CI's budget beside the tests; CI checks the files statically (docker/check.py) and with
# `docker compose config -q` where an engine runs. Needs Docker with the compose plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
compose=(docker compose -f docker/compose.yaml -p scr-smoke)
cleanup() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

start=$(date +%s)
"${compose[@]}" build
echo "image built in $(( $(date +%s) - start )) s"
docker image inspect scr:local --format 'user={{.Config.User}} ports={{json .Config.ExposedPorts}} healthcheck={{json .Config.Healthcheck.Test}}'

"${compose[@]}" up -d
for _ in $(seq 90); do
  state=$(docker inspect --format '{{.State.Health.Status}}' "$("${compose[@]}" ps -q scr)" 2>/dev/null || true)
  [ "$state" = healthy ] && break
  sleep 2
done
[ "$state" = healthy ] || { "${compose[@]}" logs; echo "scr did not become healthy"; exit 1; }

curl -sf http://127.0.0.1:8080/health/ready
echo
curl -sf http://127.0.0.1:8080/metrics | grep -q '^# TYPE scr_http_requests_total counter'
token=$("${compose[@]}" exec -T scr scr token staff --org RXK --role R8000 --aud http://127.0.0.1:8080/fhir)
curl -sf -o /dev/null -H "Authorization: Bearer $token" http://127.0.0.1:8080/fhir/Patient/9990000018
echo "docker smoke test passed"
