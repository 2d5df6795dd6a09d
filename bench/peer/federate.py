#!/usr/bin/env python3
"""Issue 12 item 5: a FHIR R4 server that is not scr, read as a plain peer.

    python3 bench/peer/federate.py [--scr PATH] [--out DIR]

Starts the Helios FHIR Server (bench/peer/build.sh must have been run once, ~30 min) with a fresh
database and loads, for Jane Smith (NHS 9990000018), a neighbouring trust's records (ODS RRK):
a Patient, a lab Observation, an Observation coded with a sensitive code, an AllergyIntolerance,
a MedicationStatement and an active Flag. Then it starts `scr serve` (a fresh `scr demo` data
folder) with Helios as `[[sources.peer]] auth = "none"` and checks, as Jane's GP clinician
(M85001):

- `$everything` holds the peer's records once each, ids `HeliosPeer.{id}`, tagged with the
  source-system tag `HeliosPeer` and the peer's ODS tag RRK, valid as R4 Bundles go;
- the sensitive record is withheld (R-SENS-1: only the holder sees it), and counted as withheld;
- the peer's active alert is among the alerts, and alerts come first;
- a search (`Observation?patient=&category=laboratory`) includes the peer's lab result;
- with Helios stopped, `$everything` still answers 200 with a warning naming HeliosPeer.

Prints one line per check and exits 1 if any fails. Not part of CI (the peer takes ~30 min to
build); the result is recorded in docs/federation.md.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEER = "HeliosPeer"
JANE = "9990000018"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SOURCE_TAG = "https://scr.example.nhs.uk/CodeSystem/source-system"

failures = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tagged(resource):
    return {"meta": {"tag": [{"system": ODS, "code": "RRK"}], "source": "https://rrk.example.nhs.uk/fhir"},
            **resource}


def fixture():
    subject = {"reference": "Patient/wm-jane"}
    return {
        "Patient": [tagged({"resourceType": "Patient", "id": "wm-jane",
                            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": JANE}],
                            "name": [{"family": "Smith", "given": ["Jane"]}], "birthDate": "1968-04-12",
                            "gender": "female"})],
        "Observation": [
            tagged({"resourceType": "Observation", "id": "wm-na", "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": "laboratory"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2951-2", "display": "Sodium"}]},
                    "subject": subject, "effectiveDateTime": "2026-11-20T09:30:00+00:00",
                    "valueQuantity": {"value": 139, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                                      "code": "mmol/L"}}),
            tagged({"resourceType": "Observation", "id": "wm-sensitive", "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": "laboratory"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "21613-5"}]},
                    "subject": subject, "effectiveDateTime": "2026-11-21T10:00:00+00:00",
                    "valueString": "not detected"}),
        ],
        "AllergyIntolerance": [tagged({"resourceType": "AllergyIntolerance", "id": "wm-allergy",
                                       "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                                       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005",
                                                            "display": "Allergy to penicillin"}]},
                                       "patient": subject, "recordedDate": "2026-11-20"})],
        "MedicationStatement": [tagged({"resourceType": "MedicationStatement", "id": "wm-med", "status": "active",
                                        "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk",
                                                                                  "code": "39732311000001104",
                                                                                  "display": "Amlodipine 5mg tablets"}]},
                                        "subject": subject, "effectiveDateTime": "2026-11-20"})],
        "Flag": [tagged({"resourceType": "Flag", "id": "wm-flag", "status": "active",
                         "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category",
                                                   "code": "safety"}]}],
                         "code": {"text": "Violent behaviour towards staff at RRK"}, "subject": subject})],
    }


def get(url, token=None, timeout=30):
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_up(url, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited while starting: {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {seconds} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scr", default=str(ROOT / "target" / "debug" / "scr"))
    ap.add_argument("--out", default=str(ROOT / "target" / "peer-federate"))
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    peer_port, scr_port, mllp_port = free_port(), free_port(), free_port()
    peer_base = f"http://127.0.0.1:{peer_port}"
    base = f"http://127.0.0.1:{scr_port}/fhir"

    subprocess.run([str(ROOT / "bench/peer/start.sh"), str(peer_port), str(out / "peer")], check=True)
    scr = None
    try:
        version = subprocess.run([os.environ.get("PEER_BIN", str(Path.home() / ".cache/scr-peer/bin/hfs")),
                                  "--version"], capture_output=True, text=True).stdout.strip()
        ndjson = out / "ndjson"
        ndjson.mkdir()
        for kind, resources in fixture().items():
            (ndjson / f"{kind}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
        subprocess.run([sys.executable, str(ROOT / "bench/peer/load.py"), peer_base, str(ndjson)], check=True)
        status, found = get(f"{peer_base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{JANE}")
        check(status == 200 and found.get("total", len(found.get("entry", []))) >= 1,
              f"{version or 'hfs'} finds Jane by NHS number")

        subprocess.run([args.scr, "demo", "--data", str(out / "scr"), "--port", str(scr_port),
                        "--mllp-port", str(mllp_port), "--no-serve", "--no-neighbour"],
                       check=True, capture_output=True)
        cfg = out / "scr" / "scr.toml"
        cfg.write_text(cfg.read_text() + f'\n[[sources.peer]]\nname = "{PEER}"\nbase_url = "{peer_base}"\n'
                                          'auth = "none"\ntimeout_ms = 5000\n')
        log = open(out / "scr.log", "w")
        scr = subprocess.Popen([args.scr, "serve", "--config", str(cfg)], stdout=log, stderr=log,
                               env=dict(os.environ, SCR_LOG="info"))
        wait_up(f"{base}/metadata", scr)
        token = subprocess.run([args.scr, "token", "staff", "--org", "M85001", "--role", "R8000", "--aud", base],
                               check=True, capture_output=True, text=True).stdout.split()[-1]

        status, bundle = get(f"{base}/Patient/{JANE}/$everything", token)
        check(status == 200 and bundle.get("resourceType") == "Bundle", "$everything answers 200 with a Bundle")
        entries = [e["resource"] for e in bundle.get("entry", [])]
        from_peer = [r for r in entries if str(r.get("id", "")).startswith(PEER + ".")]
        ids = sorted(r["id"] for r in from_peer)
        check(ids == sorted(f"{PEER}.{i}" for i in ["wm-na", "wm-allergy", "wm-med", "wm-flag"]),
              f"the peer's records arrive once each, the sensitive one withheld: {ids}")
        check(all(any(t.get("system") == SOURCE_TAG and t.get("code") == PEER for t in r["meta"]["tag"])
                  and any(t.get("system") == ODS and t.get("code") == "RRK" for t in r["meta"]["tag"])
                  for r in from_peer) and from_peer != [],
              "each is labelled with the peer's name and keeps its ODS tag RRK")
        check(all(r.get("subject", r.get("patient", {})).get("reference") == f"Patient/{JANE}"
                  for r in from_peer), "each points at the patient as scr serves her")
        check(not any("wm-sensitive" in str(r.get("id")) for r in entries), "R-SENS-1: the sensitive result does not cross")
        kinds = [r["resourceType"] for r in entries if r["resourceType"] not in ("Patient", "OperationOutcome")]
        flags = [i for i, k in enumerate(kinds) if k == "Flag"]
        check(bool(flags) and flags == list(range(len(flags))) and f"{PEER}.wm-flag" in
              [r["id"] for r in entries if r["resourceType"] == "Flag"],
              "the peer's active alert is among the alerts, and alerts come first")
        status, labs = get(f"{base}/Observation?patient={JANE}&category=laboratory", token)
        lab_ids = [e["resource"]["id"] for e in labs.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        check(status == 200 and f"{PEER}.wm-na" in lab_ids and f"{PEER}.wm-sensitive" not in lab_ids,
              "a lab search includes the peer's result and not the sensitive one")

        subprocess.run([str(ROOT / "bench/peer/stop.sh"), str(out / "peer")], check=False)
        status, bundle = get(f"{base}/Patient/{JANE}/$everything", token)
        text = json.dumps([e["resource"] for e in bundle.get("entry", [])
                           if e["resource"]["resourceType"] == "OperationOutcome"])
        check(status == 200 and PEER in text, "with the peer down: 200 and a warning naming it")
    finally:
        if scr is not None:
            scr.terminate()
            scr.wait(timeout=30)
        subprocess.run([str(ROOT / "bench/peer/stop.sh"), str(out / "peer")], check=False,
                       capture_output=True)
    print(f"\n{len(failures)} failed" if failures else "\nall passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
