#!/usr/bin/env python3
"""The cost of a federated $everything against a local one (issue 12).

Two demo records, A and B, each seeded by `scr demo --no-serve` (release build), B reading A as a
neighbour by token exchange (docs/federation.md). The same staff user asks for the same patients'
$everything:

  local      A alone: what A does for its own clinician (A's peer left out)
  federated  B: B's own sources, then A asked by token exchange, both records merged; one
             user, so after the first request per patient B reuses the exchanged token
  federated, a new user each request
             the same, but every request line is another user (--users of them), so nearly
             every request exchanges a token first: the cost without reuse

Standard library only; the load comes from wrk (as bench/region.py).

  python3 bench/federation.py [--duration 10] [--connections 16]
"""
import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import region  # noqa: E402  (build, run_wrk, write_lines, Server, wait_until_up, ensure_wrk)

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "examples" / "dev-issuer"
FIXTURES = ["9990000018", "9990000042"]  # Jane, Sam: an RXK visit each, no objection


def peer_tables(trusted_client, peer_name, peer_base, our_client):
    return f"""
[[auth.peers]]
name = "{peer_name}"
client_id = "{trusted_client}"
jwks_file = "{KEYS / 'dev-client-jwks.json'}"
trust_relationships = true

[[sources.peer]]
name = "{peer_name}"
base_url = "{peer_base}"
auth = "exchange"
token_url = "{peer_base}/auth/token"
client_id = "{our_client}"
key_file = "{KEYS / 'DEVELOPMENT-ONLY-client-es384.pem'}"
key_id = "scr-dev-client-es384-1"
timeout_ms = 5000
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--users", type=int, default=10000,
                    help="users of the last row, one request line each")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-federation"))
    args = ap.parse_args()
    region.ensure_wrk()
    scr, _ = region.build("release")
    out = Path(args.out)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    ports = {"a": 18201, "b": 18202}
    mllp = {"a": 18211, "b": 18212}
    base = {k: f"http://127.0.0.1:{p}/fhir" for k, p in ports.items()}
    for k in ports:
        subprocess.run([str(scr), "demo", "--data", str(out / k), "--port", str(ports[k]),
                        "--mllp-port", str(mllp[k]), "--patients", str(args.patients), "--no-serve",
                        "--no-neighbour"],
                       check=True, capture_output=True)
        cfg = out / k / "scr.toml"
        text = cfg.read_text()
        # Request limits off, as for bench/region.py: the load is one address.
        text = text.replace("[server]", "[server]\nrefusals_per_minute = 1000000", 1)
        text = text.replace("[auth]", "[auth]\ntoken_requests_per_minute = 1000000", 1)
        cfg.write_text(text)
    # B asks A; A trusts B. A does not ask B: "local" is A alone.
    (out / "b" / "scr.toml").write_text((out / "b" / "scr.toml").read_text()
                                        + peer_tables("scr-a", "A-REGION", base["a"], "scr-b"))
    a_cfg = (out / "a" / "scr.toml").read_text() + f"""
[[auth.peers]]
name = "B-REGION"
client_id = "scr-b"
jwks_file = "{KEYS / 'dev-client-jwks.json'}"
trust_relationships = true
"""
    (out / "a" / "scr.toml").write_text(a_cfg)
    env = dict(os.environ, SCR_LOG="warn", SCR_SERVER_WORKERS="2")
    servers = []
    try:
        for k in ("a", "b"):
            s = region.Server([scr, "serve", "--config", out / k / "scr.toml"], out / f"{k}.log", env, ports[k])
            servers.append(s)
            region.wait_until_up(f"{base[k]}/metadata", s.proc)
        results = {}

        def token_for(k, sub=None):
            extra = ["--sub", sub] if sub else []
            return subprocess.run([str(scr), "token", "staff", "--org", "RXK", "--role", "R8000",
                                   "--aud", base[k], "--lifetime", "7200", *extra],
                                  check=True, capture_output=True, text=True).stdout.split()[-1]

        rows = (("a", "local", 1), ("b", "federated", 1),
                ("b", "federated, a new user each request", args.users))
        for k, label, users in rows:
            token = token_for(k)
            sizes = []
            for nhs in FIXTURES:
                req = urllib.request.Request(f"{base[k]}/Patient/{nhs}/$everything",
                                             headers={"Authorization": "Bearer " + token})
                with urllib.request.urlopen(req, timeout=30) as r:
                    body = r.read()
                sizes.append(len(body))
            if users == 1:
                paths = [(f"/fhir/Patient/{n}/$everything", token) for n in FIXTURES]
            else:
                paths = [(f"/fhir/Patient/{FIXTURES[i % len(FIXTURES)]}/$everything",
                          token_for(k, f"bench-user-{i}")) for i in range(users)]
            lines = region.write_lines(out / f"{k}-{users}.paths", paths)
            r = region.run_wrk(f"http://127.0.0.1:{ports[k]}", lines, args.duration, args.connections,
                               servers[0 if k == "a" else 1].proc.pid)
            r["bytes"] = sum(sizes) // len(sizes)
            results[label] = r
        print(f"\n### federated $everything against local ({time.strftime('%Y-%m-%d')}, release, "
              f"2 workers each, wrk -t1 -c{args.connections}, {args.duration} s per row)\n")
        print("| | req/s | p50 ms | p99 ms | non-2xx | mean bytes |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, r in results.items():
            print(f"| {label} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} | {r['bytes']:,} |")
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
