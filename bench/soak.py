#!/usr/bin/env python3
"""Fault-injection soak (issue 14 item 3): a mixed load against `scr serve` while faults are
injected on a schedule, then checks that nothing acknowledged was lost and that every answer
with data was audited. Not a test for CI: it runs for minutes and needs root (tmpfs mounts, a
private PostgreSQL cluster run as the postgres user). Python 3.11 standard library only.

    bench/soak.py --backend sqlite --minutes 30
    bench/soak.py --backend postgres --minutes 30 --binary target/debug/scr --seed 7

It builds nothing: --binary, else target/release/scr, else target/debug/scr (CARGO_TARGET_DIR
honoured). It makes a fresh data folder with `scr generate`, starts `scr serve` itself, and
removes everything it made at the end (--keep keeps the work folder).

Load (a few threads, each with its own token subject `soak-<run>-t<n>`): record opens
(Patient/{id}/$everything, Patient/{id}), searches (Observation?patient=&category=,
AllergyIntolerance?patient=), Flag writes (POST Flag), and an MLLP feed (ADT^A28 registering a
new patient, then ORU^R01 results for them, unique MSH-10 control ids; a message without an ACK
is resent on a new connection with the same control id, as is one answered AR "send it again"
(the store could not write), as an integration engine does). Every
answer is recorded: status, X-Request-Id (sent by the client, echoed when the server supports
it), whether it carried data; every ACK code per control id; every Flag id created.

Faults, round-robin, one every 60-90 s (seeded), each lasting a few seconds:
  kill        SIGKILL of scr, 3 s down, then `scr serve` again (recovery includes start-up)
  pg-restart  (postgres) the private cluster stopped in immediate mode (a crash), 3 s, started
  terminate   (postgres) pg_terminate_backend of every connection to the soak's databases,
              three times over 4 s
  lock        the audit table locked for 10 s: LOCK TABLE audit_event IN ACCESS EXCLUSIVE MODE
              (postgres), BEGIN EXCLUSIVE on the store file (sqlite)
  replica     the GP replica unreachable for 8 s: (postgres) the TCP proxy in front of it stops
              forwarding (open connections stall, new ones are accepted and stall, as with
              dropped packets), then drops them; (sqlite) the replica file renamed away and back
              (open connections keep their file: only new connections see it gone)
  disk-full   the store's file system full for 8 s: the store (sqlite) or a tablespace holding
              the store database (postgres) lives on its own tmpfs (--disk-mib, 1 GiB: 30
              minutes of this load write about 210 MiB), filled with a filler file until not a
              byte more fits, then freed (PostgreSQL's WAL stays on the main disk: inserts fail
              when a table or index needs a new page)

PostgreSQL: a private cluster (initdb into the work folder as user postgres, trust auth, its own
port), never the machine's shared one; it is stopped and removed at the end.

Checks at the end, with scr stopped by SIGTERM: every acknowledged (AA) HL7 message applied
exactly once (hl7_message by control id, and its result row for an ORU); every Flag created
(201) present in the store; `scr audit verify` passes; one audit row per answered request
(matched by request id when the AuditEvent carries it, else by the thread's token subject, in
order, on patient and interaction); no answer with data without its audit row; no request left
unanswered past its deadline (a hang); no panic in the server's log; and after each fault, the
server answering a read normally again within --recovery-limit seconds (max and median per
fault; normal: a search of the GP's data answered 200 with data and no OperationOutcome
naming a source). It prints these figures as a table (also written to --out) and exits non-zero if any
promise failed.
"""

import argparse
import base64
import errno
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
PORTS = {"sqlite": 18400, "postgres": 18450}  # http, mllp, postgres, proxy = base + 0..3
CLIENT_TIMEOUT = 40.0  # above server.request_timeout_ms (15 s): an answer later than this is a hang


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args, check=True, **kw):
    return subprocess.run([str(a) for a in args], check=check, **kw)


def now():
    return time.monotonic()


# ---------------------------------------------------------------------------------------------
# Set-up: binary, data, PostgreSQL, proxy, server


def find_binary(arg):
    if arg:
        p = Path(arg)
        if not p.exists():
            sys.exit(f"{p}: no such binary")
        return p.resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for kind in ("release", "debug"):
        p = target / kind / "scr"
        if p.exists():
            return p
    sys.exit("no scr binary: build one (cargo build -p scr-cli) or pass --binary")


def binary_kind(path):
    parts = Path(path).parts
    return "release" if "release" in parts else "debug" if "debug" in parts else "unknown"


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Cluster:
    """A private PostgreSQL cluster in the work folder, run as the postgres user."""

    def __init__(self, work, port):
        self.dir = work / "pg"
        self.sock = work / "pgsock"
        self.port = port
        self.log = work / "postgres.log"
        self.started = False

    def pg(self, *args, check=True):
        return run(["runuser", "-u", "postgres", "--", *args], check=check,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def init(self):
        for d in (self.dir, self.sock):
            d.mkdir()
            shutil.chown(d, "postgres", "postgres")
        self.log.touch()
        shutil.chown(self.log, "postgres", "postgres")
        self.pg(PG_BIN / "initdb", "-D", self.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--no-sync")
        with open(self.dir / "postgresql.conf", "a") as f:
            f.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.sock}'\nmax_connections = 200\n"
                    "fsync = on\nshared_buffers = 64MB\n")
        self.start()

    def start(self):
        self.pg(PG_BIN / "pg_ctl", "-D", self.dir, "-l", self.log, "-w", "-t", "60", "start")
        self.started = True

    def stop(self, mode="fast"):
        self.pg(PG_BIN / "pg_ctl", "-D", self.dir, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def url(self, db="postgres", port=None):
        return f"postgres://postgres@127.0.0.1:{port or self.port}/{db}"

    def psql(self, db, sql, check=True):
        out = run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.url(db), "-c", sql],
                  check=check, capture_output=True, text=True)
        return out.stdout


