#!/usr/bin/env python3
"""Load NDJSON FHIR R4 resources into the benchmark peer, ids preserved.

    load.py BASE_URL INPUT_DIR [--bundle-size N] [--workers N] [--mode transaction|batch]

INPUT_DIR holds *.ndjson files, one resource per line. Each resource is sent as
a `PUT Type/id` entry of a transaction (default) or batch Bundle POSTed to
BASE_URL. Files whose first resource is a Patient are loaded first, and
completely, before the others. A bundle that fails (HTTP error, connection
error, or any entry without a 2xx status) is retried once, as a batch Bundle,
so that one bad resource does not keep the rest of its bundle out. Exits 1 if
any resource could not be loaded, after printing the first failures.

meta is sent as given (source, tag, security, profile, ...). The peer accepts
meta.versionId / meta.lastUpdated and replaces them with its own; pass
--strip-version-meta to drop them client-side instead.

Standard library only.
"""

import argparse
import concurrent.futures as cf
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

MAX_SHOWN_FAILURES = 10


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_url")
    p.add_argument("input_dir")
    p.add_argument("--bundle-size", type=int, default=250)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--mode", choices=["transaction", "batch"], default="transaction")
    p.add_argument("--strip-version-meta", action="store_true",
                   help="drop meta.versionId/meta.lastUpdated before sending")
    p.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    return p.parse_args()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.by_type = {}
        self.failures = []  # (what, detail)
        self.retries = 0

    def add_ok(self, types):
        with self.lock:
            self.ok += len(types)
            for t in types:
                self.by_type[t] = self.by_type.get(t, 0) + 1

    def add_failures(self, items, count=None):
        with self.lock:
            self.failed += len(items) if count is None else count
            for it in items:
                if len(self.failures) < MAX_SHOWN_FAILURES:
                    self.failures.append(it)


def classify(path):
    """resourceType of the first non-empty line of an NDJSON file."""
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    return json.loads(line).get("resourceType", "")
                except ValueError:
                    return ""
    return ""


def read_resources(path, strip_version_meta):
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                yield None, f"{os.path.basename(path)}:{lineno}: invalid JSON: {e}"
                continue
            rt, rid = r.get("resourceType"), r.get("id")
            if not rt or not rid:
                yield None, f"{os.path.basename(path)}:{lineno}: missing resourceType or id"
                continue
            if strip_version_meta:
                meta = r.get("meta")
                if isinstance(meta, dict):
                    meta.pop("versionId", None)
                    meta.pop("lastUpdated", None)
                    if not meta:
                        del r["meta"]
            yield r, None


