#!/usr/bin/env python3
"""Writes scr.postman_collection.json and scr.postman_environment.json.

The collection is data; this script keeps its many requests consistent. Re-run it after editing.
"""
import json

def test(lines):
    return [{"listen": "test", "script": {"type": "text/javascript", "exec": lines}}]

def req(name, method, path, tests, token="{{token}}", headers=None, body=None):
    h = [] if token is None else [{"key": "Authorization", "value": f"Bearer {token}"}]
    h += [{"key": k, "value": v} for k, v in (headers or {}).items()]
    r = {"method": method, "header": h, "url": "{{baseUrl}}" + path}
    if body is not None:
        r["body"] = {"mode": "raw", "raw": body}
    return {"name": name, "event": test(tests), "request": r}

def status(code):
    return [f"pm.test('status {code}', () => pm.response.to.have.status({code}));"]

def outcome(code, issue):
    return status(code) + [
        "pm.test('OperationOutcome', () => pm.expect(pm.response.json().resourceType).to.eql('OperationOutcome'));",
        f"pm.test('issue code {issue}', () => pm.expect(pm.response.json().issue[0].code).to.eql('{issue}'));",
    ]

# A pre-request script: a fresh PKCE verifier (RFC 7636, 64 unreserved characters), its S256
# challenge, a state, and the app's redirect URI (the registered one, beside the FHIR base).
PKCE = [
    "const cryptoJs = require('crypto-js');",
    "const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~';",
    "let v = ''; for (let i = 0; i < 64; i++) v += chars[Math.floor(Math.random() * chars.length)];",
    "const b64url = w => cryptoJs.enc.Base64.stringify(w).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');",
    "pm.collectionVariables.set('codeVerifier', v);",
    "pm.collectionVariables.set('wrongVerifier', v.split('').reverse().join(''));",
    "pm.collectionVariables.set('codeChallenge', b64url(cryptoJs.SHA256(v)));",
    "pm.collectionVariables.set('appState', 'st' + Math.floor(Math.random() * 1e9));",
    "const redirect = pm.variables.get('baseUrl').replace(/\\/fhir\\/?$/, '') + '/apps/viewer/index.html';",
    "pm.collectionVariables.set('appRedirect', redirect);",
    "pm.collectionVariables.set('appRedirectEncoded', encodeURIComponent(redirect));",
]

def hop(name, url, tests, pre=None):
    """One redirect of a browser flow, not followed: 302 and where it leads."""
    events = test(["pm.test('302', () => pm.response.to.have.status(302));"] + tests)
    if pre:
        events.insert(0, {"listen": "prerequest", "script": {"type": "text/javascript", "exec": pre}})
    return {"name": name, "event": events, "protocolProfileBehavior": {"followRedirects": False},
            "request": {"method": "GET", "header": [], "url": url}}

bundle = ["pm.test('searchset Bundle', () => pm.expect(pm.response.json().type).to.eql('searchset'));"]
JANE = "9990000018"