class Proxy:
    """A TCP proxy in front of the GP replica. Off: nothing is forwarded (connections stall, new
    ones are accepted and stall, like dropped packets); on again: the stalled ones are dropped."""

    def __init__(self, listen_port, target_port):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
        self.sock.settimeout(0.5)
        self.on = threading.Event()
        self.on.set()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.pairs = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopping.is_set():
            try:
                client, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            if not self.on.is_set():
                with self.lock:
                    self.pairs.append((client, None))
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self.pump, args=(client, upstream), daemon=True).start()

    def pump(self, a, b):
        try:
            while not self.stopping.is_set():
                r, _, _ = select.select([a, b], [], [], 0.5)
                if not self.on.is_set():
                    continue  # stalled: nothing is forwarded
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):  # closed here or by set_on (a closed socket's fd is -1)
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def set_off(self):
        self.on.clear()

    def set_on(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:  # drop what stalled while off
            for s in (a, b):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                        s.close()
                    except OSError:
                        pass
        self.on.set()

    def close(self):
        self.stopping.set()
        self.set_on()
        self.sock.close()


class Scr:
    """`scr serve`, restarted after a SIGKILL; its log appended to one file."""

    def __init__(self, binary, config, log_file, base):
        self.binary, self.config, self.log_file, self.base = binary, config, log_file, base
        self.proc = None
        self.starts = 0

    def start(self):
        env = dict(os.environ, SCR_LOG=os.environ.get("SCR_LOG", "warn"))
        f = open(self.log_file, "a")
        f.write(f"\n---- soak: scr serve started at {time.strftime('%H:%M:%S')}\n")
        f.flush()
        self.proc = subprocess.Popen([str(self.binary), "serve", "--config", str(self.config)],
                                     stdout=f, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        f.close()
        self.starts += 1

    def wait_live(self, timeout=120):
        t = now()
        while now() - t < timeout:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.base.replace("/fhir", "/health/live"), timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout=30):
        """A clean stop; True if it exited by itself within `timeout`."""
        if not self.proc or self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False


def rewrite_config(path, pairs):
    text = path.read_text()
    for old, new in pairs:
        if old not in text:
            sys.exit(f"{path}: expected {old!r} in the generated configuration")
        text = text.replace(old, new)
    path.write_text(text)


# ---------------------------------------------------------------------------------------------
# Load


class Recorder:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.http = []
        self.acks = {}  # control id -> [ack codes]
        self.sent = {}  # control id -> (kind, nhs, filler)
        self.mllp_events = []  # (time, control id, code or error)
        self.file = open(path, "w")

    def add_http(self, rec):
        with self.lock:
            self.http.append(rec)
            self.file.write(json.dumps(rec) + "\n")

    def add_ack(self, control, code, t):
        with self.lock:
            self.acks.setdefault(control, []).append(code)
            self.mllp_events.append((t, control, code))
            self.file.write(json.dumps({"mllp": control, "ack": code, "t": t}) + "\n")


def carries_data(status, body):
    if not 200 <= (status or 0) < 300:
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return bool(body)
    if doc.get("resourceType") == "Bundle":
        return any(e.get("resource", {}).get("resourceType") != "OperationOutcome"
                   for e in doc.get("entry", []))
    return doc.get("resourceType") not in (None, "OperationOutcome")


def normal(body):
    """A searchset with data and no OperationOutcome (no source named as down or slow)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    kinds = [e.get("resource", {}).get("resourceType") for e in doc.get("entry", [])]
    return doc.get("resourceType") == "Bundle" and bool(kinds) and "OperationOutcome" not in kinds


def http(base, method, path, token, body=None, request_id=None, timeout=CLIENT_TIMEOUT):
    """(status, headers, body bytes, error)."""
    headers = {"Accept": "application/fhir+json", "Authorization": "Bearer " + token}
    if request_id:
        headers["X-Request-Id"] = request_id
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/fhir+json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read(), None
    except urllib.error.HTTPError as e:
        try:
            content = e.read()
        except OSError:
            content = b""
        return e.code, dict(e.headers), content, None
    except (TimeoutError, socket.timeout) as e:
        return None, {}, b"", f"timeout: {e}"
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            return None, {}, b"", f"timeout: {e.reason}"
        return None, {}, b"", f"error: {e.reason}"
    except (OSError, ValueError, http_client_errors()) as e:
        return None, {}, b"", f"error: {type(e).__name__}: {e}"


def http_client_errors():
    import http.client
    return http.client.HTTPException


def flag_body(nhs, n):
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{"system": "https://scr.example.nhs.uk/CodeSystem/alert-category",
                                  "code": "communication-support",
                                  "display": "communication support"}]}],
        "code": {"text": f"Soak alert {n}: needs a quiet room"},
        "subject": {"reference": f"Patient/{nhs}"},
        "period": {"start": "2026-11-25"},
    }


OPS = [  # (name, weight, subtype in the AuditEvent)
    ("everything", 30, "operation"),
    ("patient-read", 15, "read"),
    ("observation-search", 20, "search-type"),
    ("allergy-search", 15, "search-type"),
    ("flag-write", 20, "create"),
]


def load_thread(n, ctx, rec, stop, rng):
    base, sample, tokens = ctx["base"], ctx["sample"], ctx["tokens"][n]
    names = [o[0] for o in OPS]
    weights = [o[1] for o in OPS]
    i = 0
    while not stop.is_set():
        i += 1
        op = rng.choices(names, weights)[0]
        nhs, practice = rng.choice(sample)
        token = tokens[practice]
        rid = f"soak-{ctx['run']}-t{n}-{i}"
        body, method = None, "GET"
        if op == "everything":
            path = f"/Patient/{nhs}/$everything"
        elif op == "patient-read":
            path = f"/Patient/{nhs}"
        elif op == "observation-search":
            path = f"/Observation?patient={nhs}&category=vital-signs"
        elif op == "allergy-search":
            path = f"/AllergyIntolerance?patient={nhs}"
        else:
            path, method, body = "/Flag", "POST", flag_body(nhs, i)
        t0 = now()
        status, headers, content, error = http(base, method, path, token, body, rid)
        t1 = now()
        r = {"thread": n, "i": i, "op": op, "nhs": nhs, "path": path, "t0": t0, "t1": t1,
             "status": status, "error": error, "rid": rid,
             "rid_echo": headers.get("X-Request-Id") or headers.get("x-request-id"),
             "data": carries_data(status, content)}
        if status is not None and status >= 400:
            r["body"] = content[:300].decode(errors="replace")
        if op == "flag-write" and status == 201:
            loc = headers.get("Location") or headers.get("location") or ""
            m = re.search(r"/Flag/([^/]+)/_history/", loc)
            r["flag"] = m.group(1) if m else None
            r["location"] = loc
        rec.add_http(r)
        # Down or refusing: wait a little longer, as a client honouring Retry-After would.
        time.sleep(ctx["pause"] if status is not None and status < 500 else 0.5)


def check_digit(nine):
    total = sum(int(d) * (10 - i) for i, d in enumerate(nine))
    c = 11 - total % 11
    if c == 11:
        c = 0
    return None if c == 10 else str(c)


def new_nhs_numbers(stem):
    while True:
        stem += 1
        c = check_digit(str(stem))
        if c is not None:
            yield str(stem) + c


def hl7_messages(run_id, stem):
    """(control id, kind, nhs, filler, message), forever: a registration, then two results."""
    numbers = new_nhs_numbers(stem)
    n = 0
    while True:
        nhs = next(numbers)
        n += 1
        control = f"SK{run_id}{n:07d}"
        yield control, "ADT", nhs, None, "\r".join([
            f"MSH|^~\\&|PAS|RXK|SCR|SCR|20261121100000||ADT^A28|{control}|P|2.4",
            "EVN|A28|20261121100000",
            f"PID|1||{nhs}^^^NHS^NH||SOAK^ALEX{n}||19800404|U",
            f"PV1|1|O|CLINIC 1^^^RXK||||||||||||||||V{control}|||||||||||||||||||||||||20261121095500",
        ])
        for k in range(2):
            n += 1
            control = f"SK{run_id}{n:07d}"
            filler = f"F{control}"
            yield control, "ORU", nhs, filler, "\r".join([
                f"MSH|^~\\&|LAB|RXK|SCR|SCR|20261121100000||ORU^R01|{control}|P|2.4",
                f"PID|1||{nhs}^^^NHS^NH||SOAK^ALEX||19800404|U",
                f"OBR|1||{filler}|CRP^C-reactive protein^L|||20261121090000|||||||||||||||||CH",
                f"OBX|1|NM|1988-5^C reactive protein^LN||{3 + k}|mg/L|0-5|N|||F|||20261121093000",
            ])


def mllp_exchange(sock, message):
    sock.sendall(b"\x0b" + message.encode() + b"\x1c\x0d")
    buf = b""
    while b"\x1c" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed without an ACK")
        buf += chunk
    ack = buf[buf.index(b"\x0b") + 1:buf.index(b"\x1c")].decode(errors="replace")
    for seg in ack.split("\r"):
        if seg.startswith("MSA|"):
            f = seg.split("|")
            code = f[1]
            # AR "send it again" (HL7 table 0357 code 207, the store could not write): nothing
            # was applied and the sender resends, as for a connection closed without an ACK.
            if code == "AR" and ("send it again" in ack or "store-unavailable" in ack):
                code = "AR-resend"
            return code, f[2] if len(f) > 2 else ""
    raise ConnectionError(f"an ACK without MSA: {ack!r}")


def mllp_thread(ctx, rec, stop):
    port = ctx["mllp_port"]
    sock = None
    for control, kind, nhs, filler, msg in hl7_messages(ctx["run"], ctx["nhs_stem"]):
        if stop.is_set():
            break
        with rec.lock:
            rec.sent[control] = (kind, nhs, filler)
        while not stop.is_set():  # resend on a new connection until an ACK comes
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.settimeout(CLIENT_TIMEOUT)
                code, acked = mllp_exchange(sock, msg)
                if acked != control:
                    rec.add_ack(control, f"mismatch:{acked}", now())
                rec.add_ack(control, code, now())
                if code == "AR-resend":
                    time.sleep(0.5)
                    continue
                break
            except (OSError, ConnectionError) as e:
                is_timeout = isinstance(e, (socket.timeout, TimeoutError))
                rec.add_ack(control, "timeout" if is_timeout else "no-ack", now())
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
                    sock = None
                time.sleep(0.5)
        time.sleep(ctx["pause"])
    if sock is not None:
        sock.close()


# ---------------------------------------------------------------------------------------------
# Faults


class Faults:
    def __init__(self, ctx, env):
        self.ctx, self.env = ctx, env
        self.records = []

    def kinds(self):
        if self.ctx["backend"] == "postgres":
            return ["kill", "pg-restart", "terminate", "lock", "replica", "disk-full"]
        return ["kill", "lock", "replica", "disk-full"]

    # Each returns when the fault has ended.
    def kill(self):
        scr = self.env["scr"]
        scr.kill()
        time.sleep(3)
        scr.start()

    def pg_restart(self):
        c = self.env["cluster"]
        c.stop("immediate")
        time.sleep(3)
        c.start()

    def terminate(self):
        c = self.env["cluster"]
        for k in range(3):
            c.psql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname LIKE 'soak%' AND pid <> pg_backend_pid()", check=False)
            if k < 2:
                time.sleep(2)

    def lock(self):
        if self.ctx["backend"] == "postgres":
            self.env["cluster"].psql(
                "soak_store", "BEGIN; LOCK TABLE audit_event IN ACCESS EXCLUSIVE MODE; "
                              "SELECT pg_sleep(10); ROLLBACK;", check=False)
        else:
            c = sqlite3.connect(self.env["store_file"], timeout=30, isolation_level=None)
            try:
                c.execute("BEGIN EXCLUSIVE")
                time.sleep(10)
                c.execute("ROLLBACK")
            finally:
                c.close()

    def replica(self):
        if self.ctx["backend"] == "postgres":
            p = self.env["proxy"]
            p.set_off()
            time.sleep(8)
            p.set_on()
        else:
            gp = self.env["gp_file"]
            moved = []
            for suffix in ("", "-wal", "-shm"):
                f = Path(str(gp) + suffix)
                if f.exists():
                    f.rename(str(f) + ".soak-away")
                    moved.append(f)
            time.sleep(8)
            for f in moved:
                Path(str(f) + ".soak-away").rename(f)

    def disk_full(self):
        filler = self.env["tmpfs"] / "soak-filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # until not a byte more fits
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
            time.sleep(8)
        finally:
            os.close(fd)
            filler.unlink()

    def probe(self, limit):
        """Seconds until a search of the GP's data answers normally (None if not within `limit`)."""
        base, (nhs, practice) = self.ctx["base"], self.ctx["probe_patient"]
        token = self.ctx["probe_tokens"][practice]
        start = now()
        k = 0
        while now() - start < limit:
            k += 1
            status, _, content, _ = http(base, "GET", f"/Observation?patient={nhs}&category=vital-signs", token,
                                         request_id=f"soak-{self.ctx['run']}-probe-{len(self.records)}-{k}",
                                         timeout=min(CLIENT_TIMEOUT, limit))
            if status == 200 and normal(content):
                return now() - start
            time.sleep(0.1)
        return None

    def run(self, stop, rng, deadline):
        kinds = self.kinds()
        k = 0
        next_at = now() + rng.uniform(*self.ctx["fault_gap"]) / 2
        while not stop.is_set():
            if now() >= next_at:
                if now() > deadline - 20:
                    break
                kind = kinds[k % len(kinds)]
                k += 1
                log(f"fault {k}: {kind}")
                t0 = now()
                error = None
                try:
                    getattr(self, kind.replace("-", "_"))()
                except Exception as e:  # a fault that could not be injected is reported
                    error = f"{type(e).__name__}: {e}"
                    log(f"fault {kind} failed: {error}")
                t1 = now()
                recovery = self.probe(self.ctx["recovery_limit"])
                log(f"fault {k}: {kind} lasted {t1 - t0:.1f} s, recovered in "
                    f"{'-' if recovery is None else f'{recovery:.2f} s'}")
                self.records.append({"kind": kind, "start": t0, "end": t1, "recovery": recovery,
                                     "error": error})
                next_at = now() + rng.uniform(*self.ctx["fault_gap"])
            stop.wait(0.5)


# ---------------------------------------------------------------------------------------------
# Checks


def store_rows(ctx, env, sql):
    """Rows of a query on the store, as lists of strings."""
    if ctx["backend"] == "postgres":
        out = env["cluster"].psql("soak_store", f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)")
        import csv
        import io
        return list(csv.reader(io.StringIO(out)))
    c = sqlite3.connect(f"file:{env['store_file']}?mode=ro", uri=True)
    try:
        return [[("" if v is None else str(v)) for v in row] for row in c.execute(sql)]
    finally:
        c.close()


def audit_rows(ctx, env):
    rows = store_rows(ctx, env,
                      f"SELECT seq, agent_user, COALESCE(patient_nhs, ''), outcome, resource FROM audit_event "
                      f"WHERE agent_user LIKE 'soak-{ctx['run']}-%' ORDER BY seq")
    out = []
    for seq, user, nhs, outcome, resource in rows:
        doc = json.loads(resource)
        rid, query, desc = None, "", ""
        for e in doc.get("entity", []):
            if e.get("type", {}).get("code") == "2":
                desc = e.get("description", "")
                if e.get("query"):
                    query = base64.b64decode(e["query"]).decode(errors="replace")
                for d in e.get("detail", []):
                    if d.get("type") == "request-id":
                        rid = d.get("valueString")
        subtype = (doc.get("subtype") or [{}])[0].get("code", "")
        out.append({"seq": int(seq), "user": user, "nhs": nhs, "outcome": outcome, "rid": rid,
                    "query": query, "desc": desc, "subtype": subtype})
    return out


def audited_status(status):
    """Statuses whose request is always audited (a 5xx only when the audit could be written)."""
    return status is not None and (200 <= status < 300 or status in (401, 403, 404))


def match_audit(ctx, http_recs, rows):
    """Returns (mode, unaudited answered requests, unaudited answers with data, duplicate rows,
    rows no recorded answer explains)."""
    rows = [r for r in rows if not r["user"].endswith("-probe")]  # the recovery probe's own
    by_rid = {}
    for r in rows:
        if r["rid"]:
            by_rid.setdefault(r["rid"], []).append(r)
    subtype = {o[0]: o[2] for o in OPS}
    if by_rid:
        mode = "request id (X-Request-Id in the AuditEvent)"
        # The id the server answered with (it keeps a well-formed incoming one), else the one sent.
        rid = lambda h: h.get("rid_echo") or h["rid"]
        missing = [h for h in http_recs if audited_status(h["status"]) and rid(h) not in by_rid]
        dup = [k for k, rs in by_rid.items() if len(rs) > 1]
        answered = {rid(h) for h in http_recs} | {h["rid"] for h in http_recs}
        orphans = [r for r in rows if r["rid"] and r["rid"] not in answered]
    else:
        mode = "token subject per thread, in order (no request id in the AuditEvent)"
        missing, dup, orphans = [], [], []
        threads = sorted({h["thread"] for h in http_recs})
        for t in threads:
            user = f"soak-{ctx['run']}-t{t}"
            trs = [r for r in rows if r["user"] == user]
            hs = sorted((h for h in http_recs if h["thread"] == t), key=lambda h: h["i"])
            p = 0
            for h in hs:
                if not audited_status(h["status"]):
                    continue
                want_query = urllib.parse.urlsplit(h["path"]).query
                q = p
                while q < len(trs) and not (trs[q]["subtype"] == subtype[h["op"]] and
                                            trs[q]["nhs"] in (h["nhs"], "") and
                                            trs[q]["query"] == want_query):
                    q += 1
                if q == len(trs):
                    missing.append(h)
                    continue
                orphans.extend(trs[p:q])
                p = q + 1
            orphans.extend(trs[p:])
            # More rows than requests of this thread: some request was audited twice.
            if len(trs) > len(hs):
                dup.append(f"{user}: {len(trs)} rows for {len(hs)} requests")
    with_data = [h for h in missing if h["data"]]
    return mode, missing, with_data, dup, orphans


def check_hl7(ctx, env, rec):
    applied = {}
    for control, n in store_rows(ctx, env, "SELECT control_id, COUNT(*) FROM hl7_message WHERE "
                                           f"facility = 'RXK' AND applied = 1 AND control_id LIKE 'SK{ctx['run']}%' "
                                           "GROUP BY control_id"):
        applied[control] = int(n)
    results = {f for (f,) in store_rows(ctx, env, "SELECT DISTINCT filler_order FROM hl7_observation "
                                                  f"WHERE facility = 'RXK' AND filler_order LIKE 'FSK{ctx['run']}%'")}
    acked = [c for c, codes in rec.acks.items() if "AA" in codes]
    lost = [c for c in acked if applied.get(c, 0) != 1]
    no_result = [c for c in acked if rec.sent[c][0] == "ORU" and rec.sent[c][2] not in results]
    twice = [c for c, n in applied.items() if n > 1]
    not_aa = {c: codes for c, codes in rec.acks.items() if "AA" not in codes}
    resent = sum(1 for codes in rec.acks.values() if len(codes) > 1)
    ar_resend = sum(codes.count("AR-resend") for codes in rec.acks.values())
    return {"sent": len(rec.sent), "acked_aa": len(acked), "lost": lost, "no_result": no_result,
            "twice": twice, "not_aa": not_aa, "resent": resent, "ar_resend": ar_resend,
            "applied_without_aa": [c for c in applied if c not in set(acked)]}


def flag_key(fhir_id):
    m = re.search(r"(\d+)$", fhir_id or "")
    return int(m.group(1)) if m else None


def check_flags(ctx, env, rec):
    created = [h for h in rec.http if h["op"] == "flag-write" and h["status"] == 201]
    ids = {int(i) for (i,) in store_rows(ctx, env, "SELECT flag_id FROM flag_version WHERE version = 1")}
    missing = [h for h in created if flag_key(h.get("flag")) not in ids]
    return {"created": len(created), "missing": missing}


def recovery_table(faults, http_recs, mllp_events):
    by = {}
    for f in faults:
        by.setdefault(f["kind"], []).append(f)
        # Answers to requests sent while the fault lasted, and the feed's first AA after it.
        during = [h for h in http_recs if f["start"] <= h["t0"] <= f["end"]]
        f["during_ok"] = sum(1 for h in during if h["status"] and h["status"] < 300)
        f["during_503"] = sum(1 for h in during if h["status"] == 503)
        f["during_none"] = sum(1 for h in during if h["status"] is None)
        aa = [t for t, _, code in mllp_events if code == "AA" and t >= f["end"]]
        f["mllp_recovery"] = (min(aa) - f["end"]) if aa else None
    rows = []
    for kind, fs in by.items():
        rec = [f["recovery"] for f in fs if f["recovery"] is not None]
        rows.append({"kind": kind, "count": len(fs), "never": sum(1 for f in fs if f["recovery"] is None),
                     "errors": sum(1 for f in fs if f["error"]),
                     "max": max(rec) if rec else None, "median": statistics.median(rec) if rec else None,
                     "lasted": statistics.median([f["end"] - f["start"] for f in fs]),
                     "during": "/".join(str(sum(f[k] for f in fs)) for k in ("during_ok", "during_503", "during_none")),
                     "mllp_max": max((f["mllp_recovery"] for f in fs if f["mllp_recovery"] is not None), default=None)})
    return rows


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--binary", help="the scr binary (default target/release/scr, else target/debug/scr)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--patients", type=int, default=300, help="random patients generated")
    ap.add_argument("--threads", type=int, default=3, help="HTTP load threads (plus one MLLP feed)")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds each load thread waits between requests")
    ap.add_argument("--recovery-limit", type=float, default=60, help="seconds a fault may leave the server not answering normally")
    ap.add_argument("--disk-mib", type=int, default=1024, help="size of the store's small file system")
    ap.add_argument("--fault-gap", default="60-90", help="seconds between faults, MIN-MAX (a short gap for a smoke run)")
    ap.add_argument("--port-base", type=int, help="HTTP port; MLLP, PostgreSQL and the proxy take the next three")
    ap.add_argument("--out", default=str(ROOT / "target" / "soak"), help="folder for the results")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (data, logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: tmpfs mounts and a private PostgreSQL cluster run as the postgres user")

    binary = find_binary(args.binary)
    kind = binary_kind(binary)
    base_port = args.port_base or PORTS[args.backend]
    http_port, mllp_port, pg_port, proxy_port = base_port, base_port + 1, base_port + 2, base_port + 3
    for p in (http_port, mllp_port, pg_port, proxy_port):
        if not port_free(p):
            sys.exit(f"port {p} is in use: pick another --port-base")
    rng = random.Random(args.seed)
    run_id = f"{args.backend[0]}{int(time.time()) % 100000:05d}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"soak-{args.backend}-"))
    work.chmod(0o755)
    log(f"soak {run_id}: {args.backend}, {args.minutes} min, {kind} binary {binary}, work folder {work}")
    env = {"work": work}
    mounts = []
    stop = threading.Event()
    failures = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        data = work / "data"
        tmpfs = work / "tmpfs"
        tmpfs.mkdir()
        run(["mount", "-t", "tmpfs", "-o", f"size={args.disk_mib}m", "tmpfs", tmpfs])
        mounts.append(tmpfs)
        env["tmpfs"] = tmpfs
        gen = [binary, "generate", "--patients", args.patients, "--out", data, "--seed", args.seed,
               "--port", http_port, "--mllp-port", mllp_port]
        if args.backend == "postgres":
            cluster = Cluster(work, pg_port)
            env["cluster"] = cluster
            cluster.init()
            shutil.chown(tmpfs, "postgres", "postgres")
            cluster.psql("postgres", f"CREATE TABLESPACE soak_disk LOCATION '{tmpfs}'")
            gen += ["--postgres", cluster.url(), "--db-prefix", "soak"]
        log("generating data: " + " ".join(str(a) for a in gen))
        for attempt in range(3):
            g = run(gen + ["--replace"], check=False, capture_output=True, text=True)
            if g.returncode == 0:
                break
            log(f"scr generate failed (attempt {attempt + 1}): {(g.stdout + g.stderr).strip().splitlines()[-1:]}")
        else:
            sys.exit("scr generate failed three times")
        config = data / "scr.toml"
        if args.backend == "postgres":
            # The store database on the small file system; the GP replica behind the proxy.
            cluster.psql("postgres", "ALTER DATABASE soak_store SET TABLESPACE soak_disk")
            rewrite_config(config, [(cluster.url("soak_gp"), cluster.url("soak_gp", proxy_port))])
            env["proxy"] = Proxy(proxy_port, pg_port)
        else:
            store = data / "scr.db"
            for suffix in ("", "-wal", "-shm"):
                f = Path(str(store) + suffix)
                if f.exists():
                    shutil.move(f, tmpfs / f.name)
            env["store_file"] = tmpfs / "scr.db"
            env["gp_file"] = data / "gp.db"
            rewrite_config(config, [(f"sqlite://{store}", f"sqlite://{tmpfs / 'scr.db'}")])
        base = f"http://127.0.0.1:{http_port}/fhir"
        scr = Scr(binary, config, work / "scr.log", base)
        env["scr"] = scr
        scr.start()
        if not scr.wait_live():
            sys.exit(f"scr serve did not start: see {work / 'scr.log'}")

        sample = [tuple(l.split("\t")) for l in (data / "sample-patients.tsv").read_text().splitlines()[1:] if l]
        practices = sorted({p for _, p in sample})

        def token(org, sub):
            return run([binary, "token", "staff", "--org", org, "--role", "R8000", "--aud", base,
                        "--sub", sub, "--lifetime", str(int(args.minutes * 60 + 3600))],
                       capture_output=True, text=True).stdout.split()[-1]

        ctx = {"backend": args.backend, "base": base, "run": run_id, "sample": sample,
               "pause": args.pause, "fault_gap": [float(x) for x in args.fault_gap.split("-")], "mllp_port": mllp_port, "recovery_limit": args.recovery_limit,
               "nhs_stem": 999_400_000 + rng.randrange(0, 40_000) * 10,
               "tokens": [{p: token(p, f"soak-{run_id}-t{n}") for p in practices} for n in range(args.threads)],
               "probe_tokens": {p: token(p, f"soak-{run_id}-probe") for p in practices},
               "probe_patient": sample[0]}
        rec = Recorder(work / "answers.jsonl")
        threads = [threading.Thread(target=load_thread, args=(n, ctx, rec, stop, random.Random(args.seed * 100 + n)))
                   for n in range(args.threads)]
        threads.append(threading.Thread(target=mllp_thread, args=(ctx, rec, stop)))
        for t in threads:
            t.start()
        t_start = now()
        deadline = t_start + args.minutes * 60
        faults = Faults(ctx, env)
        ft = threading.Thread(target=faults.run, args=(stop, random.Random(args.seed), deadline))
        ft.start()
        while now() < deadline:
            time.sleep(min(30, max(0.1, deadline - now())))
            with rec.lock:
                n_http, n_acks = len(rec.http), len(rec.acks)
            log(f"{(now() - t_start) / 60:.1f} min: {n_http} answers, {n_acks} HL7 messages, "
                f"{len(faults.records)} faults")
        stop.set()
        ft.join()
        for t in threads:
            t.join(CLIENT_TIMEOUT + 10)
        elapsed = now() - t_start
        clean = scr.terminate()
        if not clean:
            failures.append("scr did not stop within 30 s of SIGTERM (a hang)")
        if args.backend == "postgres":
            env["proxy"].close()

        # --- checks
        verify = run([binary, "audit", "verify", "--config", config], check=False,
                     capture_output=True, text=True, env=dict(os.environ, SCR_LOG="warn"))
        verify_lines = (verify.stdout + verify.stderr).strip().splitlines()
        verify_line = next((l for l in reversed(verify_lines) if "audit" in l and "ERROR" not in l),
                           verify_lines[-1] if verify_lines else "")
        if verify.returncode != 0:
            failures.append(f"scr audit verify failed: {verify_line}")
        hl7 = check_hl7(ctx, env, rec)
        if hl7["lost"]:
            failures.append(f"{len(hl7['lost'])} acknowledged HL7 messages not applied exactly once: {hl7['lost'][:5]}")
        if hl7["no_result"]:
            failures.append(f"{len(hl7['no_result'])} acknowledged results without their result row: {hl7['no_result'][:5]}")
        if hl7["twice"]:
            failures.append(f"{len(hl7['twice'])} HL7 messages applied more than once")
        flags = check_flags(ctx, env, rec)
        if flags["missing"]:
            failures.append(f"{len(flags['missing'])} Flags answered 201 are not in the store: "
                            f"{[h.get('location') for h in flags['missing'][:5]]}")
        rows = audit_rows(ctx, env)
        all_http = list(rec.http)
        mode, missing, with_data, dup, orphans = match_audit(ctx, all_http, rows)
        if with_data:
            failures.append(f"{len(with_data)} answers carried data without their audit row "
                            f"(e.g. {[(h['rid'], h['op'], h['status']) for h in with_data[:3]]})")
        if len(missing) > len(with_data):
            failures.append(f"{len(missing) - len(with_data)} answered requests without their audit row")
        if dup:
            failures.append(f"duplicate audit rows: {dup[:5]}")
        hangs = [h for h in all_http if h["error"] and h["error"].startswith("timeout")]
        mllp_hangs = sum(1 for codes in rec.acks.values() for c in codes if c == "timeout")
        if hangs:
            failures.append(f"{len(hangs)} requests unanswered after {CLIENT_TIMEOUT:.0f} s (hangs)")
        if mllp_hangs:
            failures.append(f"{mllp_hangs} HL7 messages unacknowledged after {CLIENT_TIMEOUT:.0f} s (hangs)")
        log_text = (work / "scr.log").read_text(errors="replace")
        panics = len(re.findall(r"panicked at", log_text))
        if panics:
            failures.append(f"{panics} panics in the server's log")
        rec_rows = recovery_table(faults.records, all_http, list(rec.mllp_events))
        for f in faults.records:
            if f["recovery"] is None:
                failures.append(f"no normal answer within {args.recovery_limit:.0f} s after a {f['kind']} fault")
            if f["error"]:
                failures.append(f"fault {f['kind']} could not be injected: {f['error']}")
        replaced_ids = sum(1 for h in all_http if h["rid_echo"] and h["rid_echo"] != h["rid"])

        statuses = {}
        for h in all_http:
            key = str(h["status"]) if h["status"] else ("timeout" if h["error"].startswith("timeout") else "no answer")
            statuses[key] = statuses.get(key, 0) + 1
        report = {
            "date": started, "backend": args.backend, "binary": str(binary), "binary_kind": kind,
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "minutes": round(elapsed / 60, 1),
            "seed": args.seed, "patients": args.patients, "threads": args.threads, "run": run_id,
            "requests": len(all_http), "statuses": statuses,
            "with_data": sum(1 for h in all_http if h["data"]),
            "flags_created": flags["created"], "flags_missing": len(flags["missing"]),
            "hl7": {k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in hl7.items()},
            "audit_rows": len(rows), "audit_match": mode, "request_ids_replaced": replaced_ids, "unaudited_answers": len(missing),
            "unaudited_with_data": len(with_data), "audit_rows_without_answer": len(orphans),
            "audit_verify": verify_line, "hangs": len(hangs) + mllp_hangs, "panics": panics,
            "scr_starts": scr.starts, "faults": faults.records, "recovery": rec_rows,
            "failures": failures,
        }
        md = table(report)
        print(md)
        stamp = f"{args.backend}-{run_id}"
        (out / f"soak-{stamp}.md").write_text(md)
        (out / f"soak-{stamp}.json").write_text(json.dumps(report, indent=2))
        shutil.copy(work / "scr.log", out / f"soak-{stamp}-scr.log")
        log(f"results in {out}/soak-{stamp}.md")
    finally:
        stop.set()
        if "scr" in env:
            env["scr"].terminate(10)
        if "proxy" in env:
            env["proxy"].close()
        if "cluster" in env and env["cluster"].started:
            env["cluster"].stop("fast")
        for m in mounts:
            run(["umount", "-l", m], check=False)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("\nPROMISES FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("\nevery promise held")


def fmt(v, unit=" s"):
    return "-" if v is None else f"{v:.2f}{unit}"


def table(r):
    h = r["hl7"]
    lines = [
        f"### {r['backend']} ({r['binary_kind']} binary), {r['date']}",
        "",
        f"`{r['command']}`: {r['minutes']} min, {r['threads']} HTTP threads + 1 MLLP feed, "
        f"{r['patients']} generated patients, seed {r['seed']}, scr started {r['scr_starts']} times",
        "",
        "| promise / figure | result |",
        "|---|---|",
        f"| HTTP answers (by status) | {r['requests']} ({', '.join(f'{k}: {v}' for k, v in sorted(r['statuses'].items()))}) |",
        f"| answers with data | {r['with_data']} |",
        f"| every answer with data audited | {r['unaudited_with_data']} without an audit row |",
        f"| one audit row per answered request ({r['audit_match']}) | {r['audit_rows']} rows; "
        f"{r['unaudited_answers']} answered requests without a row; {r['audit_rows_without_answer']} rows of requests whose answer was lost or 5xx |",
        f"| `scr audit verify` | {r['audit_verify']} |",
        f"| HL7 messages acknowledged AA, applied exactly once | {h['acked_aa']} AA of {h['sent']} sent; "
        f"{h['lost']} lost, {h['no_result']} results missing, {h['twice']} applied twice; {h['resent']} resent after no ACK or an AR to send again ({h['ar_resend']} such ARs); "
        f"{h['applied_without_aa']} applied whose AA was lost |",
        f"| Flags answered 201, present in the store | {r['flags_created']} created, {r['flags_missing']} missing |",
        f"| hangs (no answer within {CLIENT_TIMEOUT:.0f} s) / panics | {r['hangs']} / {r['panics']} |",
        "",
        "| fault | injected | lasted (median) | answers while it lasted: 2xx/503/none | recovery max | recovery median | never recovered | HL7: first AA after it, max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in r["recovery"]:
        lines.append(f"| {x['kind']} | {x['count']}{' (' + str(x['errors']) + ' failed)' if x['errors'] else ''} | "
                     f"{fmt(x['lasted'])} | {x['during']} | {fmt(x['max'])} | {fmt(x['median'])} | {x['never']} | {fmt(x['mllp_max'])} |")
    lines.append("")
    lines.append("Recovery: from the end of the fault to the first normal answer (200, data, no source "
                 "named as down) to Observation?patient=&category=vital-signs, polled every 0.1 s.")
    if r["failures"]:
        lines.append("")
        lines.append("Failed: " + "; ".join(r["failures"]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
