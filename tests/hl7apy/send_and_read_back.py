#!/usr/bin/env python3
"""Messages built by an independent HL7 v2 library (hl7apy) are accepted over MLLP and read
back correctly through the FHIR API.

Usage: send_and_read_back.py MLLP_HOST:PORT FHIR_BASE_URL
Environment: RXK_TOKEN (a clinician of the acute trust RXK), TAJ_TOKEN (a clinician of the
mental health trust TAJ). Exits non-zero on the first difference.
"""
import json
import os
import socket
import sys
import time
import urllib.parse
import urllib.request

from hl7apy.core import Message

START, END = b"\x0b", b"\x1c\x0d"
JANE = "9990000018"
RUN = str(int(time.time()))[-6:]
# A value of this run's own, so the script can run again against the same server.
VALUE = f"{4 + int(RUN) % 50 / 10:.1f}"


def msh(m, facility, kind, control):
    m.msh.msh_3 = "EPR"
    m.msh.msh_4 = facility
    m.msh.msh_5 = "SCR"
    m.msh.msh_6 = "SCR"
    m.msh.msh_7 = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    m.msh.msh_9 = kind
    m.msh.msh_10 = control
    m.msh.msh_11 = "P"


def admission(control):
    """ADT^A01 from the mental health trust TAJ: a new visit for Jane (R-LR-2)."""
    m = Message("ADT_A01", version="2.4")
    msh(m, "TAJ", "ADT^A01^ADT_A01", control)
    m.evn.evn_1 = "A01"
    m.evn.evn_2 = m.msh.msh_7.value
    m.pid.pid_3 = f"{JANE}^^^NHS^NH"
    m.pid.add_field("PID_3").value = f"T{RUN}^^^TAJ^MR"  # a second repetition: the hospital number
    m.pid.pid_5 = "SMITH^JANE^ANN^^MRS"
    m.pid.pid_7 = "19700102"
    m.pid.pid_8 = "F"
    m.pv1.pv1_2 = "I"
    m.pv1.pv1_3 = "WARD 1^BED 3^^TAJ"
    m.pv1.pv1_19 = f"APY{RUN}"
    m.pv1.pv1_44 = m.msh.msh_7.value
    return m.to_er7()


def result(control):
    """ORU^R01 from RXK: a cholesterol result for Jane."""
    m = Message("ORU_R01", version="2.4")
    msh(m, "RXK", "ORU^R01^ORU_R01", control)
    pr = m.add_group("ORU_R01_PATIENT_RESULT")
    pid = pr.add_group("ORU_R01_PATIENT").add_segment("PID")
    pid.pid_3 = f"{JANE}^^^NHS^NH"
    pid.pid_5 = "SMITH^JANE"
    pid.pid_7 = "19700102"
    pid.pid_8 = "F"
    order = pr.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.add_segment("OBR")
    obr.obr_1 = "1"
    obr.obr_3 = f"APYORD{RUN}"
    obr.obr_4 = "LIP^Lipids^L"
    obr.obr_7 = "20261125090000"
    obr.obr_24 = "CH"
    obx = order.add_group("ORU_R01_OBSERVATION").add_segment("OBX")
    for field, value in [("obx_1", "1"), ("obx_2", "NM"), ("obx_3", "2093-3^Cholesterol^LN"), ("obx_5", VALUE), ("obx_6", "mmol/L"),
                         ("obx_7", "0-5"), ("obx_8", "H"), ("obx_11", "F"), ("obx_14", "20261125093000")]:
        setattr(obx, field, value)
    return m.to_er7()


def send(address, message):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(START + message.encode() + END)
        data = b""
        while not data.endswith(END):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("connection closed without an ACK")
            data += chunk
    ack = data.strip(START + END).decode()
    msa = next(seg for seg in ack.split("\r") if seg.startswith("MSA|")).split("|")
    return msa[1], msa[2]


def get(base, path, token):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def main():
    mllp, base = sys.argv[1], sys.argv[2]
    rxk, taj = os.environ["RXK_TOKEN"], os.environ["TAJ_TOKEN"]

    status, _ = get(base, f"/Patient/{JANE}", taj)
    # On a fresh demo TAJ has no relationship yet (403); an earlier run of this script made one.
    assert status in (200, 403), f"TAJ before the admission: {status}"

    for control, message in [(f"APYA{RUN}", admission(f"APYA{RUN}")), (f"APYR{RUN}", result(f"APYR{RUN}"))]:
        code, echoed = send(mllp, message)
        assert (code, echoed) == ("AA", control), f"{control}: ACK {code} {echoed}"

    status, patient = get(base, f"/Patient/{JANE}", taj)
    assert status == 200, f"the hl7apy admission opens the record for TAJ (R-LR-2), got {status}"
    local = [i for i in patient["identifier"] if i.get("value") == f"T{RUN}"]
    assert local, "TAJ's hospital number from PID-3 is on the Patient"

    query = urllib.parse.urlencode({"patient": JANE, "code": "http://loinc.org|2093-3"})
    status, bundle = get(base, f"/Observation?{query}", rxk)
    assert status == 200, status
    found = [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
    mine = [o for o in found if o["valueQuantity"]["value"] == float(VALUE)]
    assert len(mine) == 1, f"one cholesterol result of {VALUE}, got {len(mine)} of {len(found)}"
    obs = mine[0]
    assert obs["valueQuantity"]["unit"] == "mmol/L", obs["valueQuantity"]
    assert obs["referenceRange"][0]["high"]["value"] == 5, obs["referenceRange"]
    assert obs["status"] == "final"
    print("hl7apy: ADT^A01 and ORU^R01 accepted (AA) and read back through FHIR: 2 passed, 0 failed")


if __name__ == "__main__":
    main()
