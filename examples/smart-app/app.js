// The shared care record viewer: a small SMART on FHIR app (fhirclient).
// launch.html starts the authorization (EHR launch with `launch`, or standalone with `iss`);
// index.html completes it and shows one patient's record: alerts first, then allergies,
// medications and recent results, each labelled with the organisation that holds it, and any
// warning the server sent. Data is only ever written with textContent, never as HTML.
"use strict";

const CLIENT_ID = "scr-viewer";
const ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code";
const SOURCE_SYSTEM = "https://scr.example.nhs.uk/CodeSystem/source-system";
const NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number";
const RECENT_RESULTS = 20;

function $(id) {
  return document.getElementById(id);
}

function setStatus(text) {
  const status = $("status");
  if (status) {
    status.textContent = text;
    status.hidden = !text;
  }
}

function showRefusal(text) {
  const box = $("refusal");
  box.textContent = text;
  box.hidden = false;
  setStatus("");
}

function launch() {
  const params = new URLSearchParams(window.location.search);
  const ehr = params.has("launch");
  const scope = (ehr ? "launch" : "launch/patient") + " openid fhirUser patient/*.rs online_access";
  FHIR.oauth2
    // A public client: PKCE (S256) always; fhirclient refuses a server that does not offer it.
    .authorize({ clientId: CLIENT_ID, scope: scope, redirectUri: "index.html", pkceMode: "required" })
    .catch(function (e) {
      showRefusal("The app could not start: " + (e && e.message ? e.message : String(e)));
    });
}

// ---- Reading values ----------------------------------------------------------------------

function codingText(cc) {
  if (!cc) return "";
  if (cc.text) return cc.text;
  const coding = (cc.coding || []).find(function (c) { return c.display || c.code; });
  return coding ? coding.display || coding.code : "";
}

function humanName(patient) {
  const name = (patient.name || []).find(function (n) { return n.use === "official"; }) ||
    (patient.name || [])[0];
  if (!name) return "Unnamed patient";
  if (name.text) return name.text;
  // The name a clinician calls the patient by: first given name and family name.
  return [(name.given || [])[0], name.family].filter(Boolean).join(" ");
}

function nhsNumber(patient) {
  const id = (patient.identifier || []).find(function (i) { return i.system === NHS_NUMBER_SYSTEM; });
  return id ? id.value : "";
}

// The organisation that holds an entry: the server tags each resource with the holder's ODS
// code and the source system's name (meta.tag), and names the source in meta.source.
function sourceLabel(resource) {
  const tags = (resource.meta && resource.meta.tag) || [];
  const ods = tags.filter(function (t) { return t.system === ODS_SYSTEM; }).map(function (t) { return t.code; });
  const source = tags.filter(function (t) { return t.system === SOURCE_SYSTEM; }).map(function (t) { return t.code; });
  const parts = [];
  if (ods.length) parts.push(ods.join(", "));
  if (source.length) parts.push("via " + source.join(", "));
  if (!parts.length && resource.meta && resource.meta.source) parts.push(resource.meta.source);
  return parts.length ? "Source: " + parts.join(" ") : "Source not stated";
}

function when(resource) {
  return resource.effectiveDateTime || (resource.effectivePeriod && resource.effectivePeriod.start) ||
    resource.issued || resource.recordedDate || resource.onsetDateTime || resource.authoredOn ||
    resource.dateAsserted || (resource.period && resource.period.start) || "";
}

function quantity(obs) {
  if (obs.valueQuantity) {
    return [obs.valueQuantity.value, obs.valueQuantity.unit || obs.valueQuantity.code]
      .filter(function (x) { return x !== undefined && x !== null && x !== ""; }).join(" ");
  }
  if (obs.valueString) return obs.valueString;
  if (obs.valueCodeableConcept) return codingText(obs.valueCodeableConcept);
  return "";
}

// ---- Rendering ---------------------------------------------------------------------------

function item(list, resource, text, date) {
  const li = document.createElement("li");
  if (date) {
    const d = document.createElement("span");
    d.className = "when";
    d.textContent = date.slice(0, 10);
    li.appendChild(d);
  }
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text || "(no description)";
  li.appendChild(t);
  const s = document.createElement("span");
  s.className = "source";
  s.textContent = sourceLabel(resource);
  li.appendChild(s);
  list.appendChild(li);
}

function fill(sectionId, listId, resources, describe, withDate) {
  const list = $(listId);
  resources.forEach(function (r) { item(list, r, describe(r), withDate ? when(r) : ""); });
  $(sectionId).hidden = false;
  if (!resources.length) {
    const li = document.createElement("li");
    li.textContent = "None recorded in the shared record.";
    list.appendChild(li);
  }
}

