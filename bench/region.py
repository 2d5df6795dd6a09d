#!/usr/bin/env python3
"""Region-scale read benchmark (issue 6): the limit, the facade and a peer, in one run, on the
same data, on this machine. Standard library only; the load comes from wrk.

    bench/region.py --patients 10000 --backend sqlite
    bench/region.py --patients max --backend postgres --duration 20
    bench/region.py --small            # CI: 10,000 patients, debug build, 3 s per workload

For each workload it prints requests/s, latency p50 and p99 (wrk --latency), the server's peak
RSS while that workload ran, and the ratios facade/limit and facade/peer. Results also go to
target/bench/results-BACKEND-PATIENTS.{md,json}. It exits non-zero if a workload answered
anything but 2xx or produced no requests; it asserts nothing about time.

1. The limit: crates/bench-limit, a bare actix-web server with the facade's worker count,
   answering every GET with the bytes of a typical $everything Bundle the facade served.
2. The facade: `scr serve` on data made by `scr generate`, with real signed tokens (a clinician
   of the practice each patient is registered at, so R-LR-1 holds), every access rule, and the
   audit trail written durably before each response.
3. The peer: Helios FHIR Server (helios-hfs 0.2.7, SQLite; bench/peer/), loaded with the
   resources the facade served for the sampled patients, answering without any access rules.
   Skipped when its binary is not built (bench/peer/build.sh), or above --peer-max patients.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FACADE_PORT, LIMIT_PORT, PEER_PORT, MLLP_PORT = 18190, 18191, 18192, 12590


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(args, **kw):
    log("$ " + " ".join(str(a) for a in args))
    return subprocess.run([str(a) for a in args], check=True, **kw)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        sh(["apt-get", "install", "-y", "-qq", "wrk"], stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")


def build(profile):
    args = ["cargo", "build", "-q", "-p", "scr-cli", "-p", "scr-bench-limit"]
    if profile == "release":
        args.append("--release")
    sh(args, cwd=ROOT)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / profile
    return target / "scr", target / "scr-bench-limit"


def get(url, token=None, timeout=30):
    req = urllib.request.Request(url, headers={"Accept": "application/fhir+json"})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_until_up(url, proc, timeout=60.0):
    """Seconds from now until `url` answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            sys.exit(f"the server exited with status {proc.returncode} before answering {url}")
        try:
            if get(url, timeout=2)[0] == 200:
                return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.005)
    sys.exit(f"{url} did not answer within {timeout} s")


def rss_kib(pid, field="VmRSS"):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_wrk(url, lines_file, duration, connections, pid):
    """Runs wrk; returns requests/s, p50 and p99 in ms, non-2xx count, requests, peak RSS (MiB)."""
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s",
         str(ROOT / "bench" / "paths.lua"), url, "--", str(lines_file)],
        check=True, capture_output=True, text=True).stdout
    stop.set()
    t.join()

    def ms(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else "",
        "rss_mib": round(peak[0] / 1024, 1),
    }


def write_lines(path, rows):
    path.write_text("".join(f"{p}\t{t}\n" for p, t in rows))
    return path