# The $explain folder was written as JSON; kept here verbatim so the generator and the file agree.
EXPLAIN = json.loads(r'''[
 {
  "name": "Why does an RXK clinician see only RXK's records of an objector?",
  "event": [
   {
    "listen": "test",
    "script": {
     "type": "text/javascript",
     "exec": [
      "pm.test('status 200', () => pm.response.to.have.status(200));",
      "const p = pm.response.json(); const val = n => (p.parameter.find(x => x.name === n) || {}); const evals = p.parameter.filter(x => x.name === 'evaluation').map(e => Object.fromEntries(e.part.filter(x => x.name !== 'fact').map(x => [x.name, x.valueCode || x.valueString])));",
      "pm.test('permitted by a hospital visit (R-LR-2)', () => { pm.expect(val('outcome').valueCode).to.eql('permit'); pm.expect(val('rule').valueCode).to.eql('R-LR-2'); });",
      "pm.test('the objection restricts (R-OBJ-2)', () => pm.expect(evals.some(e => e.rule === 'R-OBJ-2' && e.result === 'restrict')).to.be.true);",
      "pm.test('no clinical content', () => pm.expect(pm.response.text()).to.not.include('Khan'));"
     ]
    }
   }
  ],
  "request": {
   "method": "POST",
   "header": [
    {
     "key": "Authorization",
     "value": "Bearer {{privacyOfficerToken}}"
    },
    {
     "key": "Content-Type",
     "value": "application/fhir+json"
    }
   ],
   "url": "{{baseUrl}}/Patient/9990000026/$explain",
   "body": {
    "mode": "raw",
    "raw": "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"organization\", \"valueString\": \"RXK\"}, {\"name\": \"role\", \"valueString\": \"R8000\"}, {\"name\": \"user\", \"valueString\": \"555021935107\"}]}"
   }
  }
 },
 {
  "name": "Why can't the ambulance crew see Jane? (and could they break the glass?)",
  "event": [
   {
    "listen": "test",
    "script": {
     "type": "text/javascript",
     "exec": [
      "pm.test('status 200', () => pm.response.to.have.status(200));",
      "const p = pm.response.json(); const val = n => (p.parameter.find(x => x.name === n) || {}); const evals = p.parameter.filter(x => x.name === 'evaluation').map(e => Object.fromEntries(e.part.filter(x => x.name !== 'fact').map(x => [x.name, x.valueCode || x.valueString])));",
      "pm.test('refused: no relationship (R-LR-5)', () => pm.expect(val('rule').valueCode).to.eql('R-LR-5'));",
      "pm.test('a self-claim is open to them (R-LR-4)', () => pm.expect(evals.some(e => e.rule === 'R-LR-4' && e.result === 'permit')).to.be.true);"
     ]
    }
   }
  ],
  "request": {
   "method": "POST",
   "header": [
    {
     "key": "Authorization",
     "value": "Bearer {{privacyOfficerToken}}"
    },
    {
     "key": "Content-Type",
     "value": "application/fhir+json"
    }
   ],
   "url": "{{baseUrl}}/Patient/9990000018/$explain",
   "body": {
    "mode": "raw",
    "raw": "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"organization\", \"valueString\": \"RYA\"}, {\"name\": \"role\", \"valueString\": \"R8000\"}, {\"name\": \"user\", \"valueString\": \"never-claimed\"}, {\"name\": \"purpose\", \"valueString\": \"ETREAT\"}]}"
   }
  }
 },
 {
  "name": "A clinician may not ask: 403",
  "event": [
   {
    "listen": "test",
    "script": {
     "type": "text/javascript",
     "exec": [
      "pm.test('status 403', () => pm.response.to.have.status(403));",
      "pm.test('forbidden', () => pm.expect(pm.response.json().issue[0].code).to.eql('forbidden'));"
     ]
    }
   }
  ],
  "request": {
   "method": "POST",
   "header": [
    {
     "key": "Authorization",
     "value": "Bearer {{gpToken}}"
    },
    {
     "key": "Content-Type",
     "value": "application/fhir+json"
    }
   ],
   "url": "{{baseUrl}}/Patient/9990000018/$explain",
   "body": {
    "mode": "raw",
    "raw": "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"organization\", \"valueString\": \"RXK\"}, {\"name\": \"role\", \"valueString\": \"R8000\"}, {\"name\": \"user\", \"valueString\": \"u\"}]}"
   }
  }
 }
]''')