def make_bundle(resources, mode):
    return {
        "resourceType": "Bundle",
        "type": mode,
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def post_bundle(base_url, body, timeout):
    req = urllib.request.Request(
        base_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json",
            "Prefer": "return=minimal",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def outcome_text(payload):
    """Short text of an OperationOutcome (or whatever came back)."""
    try:
        doc = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
    except ValueError:
        return (payload[:300].decode("utf-8", "replace")
                if isinstance(payload, bytes) else str(payload)[:300])
    if isinstance(doc, dict) and doc.get("resourceType") == "OperationOutcome":
        parts = []
        for i in doc.get("issue", [])[:3]:
            parts.append(i.get("diagnostics") or (i.get("details") or {}).get("text")
                         or i.get("code", ""))
        return "; ".join(p for p in parts if p)[:500]
    return json.dumps(doc)[:300]


def send(base_url, resources, mode, timeout):
    """POST one bundle. Returns (failed entries as [(Type/id, error)], whole-bundle error)."""
    refs = [f"{r['resourceType']}/{r['id']}" for r in resources]
    body = json.dumps(make_bundle(resources, mode), separators=(",", ":")).encode()
    try:
        status, payload = post_bundle(base_url, body, timeout)
    except Exception as e:  # connection refused/reset, timeout, ...
        return [(ref, None) for ref in refs], f"request failed: {e!r}"
    if status // 100 != 2:
        return [(ref, None) for ref in refs], f"HTTP {status}: {outcome_text(payload)}"
    try:
        doc = json.loads(payload)
    except ValueError:
        return [(ref, None) for ref in refs], f"HTTP {status}: unparseable response"
    entries = doc.get("entry") or []
    if len(entries) != len(refs):
        why = f"HTTP {status}: response has {len(entries)} entries for {len(refs)} sent"
        return [(ref, None) for ref in refs], why
    bad = []
    for ref, e in zip(refs, entries):
        resp = e.get("response") or {}
        st = str(resp.get("status", ""))
        if not st[:1] == "2":
            bad.append((ref, f"entry status {st or '?'}: {outcome_text(resp.get('outcome') or {})}"))
    return bad, None


def load_group(args, files, stats, t0, progress):
    """Load every resource of `files`, `workers` bundles in flight."""
    base = args.base_url.rstrip("/")

    def job(batch):
        bad, whole = send(base, batch, args.mode, args.timeout)
        if bad:
            with stats.lock:
                stats.retries += 1
            # Retry once; as a batch, so entries succeed or fail one by one.
            bad, whole = send(base, batch, "batch", args.timeout)
        bad_refs = {ref for ref, _ in bad}
        stats.add_ok([r["resourceType"] for r in batch
                      if f"{r['resourceType']}/{r['id']}" not in bad_refs])
        if whole:
            stats.add_failures([(f"bundle of {len(batch)} ({bad[0][0]} ... {bad[-1][0]})",
                                 whole)], count=len(bad))
        elif bad:
            stats.add_failures(bad)
        progress()

    with cf.ThreadPoolExecutor(max_workers=args.workers) as pool:
        inflight = set()

        def submit(batch):
            nonlocal inflight
            while len(inflight) >= args.workers * 2:
                done, inflight = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for d in done:
                    d.result()
            inflight.add(pool.submit(job, batch))

        batch = []
        for path in files:
            for r, err in read_resources(path, args.strip_version_meta):
                if err:
                    stats.add_failures([(path, err)])
                    continue
                batch.append(r)
                if len(batch) >= args.bundle_size:
                    submit(batch)
                    batch = []
        if batch:
            submit(batch)
        for d in cf.as_completed(inflight):
            d.result()


def main():
    args = parse_args()
    if not os.path.isdir(args.input_dir):
        sys.exit(f"not a directory: {args.input_dir}")
    files = sorted(os.path.join(args.input_dir, f) for f in os.listdir(args.input_dir)
                   if f.endswith(".ndjson"))
    if not files:
        sys.exit(f"no *.ndjson files in {args.input_dir}")
    patient_files = [f for f in files if classify(f) == "Patient"]
    other_files = [f for f in files if f not in patient_files]

    stats = Stats()
    t0 = time.monotonic()
    last = [t0]

    def progress():
        now = time.monotonic()
        with stats.lock:
            if now - last[0] < 2.0:
                return
            last[0] = now
            done, failed = stats.ok, stats.failed
        print(f"  {done} loaded, {failed} failed, {done / (now - t0):.0f} resources/s",
              flush=True)

    print(f"loading {len(files)} files into {args.base_url} "
          f"({args.mode} bundles of {args.bundle_size}, {args.workers} in parallel)", flush=True)
    for label, group in (("patients", patient_files), ("other resources", other_files)):
        if group:
            print(f"{label}: {', '.join(os.path.basename(f) for f in group)}", flush=True)
            load_group(args, group, stats, t0, progress)

    elapsed = time.monotonic() - t0
    per_type = ", ".join(f"{t} {n}" for t, n in sorted(stats.by_type.items()))
    print(f"loaded {stats.ok} resources in {elapsed:.1f}s "
          f"({stats.ok / elapsed if elapsed else 0:.0f} resources/s): {per_type}")
    if stats.retries:
        print(f"{stats.retries} bundle(s) retried")
    if stats.failed:
        sys.stdout.flush()
        print(f"FAILED: {stats.failed} resource(s) not loaded; first failures:", file=sys.stderr)
        for what, why in stats.failures:
            print(f"  {what}: {why}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