function render(entries) {
  const matches = entries.filter(function (e) { return !e.search || e.search.mode !== "outcome"; })
    .map(function (e) { return e.resource; }).filter(Boolean);
  const outcomes = entries.map(function (e) { return e.resource; })
    .filter(function (r) { return r && r.resourceType === "OperationOutcome"; });
  const ofType = function (t) { return matches.filter(function (r) { return r.resourceType === t; }); };

  const patient = ofType("Patient")[0];
  if (patient) {
    $("patient-name").textContent = humanName(patient);
    const nhs = nhsNumber(patient);
    $("patient-details").textContent = [nhs ? "NHS number " + nhs : "", patient.birthDate ? "born " + patient.birthDate : ""]
      .filter(Boolean).join(", ");
  }

  const alerts = ofType("Flag").filter(function (f) { return f.status === "active"; });
  if (alerts.length) {
    alerts.forEach(function (f) { item($("alert-list"), f, codingText(f.code), ""); });
    $("alerts").hidden = false;
  } else {
    $("no-alerts").hidden = false;
  }

  const warnings = [];
  outcomes.forEach(function (oo) {
    (oo.issue || []).forEach(function (i) {
      const text = i.diagnostics || codingText(i.details) || i.code;
      if (text) warnings.push(text);
    });
  });
  if (warnings.length) {
    warnings.forEach(function (w) {
      const li = document.createElement("li");
      li.textContent = w;
      $("warning-list").appendChild(li);
    });
    $("warnings").hidden = false;
  }

  fill("allergies", "allergy-list", ofType("AllergyIntolerance"), function (a) {
    const reactions = (a.reaction || []).map(function (r) {
      return (r.manifestation || []).map(codingText).filter(Boolean).join(", ");
    }).filter(Boolean);
    return codingText(a.code) + (reactions.length ? " (" + reactions.join("; ") + ")" : "");
  }, false);

  const meds = ofType("MedicationStatement").concat(ofType("MedicationRequest"));
  fill("medications", "medication-list", meds, function (m) {
    const name = codingText(m.medicationCodeableConcept);
    const dose = (m.dosage || m.dosageInstruction || []).map(function (d) { return d.text; }).filter(Boolean);
    return name + (dose.length ? ": " + dose.join("; ") : "");
  }, false);

  const results = ofType("Observation").slice().sort(function (a, b) {
    return when(b).localeCompare(when(a));
  }).slice(0, RECENT_RESULTS);
  fill("results", "result-list", results, function (o) {
    const value = quantity(o);
    return codingText(o.code) + (value ? ": " + value : "");
  }, true);
  setStatus("");
}

// The refusal text of a 401/403 (an OperationOutcome's diagnostics), shown as the server wrote it.
async function refusalText(response) {
  try {
    const body = await response.json();
    const texts = (body.issue || []).map(function (i) { return i.diagnostics || codingText(i.details); }).filter(Boolean);
    if (texts.length) return texts.join(" ");
  } catch (e) {
    // not JSON: fall through
  }
  return "The shared care record refused the request (HTTP " + response.status + ").";
}

// Patient/{id}/$everything, following `next` links.
async function everything(client) {
  const auth = client.getAuthorizationHeader();
  let url = client.state.serverUrl.replace(/\/$/, "") + "/Patient/" + encodeURIComponent(client.patient.id) + "/$everything";
  const entries = [];
  for (let page = 0; url && page < 50; page += 1) {
    const response = await fetch(url, { headers: { Accept: "application/fhir+json", Authorization: auth } });
    if (!response.ok) {
      return { refused: await refusalText(response) };
    }
    const bundle = await response.json();
    Array.prototype.push.apply(entries, bundle.entry || []);
    const next = (bundle.link || []).find(function (l) { return l.relation === "next"; });
    url = next ? next.url : null;
  }
  return { entries: entries };
}

async function view() {
  let client;
  try {
    client = await FHIR.oauth2.ready();
  } catch (e) {
    showRefusal("Sign-in did not complete: " + (e && e.message ? e.message : String(e)));
    return;
  }
  if (!client.patient.id) {
    showRefusal("No patient was chosen for this session.");
    return;
  }
  try {
    const answer = await everything(client);
    if (answer.refused) {
      showRefusal(answer.refused);
    } else {
      render(answer.entries);
    }
  } catch (e) {
    showRefusal("The record could not be read: " + (e && e.message ? e.message : String(e)));
  }
}

if (document.body.dataset.page === "launch") {
  launch();
} else {
  view();
}