folders = [
    ("Capability", [
        req("CapabilityStatement", "GET", "/metadata", status(200) + [
            "pm.test('FHIR 4.0.1', () => pm.expect(pm.response.json().fhirVersion).to.eql('4.0.1'));",
            "pm.test('five clinical types, Consent and the audit trail', () => pm.expect(pm.response.json().rest[0].resource.map(r => r.type)).to.eql(['Patient', 'AllergyIntolerance', 'MedicationStatement', 'Observation', 'Flag', 'Consent', 'AuditEvent']));"], token=None),
        req("SMART configuration", "GET", "/.well-known/smart-configuration", status(200) + [
            "pm.test('capabilities listed', () => pm.expect(pm.response.json().capabilities).to.be.an('array'));"], token=None),
    ]),
    ("Patient", [
        req("Search by NHS number", "GET", f"/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{JANE}", status(200) + bundle + [
            "pm.test('one patient', () => pm.expect(pm.response.json().total).to.eql(1));",
            f"pm.test('id is the NHS number', () => pm.expect(pm.response.json().entry[0].resource.id).to.eql('{JANE}'));"]),
        req("Search by family and birthdate", "GET", "/Patient?family=smith&birthdate=1970-01-02", status(200) + bundle + [
            "pm.test('found', () => pm.expect(pm.response.json().total).to.be.above(0));"]),
        req("Read", "GET", f"/Patient/{JANE}", status(200) + [
            "pm.test('Patient', () => pm.expect(pm.response.json().resourceType).to.eql('Patient'));",
            "pm.test('labelled with sources', () => pm.expect(pm.response.json().meta.tag.length).to.be.above(1));"]),
        req("$everything", "GET", f"/Patient/{JANE}/$everything", status(200) + bundle + [
            "const e = pm.response.json().entry;",
            "pm.test('Patient first', () => pm.expect(e[0].resource.resourceType).to.eql('Patient'));",
            "pm.test('an active alert next', () => { pm.expect(e[1].resource.resourceType).to.eql('Flag'); pm.expect(e[1].resource.status).to.eql('active'); });"]),
    ]),
    ("Clinical searches", [
        req("Observations, laboratory, page of 2", "GET", f"/Observation?patient={JANE}&category=laboratory&_count=2", status(200) + bundle + [
            "const b = pm.response.json();",
            "pm.test('at most 2 entries', () => pm.expect(b.entry.filter(x => x.search.mode === 'match').length).to.be.at.most(2));",
            "pm.test('next link when more', () => { if (b.total > 2) pm.expect(b.link.map(l => l.relation)).to.include('next'); });"]),
        req("Observation by LOINC code", "GET", f"/Observation?patient={JANE}&code=http://loinc.org|2823-3", status(200) + [
            "pm.test('potassium 5.9', () => pm.expect(pm.response.json().entry[0].resource.valueQuantity.value).to.eql(5.9));"]),
        req("Observations with a date prefix", "GET", f"/Observation?patient={JANE}&date=ge2000-01-01", status(200) + bundle),
        req("Count only", "GET", f"/Observation?patient={JANE}&_summary=count", status(200) + [
            "pm.test('total without entries', () => { pm.expect(pm.response.json().total).to.be.above(0); pm.expect(pm.response.json().entry).to.be.undefined; });"]),
        req("Allergies with the patient included", "GET", f"/AllergyIntolerance?patient={JANE}&_include=AllergyIntolerance:patient", status(200) + [
            "pm.test('patient included', () => pm.expect(pm.response.json().entry.some(x => x.search.mode === 'include')).to.be.true);"]),
        req("Active medications", "GET", f"/MedicationStatement?patient={JANE}&status=active", status(200) + [
            "pm.test('all active', () => pm.response.json().entry.filter(x => x.search.mode === 'match').forEach(x => pm.expect(x.resource.status).to.eql('active')));"]),
        req("Active alerts", "GET", f"/Flag?patient={JANE}&status=active", status(200) + bundle),
        req("Search by POST form", "POST", "/Observation/_search", status(200) + bundle,
            headers={"Content-Type": "application/x-www-form-urlencoded"}, body=f"patient={JANE}&_summary=count"),
    ]),
    ("Errors", [
        req("No token: 401", "GET", f"/Patient/{JANE}", outcome(401, "login") + [
            "pm.test('WWW-Authenticate', () => pm.response.to.have.header('WWW-Authenticate'));"], token=None),
        req("Expired token: 401", "GET", f"/Patient/{JANE}", outcome(401, "login"), token="{{expiredToken}}"),
        req("Malformed NHS number: 400", "GET", "/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000017", outcome(400, "invalid")),
        req("Malformed date: 400", "GET", f"/Observation?patient={JANE}&date=2026-13-01", outcome(400, "invalid")),
        req("Unknown parameter: 400", "GET", f"/Observation?patient={JANE}&colour=blue", outcome(400, "not-supported")),
        req("Unknown parameter, lenient: 200", "GET", f"/Observation?patient={JANE}&colour=blue", status(200) + bundle,
            headers={"Prefer": "handling=lenient"}),
        req("Unknown id: 404", "GET", "/Observation/gp.no-such-row", outcome(404, "not-found")),
        req("Wrong method: 405", "DELETE", f"/Patient/{JANE}", outcome(405, "not-supported")),
        req("Form search with JSON body: 415", "POST", "/Observation/_search", outcome(415, "not-supported"),
            headers={"Content-Type": "application/json"}, body="{}"),
        req("XML only: 406", "GET", f"/Patient/{JANE}", outcome(406, "not-supported"), headers={"Accept": "application/fhir+xml"}),
    ]),
    ("Backend services", [
        {"name": "Token for a client assertion", "event": test(status(200) + [
            "pm.test('bearer token', () => pm.expect(pm.response.json().token_type).to.eql('bearer'));",
            "pm.collectionVariables.set('backendToken', pm.response.json().access_token);"]),
         "request": {"method": "POST", "header": [], "url": "{{baseUrl}}/auth/token",
                     "body": {"mode": "urlencoded", "urlencoded": [
                         {"key": "grant_type", "value": "client_credentials"},
                         {"key": "client_assertion_type", "value": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
                         {"key": "client_assertion", "value": "{{clientAssertion}}"},
                         {"key": "scope", "value": "system/*.rs"}]}}},
        {"name": "The same assertion again is refused", "event": test(status(400) + [
            "pm.test('invalid_grant', () => pm.expect(pm.response.json().error).to.eql('invalid_grant'));"]),
         "request": {"method": "POST", "header": [], "url": "{{baseUrl}}/auth/token",
                     "body": {"mode": "urlencoded", "urlencoded": [
                         {"key": "grant_type", "value": "client_credentials"},
                         {"key": "client_assertion_type", "value": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
                         {"key": "client_assertion", "value": "{{clientAssertion}}"}]}}},
        req("The backend reads a record", "GET", f"/Patient/{JANE}/$everything", status(200) + bundle, token="{{backendToken}}"),
    ]),
    # The SMART authorization code flow with PKCE, as the viewer app does it, signing in at the
    # development identity provider as trust-ben (one role: no role page; no launch/patient: no
    # patient picker). Redirects are not followed: each hop is a request with its own checks.
    ("Authorization code (development provider)", [
        hop("App asks the facade to authorize (PKCE)", "{{baseUrl}}/auth/authorize?response_type=code&client_id=scr-viewer"
            "&redirect_uri={{appRedirectEncoded}}&scope=openid%20fhirUser%20user%2F*.rs&state={{appState}}&aud={{baseUrl}}"
            "&code_challenge={{codeChallenge}}&code_challenge_method=S256", [
            "const to = pm.response.headers.get('Location') || '';",
            "pm.test('to the development provider', () => pm.expect(to).to.include('/dev-idp/authorize?'));",
            "pm.test('as the facade client scr', () => pm.expect(to).to.match(/[?&]client_id=scr(&|$)/));",
            "pm.collectionVariables.set('idpAuthorize', to);"], pre=PKCE),
        hop("trust-ben signs in at the development provider", "{{idpAuthorize}}&user=trust-ben", [
            "const to = pm.response.headers.get('Location') || '';",
            "pm.test('back to the facade callback with a code', () => { pm.expect(to.startsWith(pm.variables.get('baseUrl') + '/auth/callback?')).to.be.true; pm.expect(to).to.include('code='); });",
            "pm.collectionVariables.set('callback', to);"]),
        hop("The facade's callback redirects to the app with a code", "{{callback}}", [
            "const to = pm.response.headers.get('Location') || '';",
            "pm.test('to the registered redirect URI', () => pm.expect(to.startsWith(pm.collectionVariables.get('appRedirect') + '?')).to.be.true);",
            "const q = Object.fromEntries(to.split('?')[1].split('&').map(kv => kv.split('=').map(decodeURIComponent)));",
            "pm.test('state returned unchanged', () => pm.expect(q.state).to.eql(pm.collectionVariables.get('appState')));",
            "pm.test('a code', () => pm.expect(q.code).to.be.a('string').and.not.empty);",
            "pm.collectionVariables.set('appCode', q.code);"]),
        {"name": "A wrong PKCE verifier is refused", "event": test(status(400) + [
            "pm.test('invalid_grant', () => pm.expect(pm.response.json().error).to.eql('invalid_grant'));"]),
         "request": {"method": "POST", "header": [], "url": "{{baseUrl}}/auth/token",
                     "body": {"mode": "urlencoded", "urlencoded": [
                         {"key": "grant_type", "value": "authorization_code"},
                         {"key": "code", "value": "{{appCode}}"},
                         {"key": "redirect_uri", "value": "{{appRedirect}}"},
                         {"key": "client_id", "value": "scr-viewer"},
                         {"key": "code_verifier", "value": "{{wrongVerifier}}"}]}}},
        # The code of a refused attempt may be used up; the flow runs again for the real exchange.
        hop("Authorize again (fresh PKCE)", "{{baseUrl}}/auth/authorize?response_type=code&client_id=scr-viewer"
            "&redirect_uri={{appRedirectEncoded}}&scope=openid%20fhirUser%20user%2F*.rs&state={{appState}}&aud={{baseUrl}}"
            "&code_challenge={{codeChallenge}}&code_challenge_method=S256", [
            "pm.collectionVariables.set('idpAuthorize', pm.response.headers.get('Location') || '');",
            "pm.test('to the development provider', () => pm.expect(pm.collectionVariables.get('idpAuthorize')).to.include('/dev-idp/authorize?'));"], pre=PKCE),
        hop("trust-ben signs in again", "{{idpAuthorize}}&user=trust-ben", [
            "pm.collectionVariables.set('callback', pm.response.headers.get('Location') || '');"]),
        hop("Callback again", "{{callback}}", [
            "const to = pm.response.headers.get('Location') || '';",
            "pm.collectionVariables.set('appCode', decodeURIComponent((to.match(/[?&]code=([^&]*)/) || [])[1] || ''));",
            "pm.test('a code', () => pm.expect(pm.collectionVariables.get('appCode')).to.not.be.empty);"]),
        {"name": "The app exchanges the code with its PKCE verifier", "event": test(status(200) + [
            "const t = pm.response.json();",
            "pm.test('bearer token', () => pm.expect(t.token_type.toLowerCase()).to.eql('bearer'));",
            "pm.test('an id token (openid)', () => pm.expect(t.id_token).to.be.a('string'));",
            "pm.test('user scope granted', () => pm.expect(t.scope).to.include('user/'));",
            "pm.collectionVariables.set('appToken', t.access_token);"]),
         "request": {"method": "POST", "header": [], "url": "{{baseUrl}}/auth/token",
                     "body": {"mode": "urlencoded", "urlencoded": [
                         {"key": "grant_type", "value": "authorization_code"},
                         {"key": "code", "value": "{{appCode}}"},
                         {"key": "redirect_uri", "value": "{{appRedirect}}"},
                         {"key": "client_id", "value": "scr-viewer"},
                         {"key": "code_verifier", "value": "{{codeVerifier}}"}]}}},
        {"name": "The same code again is refused", "event": test(status(400) + [
            "pm.test('invalid_grant', () => pm.expect(pm.response.json().error).to.eql('invalid_grant'));"]),
         "request": {"method": "POST", "header": [], "url": "{{baseUrl}}/auth/token",
                     "body": {"mode": "urlencoded", "urlencoded": [
                         {"key": "grant_type", "value": "authorization_code"},
                         {"key": "code", "value": "{{appCode}}"},
                         {"key": "redirect_uri", "value": "{{appRedirect}}"},
                         {"key": "client_id", "value": "scr-viewer"},
                         {"key": "code_verifier", "value": "{{codeVerifier}}"}]}}},
        req("trust-ben reads Jane's record with the app's token", "GET", f"/Patient/{JANE}/$everything", status(200) + bundle,
            token="{{appToken}}"),
    ]),
    ("R-LR relationships", [
        req("No relationship: 403 naming R-LR-5", "GET", f"/Patient/{JANE}/$everything", outcome(403, "forbidden") + [
            "pm.test('says how to self-claim', () => pm.expect(pm.response.json().issue[0].diagnostics).to.include('self-claim'));"], token="{{ambulanceToken}}"),
        req("Recent hospital visit opens the record (R-LR-2)", "GET", f"/Patient/{JANE}", status(200), token="{{token}}"),
    ]),
    ("R-LR-4 break glass", [
        req("Ambulance crew self-claims (ETREAT)", "POST", f"/Patient/{JANE}/$break-glass", status(200) + [
            "pm.test('informational outcome', () => pm.expect(pm.response.json().issue[0].code).to.eql('informational'));"],
            token="{{crewToken}}", headers={"Content-Type": "application/fhir+json"},
            body=json.dumps({"resourceType": "Parameters", "parameter": [{"name": "purpose", "valueCode": "ETREAT"}, {"name": "reason", "valueString": "Unconscious at roadside, need allergies"}]})),
        req("The record now opens for the crew", "GET", f"/Patient/{JANE}/$everything", status(200) + bundle, token="{{crewToken}}"),
        req("Privacy officer's break-glass review list", "GET", "/AuditEvent?break-glass=true", status(200) + [
            "pm.test('listed', () => pm.expect(pm.response.json().total).to.be.above(0));"], token="{{privacyOfficerToken}}"),
    ]),
    ("R-OBJ objections", [
        req("Objector seen by the GP: own practice's records only, with a warning", "GET", "/Patient/9990000026/$everything", status(200) + [
            "const b = pm.response.json();",
            "pm.test('only M85001 records', () => b.entry.filter(e => e.search.mode === 'match').forEach(e => pm.expect(JSON.stringify(e.resource.meta.tag)).to.include('M85001')));",
            "pm.test('R-OBJ-3 warning', () => pm.expect(JSON.stringify(b.entry.filter(e => e.search.mode === 'outcome'))).to.include('R-OBJ-3'));"], token="{{gpToken}}"),
    ]),
    ("R-SENS sensitive records", [
        req("GP does not see sexual health results (count included)", "GET", "/Observation?patient=9990000042&code=http://loinc.org|43304-5&_summary=count", status(200) + [
            "pm.test('none counted', () => pm.expect(pm.response.json().total).to.eql(0));"], token="{{gpToken}}"),
    ]),
    ("R-AUD audit", [
        req("Privacy officer lists refusals", "GET", "/AuditEvent?outcome=4&_count=5", status(200) + bundle, token="{{privacyOfficerToken}}"),
        req("Patient sees who accessed their record", "GET", "/AuditEvent?_count=5", status(200) + bundle, token="{{patientToken}}"),
        req("Clinician cannot search the audit trail", "GET", "/AuditEvent", outcome(403, "forbidden")),
    ]),
    ("R-AUD-4 explain", EXPLAIN),
    ("alerts", [
        req("GP sets an interpreter alert", "POST", "/Flag", status(201) + [
            "pm.test('version 1', () => pm.expect(pm.response.json().meta.versionId).to.eql('1'));",
            "pm.collectionVariables.set('alertId', pm.response.json().id);"],
            token="{{gpWriteToken}}", headers={"Content-Type": "application/fhir+json"}, body=json.dumps({"resourceType": "Flag", "status": "active", "category": [{"coding": [{"system": "https://scr.example.nhs.uk/CodeSystem/alert-category", "code": "communication-support"}]}], "code": {"text": "Needs a Punjabi interpreter"}, "subject": {"reference": f"Patient/{JANE}"}, "period": {"start": "2026-11-25"}})),
        req("It opens the record among the active alerts", "GET", f"/Patient/{JANE}/$everything", status(200) + [
            "const ids = pm.response.json().entry.map(e => e.resource.id);",
            "pm.test('listed before any allergy', () => pm.expect(ids.indexOf(pm.collectionVariables.get('alertId'))).to.be.below(ids.findIndex(i => String(i).includes('all'))));"]),
        {"name": "GP updates it with If-Match", "event": test(status(200) + ["pm.test('version 2', () => pm.expect(pm.response.json().meta.versionId).to.eql('2'));"]),
         "request": {"method": "PUT", "header": [{"key": "Authorization", "value": "Bearer {{gpWriteToken}}"}, {"key": "Content-Type", "value": "application/fhir+json"}, {"key": "If-Match", "value": "W/\"1\""}],
                     "url": "{{baseUrl}}/Flag/{{alertId}}", "body": {"mode": "raw", "raw": json.dumps({"resourceType": "Flag", "status": "active", "category": [{"coding": [{"system": "https://scr.example.nhs.uk/CodeSystem/alert-category", "code": "communication-support"}]}], "code": {"text": "Needs a Punjabi interpreter"}, "subject": {"reference": f"Patient/{JANE}"}, "period": {"start": "2026-11-25"}}).replace("Needs a Punjabi", "Needs a Punjabi-speaking")}}},
        {"name": "A second update of version 1 is refused (412)", "event": test(outcome(412, "conflict")),
         "request": {"method": "PUT", "header": [{"key": "Authorization", "value": "Bearer {{gpWriteToken}}"}, {"key": "Content-Type", "value": "application/fhir+json"}, {"key": "If-Match", "value": "W/\"1\""}],
                     "url": "{{baseUrl}}/Flag/{{alertId}}", "body": {"mode": "raw", "raw": json.dumps({"resourceType": "Flag", "status": "active", "category": [{"coding": [{"system": "https://scr.example.nhs.uk/CodeSystem/alert-category", "code": "communication-support"}]}], "code": {"text": "Needs a Punjabi interpreter"}, "subject": {"reference": f"Patient/{JANE}"}, "period": {"start": "2026-11-25"}})}}},
        {"name": "Every version is kept", "event": test(status(200) + ["pm.test('two versions', () => pm.expect(pm.response.json().entry.length).to.eql(2));"]),
         "request": {"method": "GET", "header": [{"key": "Authorization", "value": "Bearer {{token}}"}], "url": "{{baseUrl}}/Flag/{{alertId}}/_history"}},
    ]),
    ("portal", [
        req("The patient reads their own record", "GET", f"/Patient/{JANE}/$everything", status(200) + bundle, token="{{patientWriteToken}}"),
        req("The patient adds a preferred place of death", "POST", "/Flag", status(201),
            token="{{patientWriteToken}}", headers={"Content-Type": "application/fhir+json"}, body=json.dumps({"resourceType": "Flag", "status": "active", "category": [{"coding": [{"system": "https://scr.example.nhs.uk/CodeSystem/alert-category", "code": "end-of-life-wishes"}]}], "code": {"text": "Preferred place of death: home"}, "subject": {"reference": f"Patient/{JANE}"}, "period": {"start": "2026-11-25"}})),
        req("The patient sees who accessed their record", "GET", "/AuditEvent?_count=10", status(200) + bundle, token="{{patientWriteToken}}"),
        req("An objector sees that the objection stands", "GET", "/Patient/9990000026/$everything", status(200) + [
            "pm.test('told about the objection', () => pm.expect(JSON.stringify(pm.response.json().entry.filter(e => e.search.mode === 'outcome'))).to.include('R-OBJ-6'));"],
            token="{{objectorToken}}"),
    ]),
    ("R-ROLE roles and patients", [
        req("Social worker cannot read observations (R-ROLE-3)", "GET", f"/Observation?patient={JANE}", outcome(403, "forbidden"), token="{{socialWorkerToken}}"),
        req("Social worker reads alerts", "GET", f"/Flag?patient={JANE}", status(200) + bundle, token="{{socialWorkerToken}}"),
        req("Patient reads own record", "GET", f"/Patient/{JANE}/$everything", status(200) + bundle, token="{{patientToken}}"),
        req("Patient cannot read another record", "GET", "/Patient/9990000026", outcome(403, "forbidden"), token="{{patientToken}}"),
    ]),
]

collection = {
    "info": {
        "name": "Shared care record FHIR facade",
        "description": "Every endpoint of scr against `scr demo`, with assertions. Tokens come from `scr token` (see examples/postman/README.md).",
        "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
    },
    "item": [{"name": n, "item": items} for n, items in folders],
}
environment = {
    "name": "scr demo (localhost)",
    "values": [
        {"key": "baseUrl", "value": "http://127.0.0.1:8080/fhir", "enabled": True},
        {"key": "token", "value": "paste: scr token staff --org RXK --role R8000", "enabled": True},
        {"key": "socialWorkerToken", "value": "paste: scr token staff --org LA-DUD --role R8014 --sub sw-dud-0001", "enabled": True},
        {"key": "patientToken", "value": "paste: scr token patient --nhs 9990000018", "enabled": True},
        {"key": "gpToken", "value": "paste: scr token staff --org M85001 --role R8000", "enabled": True},
        {"key": "ambulanceToken", "value": "paste: scr token staff --org RYA --role R8000", "enabled": True},
        {"key": "clientAssertion", "value": "paste: scr token assertion --aud {{baseUrl}}/auth/token", "enabled": True},
        {"key": "gpWriteToken", "value": "paste: scr token staff --org M85001 --role R8000 --scope 'user/*.rs user/Flag.cu'", "enabled": True},
        {"key": "patientWriteToken", "value": "paste: scr token patient --nhs 9990000018 --scope 'patient/*.rs patient/Flag.cu'", "enabled": True},
        {"key": "objectorToken", "value": "paste: scr token patient --nhs 9990000026", "enabled": True},
        {"key": "crewToken", "value": "paste: scr token staff --org RYA --role R8000 --sub crew-demo", "enabled": True},
        {"key": "privacyOfficerToken", "value": "paste: scr token staff --org M85001 --role R0001 --scope user/AuditEvent.rs", "enabled": True},
        {"key": "expiredToken", "value": "paste: scr token staff --lifetime=-120", "enabled": True},
    ],
}
with open("scr.postman_collection.json", "w") as f:
    json.dump(collection, f, indent=2)
    f.write("\n")
with open("scr.postman_environment.json", "w") as f:
    json.dump(environment, f, indent=2)
    f.write("\n")