def port_is_free(port):
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Server:
    """A background process, stopped on exit."""

    def __init__(self, args, log_file, env=None, port=None):
        if port and not port_is_free(port):
            sys.exit(f"port {port} is in use: stop whatever listens there first")
        self.log = open(log_file, "w")
        self.proc = subprocess.Popen([str(a) for a in args], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def generate(scr, args, data):
    if (data / "scr.toml").exists() and (data / "sample-patients.tsv").exists():
        log(f"using the data generated earlier in {data}")
        return
    cmd = [scr, "generate", "--patients", args.patients, "--out", data, "--replace",
           "--port", FACADE_PORT, "--mllp-port", MLLP_PORT]
    if args.backend == "postgres":
        cmd += ["--postgres", args.postgres, "--db-prefix", f"scr_bench_{args.patients}"]
    t = time.monotonic()
    sh(cmd, stdout=subprocess.DEVNULL)
    log(f"generated in {time.monotonic() - t:.0f} s")


def export_for_peer(base, sample, tokens, out_dir):
    """The resources the facade serves for the sampled patients, one ndjson file per type."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in out_dir.glob("*.ndjson"):
        f.unlink()
    by_type = {}
    lock = threading.Lock()

    def one(row):
        nhs, practice = row
        _, body = get(f"{base}/Patient/{nhs}/$everything", tokens[practice])
        bundle = json.loads(body)
        with lock:
            for e in bundle.get("entry", []):
                r = e["resource"]
                if r["resourceType"] != "OperationOutcome":
                    by_type.setdefault(r["resourceType"], []).append(json.dumps(r))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, sample))
    for rtype, rows in by_type.items():
        (out_dir / f"{rtype}.ndjson").write_text("\n".join(rows) + "\n")
    return sum(len(v) for v in by_type.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", default="10000", help="random patients, or max (909,000)")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--postgres", default=os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/test"),
                    help="PostgreSQL server for --backend postgres (a database that exists)")
    ap.add_argument("--duration", type=int, default=15, help="seconds per workload")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2, help="HTTP workers of the facade and the limit")
    ap.add_argument("--profile", choices=["release", "debug"], default="release")
    ap.add_argument("--peer", choices=["auto", "off", "on"], default="auto")
    ap.add_argument("--peer-max", type=int, default=100_000, help="largest data set loaded into the peer")
    ap.add_argument("--peer-sample", type=int, default=10_000,
                    help="patients whose resources are loaded into the peer (from the sample)")
    ap.add_argument("--small", action="store_true",
                    help="CI: 10,000 patients, debug build, 3 s per workload, peer only if built")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = ap.parse_args()
    if args.small:
        args.patients, args.duration, args.profile, args.peer_sample = "10000", 3, "debug", 200

    ensure_wrk()
    scr, limit_bin = build(args.profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.backend}-{args.patients}" + ("-debug" if args.profile == "debug" else "")
    data = out / f"region-{tag}"
    generate(scr, args, data)

    base = f"http://127.0.0.1:{FACADE_PORT}/fhir"
    env = dict(os.environ, SCR_LOG="warn", SCR_SERVER_WORKERS=str(args.workers))
    servers = []
    try:
        facade = Server([scr, "serve", "--config", data / "scr.toml"], out / f"facade-{tag}.log", env, FACADE_PORT)
        servers.append(facade)
        startup = wait_until_up(f"{base}/metadata", facade.proc)
        log(f"facade answered /metadata {startup * 1000:.0f} ms after start")

        sample = [tuple(l.split("\t")) for l in (data / "sample-patients.tsv").read_text().split("\n")[1:] if l]
        random.Random(6).shuffle(sample)
        practices = sorted({p for _, p in sample})
        tokens = {
            p: subprocess.run([str(scr), "token", "staff", "--org", p, "--role", "R8000", "--aud", base,
                               "--lifetime", "7200"], check=True, capture_output=True, text=True).stdout.split()[-1]
            for p in practices
        }

        # A typical $everything: the median size of 51 sampled patients'.
        sizes = []
        for nhs, p in sample[:51]:
            status, body = get(f"{base}/Patient/{nhs}/$everything", tokens[p])
            sizes.append((len(body), nhs, body))
        sizes.sort()
        # A read of one record by id, as the caller of its patient: one Observation of each of
        # those 51 patients (issue 10: a read no longer opens the patient's whole record).
        single_reads = []
        by_nhs = {nhs: p for nhs, p in sample[:51]}
        for _, nhs, body in sizes:
            for e in json.loads(body).get("entry", []):
                r = e.get("resource", {})
                if r.get("resourceType") == "Observation":
                    single_reads.append((f"/fhir/Observation/{r['id']}", tokens[by_nhs[nhs]]))
                    break
        typical = sizes[len(sizes) // 2]
        typical_file = out / f"typical-everything-{tag}.json"
        typical_file.write_bytes(typical[2])
        entries = len(json.loads(typical[2]).get("entry", []))
        log(f"typical $everything: {typical[0]} bytes, {entries} entries (patient {typical[1]})")

        q = urllib.parse.quote
        workloads = {
            "$everything": lambda n: f"/fhir/Patient/{n}/$everything",
            "Patient/{id}": lambda n: f"/fhir/Patient/{n}",
            "Patient?identifier=": lambda n: f"/fhir/Patient?identifier={q(NHS + '|' + n, safe='')}",
            "Observation?patient=&category=": lambda n: f"/fhir/Observation?patient={n}&category=vital-signs",
            "AllergyIntolerance?patient=": lambda n: f"/fhir/AllergyIntolerance?patient={n}",
            "Observation?patient=&_summary=count": lambda n: f"/fhir/Observation?patient={n}&_summary=count",
        }
        results = {"limit": {}, "facade": {}, "peer": {}}
        limit = Server([limit_bin, typical_file, LIMIT_PORT, args.workers], out / f"limit-{tag}.log",
                       port=LIMIT_PORT)
        servers.append(limit)
        wait_until_up(f"http://127.0.0.1:{LIMIT_PORT}/", limit.proc)
        lines = write_lines(out / "limit.paths", [("/fhir/Patient/x/$everything", "")])
        log("limit: $everything bytes")
        results["limit"]["$everything"] = run_wrk(f"http://127.0.0.1:{LIMIT_PORT}", lines, args.duration,
                                                  args.connections, limit.proc.pid)
        limit.stop()
        servers.remove(limit)

        for name, path in workloads.items():
            lines = write_lines(out / "facade.paths", [(path(n), tokens[p]) for n, p in sample])
            log(f"facade: {name}")
            results["facade"][name] = run_wrk(f"http://127.0.0.1:{FACADE_PORT}", lines, args.duration,
                                              args.connections, facade.proc.pid)
        if single_reads:
            lines = write_lines(out / "facade.paths", single_reads)
            log("facade: Observation/{id}")
            results["facade"]["Observation/{id}"] = run_wrk(f"http://127.0.0.1:{FACADE_PORT}", lines,
                                                            args.duration, args.connections, facade.proc.pid)
        facade_rss_hwm = round(rss_kib(facade.proc.pid, "VmHWM") / 1024, 1)
        verify = subprocess.run([str(scr), "audit", "verify", "--config", str(data / "scr.toml")],
                                capture_output=True, text=True)
        audit_line = (verify.stdout + verify.stderr).strip().splitlines()[-1:] or [""]

        peer_note = run_peer(args, out, base, sample, tokens, workloads, results)
    finally:
        for s in servers:
            s.stop()

    report = {
        "patients": args.patients, "backend": args.backend, "profile": args.profile,
        "duration_s": args.duration, "connections": args.connections, "workers": args.workers,
        "facade_startup_ms": round(startup * 1000), "facade_peak_rss_mib": facade_rss_hwm,
        "typical_everything_bytes": typical[0], "typical_everything_entries": entries,
        "audit_verify": audit_line[0], "peer": peer_note, "results": results,
    }
    md = table(report)
    print(md)
    (out / f"results-{tag}.md").write_text(md)
    (out / f"results-{tag}.json").write_text(json.dumps(report, indent=2))
    failures = [f"{who} {name}: {r['non_2xx']} non-2xx, {r['requests']} requests {r['socket_errors']}"
                for who, rs in results.items() for name, r in rs.items()
                if r["non_2xx"] or not r["requests"] or not r["rps"]]
    if verify.returncode != 0:
        failures.append(f"scr audit verify failed: {audit_line[0]}")
    if failures:
        sys.exit("benchmark invalid:\n  " + "\n  ".join(failures))


def run_peer(args, out, base, sample, tokens, workloads, results):
    peer_dir = ROOT / "bench" / "peer"
    if args.peer == "off":
        return "off"
    if args.patients == "max" or int(args.patients) > args.peer_max:
        return f"not run: above --peer-max {args.peer_max} patients"
    peer_root = Path(os.environ.get("PEER_ROOT", Path.home() / ".cache" / "scr-peer"))
    built = Path(os.environ.get("PEER_BIN", peer_root / "bin" / "hfs")).exists() and \
        (peer_root / "data" / "search-parameters-r4.json").exists()
    if not built and args.peer == "auto":
        return "not run: its binary is not built (bench/peer/build.sh)"
    sh([peer_dir / "build.sh"])  # builds when absent (about 30 minutes), else returns at once
    ndjson = out / "peer-data"
    t = time.monotonic()
    sample = sample[:args.peer_sample]
    count = export_for_peer(base, sample, tokens, ndjson)
    log(f"exported {count} resources for the peer in {time.monotonic() - t:.0f} s")
    peer_data = out / "peer-db"
    shutil.rmtree(peer_data, ignore_errors=True)
    peer_data.mkdir(parents=True)
    sh([peer_dir / "start.sh", PEER_PORT, peer_data])
    pid = int((peer_data / "peer.pid").read_text())
    try:
        peer_base = f"http://127.0.0.1:{PEER_PORT}"
        sh([sys.executable, peer_dir / "load.py", peer_base, ndjson])
        peer_paths = peer_workloads()
        for name in workloads:
            if name not in peer_paths:
                continue
            lines = write_lines(out / "peer.paths", [(peer_paths[name](n), "") for n, _ in sample])
            log(f"peer: {name}")
            results["peer"][name] = run_wrk(peer_base, lines, args.duration, args.connections, pid)
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return f"helios-hfs, {count} resources of {len(sample)} patients"


def peer_workloads():
    """The URL forms the peer answers for each workload (bench/peer/README.md)."""
    q = urllib.parse.quote
    return {
        "$everything": lambda n: f"/Patient/{n}/$everything",
        "Patient/{id}": lambda n: f"/Patient/{n}",
        "Patient?identifier=": lambda n: f"/Patient?identifier={q(NHS + '|' + n, safe='')}",
        # _count=50: the facade's default page; the peer's is 20.
        "Observation?patient=&category=": lambda n: f"/Observation?patient=Patient/{n}&category=vital-signs&_count=50",
        "AllergyIntolerance?patient=": lambda n: f"/AllergyIntolerance?patient=Patient/{n}&_count=50",
        "Observation?patient=&_summary=count": lambda n: f"/Observation?patient=Patient/{n}&_summary=count",
    }


def table(r):
    res = r["results"]
    lim = res["limit"]["$everything"]

    def fmt(x, d=0):
        return "" if x is None else f"{x:,.{d}f}"

    rows = [
        f"### {r['backend']}, {r['patients']} patients ({r['profile']} build, {r['workers']} workers, "
        f"wrk -t1 -c{r['connections']}, {r['duration_s']} s per row)",
        "",
        f"Typical `$everything`: {r['typical_everything_bytes']:,} bytes, {r['typical_everything_entries']} entries. "
        f"Facade start-up to first answer: {r['facade_startup_ms']} ms; peak RSS {r['facade_peak_rss_mib']} MiB. "
        f"Audit: {r['audit_verify']}. Peer: {r['peer']}.",
        "",
        "| server | workload | req/s | p50 ms | p99 ms | RSS MiB | facade/limit | facade/peer |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        f"| limit | `$everything` bytes | {fmt(lim['rps'])} | {fmt(lim['p50_ms'], 2)} | {fmt(lim['p99_ms'], 2)} | {lim['rss_mib']} | | |",
    ]
    for name, f in res["facade"].items():
        vs_limit = f"{f['rps'] / lim['rps']:.2%}" if lim["rps"] else ""
        p = res["peer"].get(name)
        vs_peer = f"{f['rps'] / p['rps']:.1f}x" if p and p["rps"] else ""
        rows.append(f"| facade | `{name}` | {fmt(f['rps'])} | {fmt(f['p50_ms'], 2)} | {fmt(f['p99_ms'], 2)} | "
                    f"{f['rss_mib']} | {vs_limit} | {vs_peer} |")
    for name, p in res["peer"].items():
        rows.append(f"| peer | `{name}` | {fmt(p['rps'])} | {fmt(p['p50_ms'], 2)} | {fmt(p['p99_ms'], 2)} | "
                    f"{p['rss_mib']} | | |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
