#!/usr/bin/env python3
"""Static checks of the container files, for CI machines without a Docker engine (.ci/run runs
`docker compose config -q` as well where one runs):

- docker/compose.yaml is valid against the Compose Specification's JSON schema
  (docker/compose-spec.json, from github.com/compose-spec/compose-spec, Apache-2.0), and scr
  waits for a healthy PostgreSQL, which has a healthcheck;
- docker/Dockerfile's final stage runs as a non-root user, has a HEALTHCHECK and exposes the HTTP
  and MLLP ports;
- .dockerignore keeps build output and VCS data out of the context;
- every file the compose file mounts exists.

Exit 1 naming each problem.
"""
import json
import pathlib
import sys

import jsonschema
import yaml

here = pathlib.Path(__file__).resolve().parent
root = here.parent
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


compose = yaml.safe_load((here / "compose.yaml").read_text())
schema = json.loads((here / "compose-spec.json").read_text())
for error in jsonschema.Draft7Validator(schema).iter_errors(compose):
    path = "/".join(str(p) for p in error.absolute_path)
    problems.append(f"compose.yaml {path}: {error.message}")

services = compose.get("services", {})
postgres = services.get("postgres", {})
scr = services.get("scr", {})
check("healthcheck" in postgres, "compose.yaml: postgres has no healthcheck")
depends = scr.get("depends_on", {})
check(
    isinstance(depends, dict)
    and depends.get("postgres", {}).get("condition") == "service_healthy",
    "compose.yaml: scr does not wait for postgres to be healthy (depends_on condition)",
)
ports = " ".join(str(p) for p in scr.get("ports", []))
check(":8080" in ports and ":2575" in ports, "compose.yaml: scr does not publish 8080 and 2575")
for service in services.values():
    for volume in service.get("volumes", []):
        source = str(volume).split(":")[0]
        if source.startswith("."):
            check((here / source).exists(), f"compose.yaml mounts {source}, which does not exist")
    build = service.get("build")
    if isinstance(build, dict):
        context = here / build.get("context", ".")
        check((context / build.get("dockerfile", "Dockerfile")).exists(), "compose.yaml: no Dockerfile")

# The final stage of the Dockerfile: everything after the last FROM.
lines = []
for raw in (here / "Dockerfile").read_text().splitlines():
    line = raw.strip()
    if lines and lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1] + " " + line
    elif line and not line.startswith("#"):
        lines.append(line)
final = []
for line in lines:
    if line.upper().startswith("FROM "):
        final = []
    final.append(line)
instructions = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in final]
users = [arg.split(":")[0] for op, arg in instructions if op == "USER"]
check(users and users[-1] not in ("root", "0"), "Dockerfile: the final stage runs as root (no USER)")
check(any(op == "HEALTHCHECK" and "NONE" not in arg.upper() for op, arg in instructions),
      "Dockerfile: no HEALTHCHECK")
exposed = " ".join(arg for op, arg in instructions if op == "EXPOSE").split()
for port in ("8080", "2575"):
    check(port in exposed, f"Dockerfile: port {port} is not exposed")

ignore = (root / ".dockerignore").read_text().split() if (root / ".dockerignore").exists() else []
for entry in ("target", ".git"):
    check(entry in ignore, f".dockerignore does not exclude {entry}")

if problems:
    for p in problems:
        print(p)
    sys.exit(1)
print("docker/compose.yaml, docker/Dockerfile and .dockerignore: ok")
