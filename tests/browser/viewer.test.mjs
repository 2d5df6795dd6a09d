// The viewer app (examples/smart-app/) in a real Chromium (issue 13 item 5), against a fresh
// `scr demo --no-neighbour` on free ports with a temporary data folder:
//   1. EHR launch: a host system registers a launch for gp-asha (backend token), opens the app,
//      gp-asha signs in at the development provider and confirms her role: the app shows Jane
//      Smith and her first active alert.
//   2. Standalone launch: trust-ben signs in and picks Jane by NHS number: same.
//   3. Standalone launch by the patient, Jane herself (NHS login-shaped): her own record.
//   4. EHR launch for gp-eve, who has no relationship with Jane: the server's refusal text is
//      shown, and nothing of the record.
// What the app must show is read from the server's API with development tokens, not written
// into this file. Usage: node viewer.test.mjs   (SCR_BIN, CHROMIUM to override the paths;
// UPDATE_SCREENSHOT=1 also writes docs/img/viewer.png).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const targetDir = process.env.CARGO_TARGET_DIR || join(root, "target");
const SCR = process.env.SCR_BIN || join(targetDir, "debug/scr");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const JANE = "9990000018";
const artifacts = join(here, "artifacts");

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.unref();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function scr(args) {
  return execFileSync(SCR, args, { encoding: "utf8" }).trim();
}

async function waitFor(url, demo, log) {
  for (let i = 0; i < 240; i += 1) {
    if (demo.exitCode !== null) throw new Error("scr demo exited:\n" + log());
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error("scr demo did not answer at " + url + ":\n" + log());
}

/** A SMART Backend Services token of the development client (system/*.rs). */
async function backendToken(base) {
  const assertion = scr(["token", "assertion", "--aud", base + "/auth/token"]);
  const r = await fetch(base + "/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      scope: "system/*.rs",
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: assertion,
    }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, "backend token: " + JSON.stringify(body));
  return body.access_token;
}

/** The host system registers an EHR launch of Jane for `user`. */
async function registerLaunch(base, token, user) {
  const r = await fetch(base + "/auth/launch", {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: JSON.stringify({ patient: JANE, user }),
  });
  const body = await r.json();
  assert.equal(r.status, 201, "launch: " + JSON.stringify(body));
  assert.ok(body.launch, "a launch id");
  return body.launch;
}

/** Jane's record as a clinician of `org` reads it through the API: the expected page. */
async function record(base, org) {
  const token = scr(["token", "staff", "--org", org, "--role", "R8000", "--aud", base]);
  const r = await fetch(`${base}/Patient/${JANE}/$everything`, {
    headers: { Authorization: "Bearer " + token, Accept: "application/fhir+json" },
  });
  return { status: r.status, body: await r.json() };
}

function firstAlertText(bundle) {
  const flag = (bundle.entry || []).map((e) => e.resource)
    .find((r) => r && r.resourceType === "Flag" && r.status === "active");
  assert.ok(flag, "Jane has an active alert in the demo data");
  const cc = flag.code || {};
  return cc.text || (cc.coding || []).map((c) => c.display || c.code).find(Boolean);
}

function patientName(bundle) {
  const p = (bundle.entry || []).map((e) => e.resource).find((r) => r && r.resourceType === "Patient");
  const n = (p.name || [])[0] || {};
  return n.text || [(n.given || [])[0], n.family].filter(Boolean).join(" ");
}

async function signIn(page, user) {
  await page.waitForSelector(`button[data-user="${user}"]`, { timeout: 20000 });
  assert.match(await page.title(), /Development sign-in: not for real use/);
  await page.click(`button[data-user="${user}"]`);
}

async function expectRecord(page, name, alert, shot) {
  await page.waitForURL(/\/apps\/viewer\/index\.html/, { timeout: 20000 });
  await page.waitForSelector("#alerts:not([hidden])", { timeout: 20000 });
  assert.equal((await page.textContent("#patient-name")).trim(), name);
  assert.match(await page.textContent("#patient-details"), new RegExp("NHS number " + JANE));
  const alerts = page.locator("#alerts");
  assert.ok(await alerts.isVisible(), "the alerts block is visible");
  assert.equal(await alerts.getAttribute("role"), "alert");
  assert.ok(await page.locator("#no-alerts").isHidden(), "no 'No active alerts' beside alerts");
  const first = (await page.locator("#alert-list li .text").first().textContent()).trim();
  assert.equal(first, alert, "the first alert shown is the record's first active alert");
  assert.ok(await page.locator("#refusal").isHidden(), "no refusal");
  // Every entry names the organisation that holds it (an ODS code from meta.tag).
  const items = await page.locator("li:has(.text)").count();
  const labels = await page.locator("li .source").allTextContents();
  assert.ok(labels.length > 0 && labels.length === items, `${labels.length} labels for ${items} entries`);
  for (const label of labels) assert.match(label, /^Source: [A-Z0-9-]+/);
  await page.screenshot({ path: join(artifacts, shot), fullPage: true });
}

async function main() {
  assert.ok(existsSync(SCR), `no scr binary at ${SCR}: cargo build first, or set SCR_BIN`);
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium, or set CHROMIUM`);
  mkdirSync(artifacts, { recursive: true });
  const [port, mllp] = [await freePort(), await freePort()];
  const data = mkdtempSync(join(tmpdir(), "scr-browser-"));
  const logFile = join(data, "demo.log");
  const { openSync } = await import("node:fs");
  const out = openSync(logFile, "w");
  const demo = spawn(SCR, ["demo", "--data", join(data, "demo"), "--port", String(port),
    "--mllp-port", String(mllp), "--patients", "0", "--no-neighbour"],
  { stdio: ["ignore", out, out], env: { ...process.env, SCR_LOG: "info" } });
  const log = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  const base = `http://127.0.0.1:${port}/fhir`;
  const app = `http://127.0.0.1:${port}/apps/viewer`;
  let browser;
  const failures = [];
  let scenarios = 0;
  try {
    await waitFor(base + "/metadata", demo, log);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });

    const gp = await record(base, "M85001");
    assert.equal(gp.status, 200);
    const name = patientName(gp.body);
    assert.equal(name, "Jane Smith");
    const gpAlert = firstAlertText(gp.body);

    const scenario = async (title, run) => {
      scenarios += 1;
      const context = await browser.newContext();
      const page = await context.newPage();
      const consoleLines = [];
      page.on("console", (m) => consoleLines.push(m.type() + ": " + m.text()));
      page.on("pageerror", (e) => consoleLines.push("pageerror: " + e.message));
      try {
        await run(page);
        console.log("ok - " + title);
      } catch (e) {
        await page.screenshot({ path: join(artifacts, title.replace(/\W+/g, "-") + "-failed.png") }).catch(() => {});
        failures.push(title);
        console.log("not ok - " + title + "\n  " + String(e.stack || e).split("\n").join("\n  ") +
          "\n  at " + page.url() + "\n  console:\n    " + consoleLines.join("\n    "));
      } finally {
        await context.close();
      }
    };

    // Rendering with a token handed to fhirclient directly (FHIR.client with a tokenResponse),
    // no launch: the objector's record as a clinician at her practice carries the server's
    // warning, which the app must show plainly.
    await scenario("warnings in the Bundle are shown plainly (objector, token given directly)", async (page) => {
      const objector = "9990000026";
      const token = scr(["token", "staff", "--org", "M85001", "--role", "R8000", "--aud", base]);
      const r = await fetch(`${base}/Patient/${objector}/$everything`, { headers: { Authorization: "Bearer " + token } });
      assert.equal(r.status, 200);
      const resources = ((await r.json()).entry || []).map((e) => e.resource);
      const hasAlerts = resources.some((x) => x && x.resourceType === "Flag" && x.status === "active");
      const warnings = resources
        .filter((x) => x && x.resourceType === "OperationOutcome")
        .flatMap((oo) => oo.issue.map((i) => i.diagnostics)).filter(Boolean);
      assert.ok(warnings.length, "the objector's record carries a warning");
      await page.addInitScript(([serverUrl, accessToken, patient]) => {
        let lib;
        Object.defineProperty(window, "FHIR", {
          configurable: true,
          get: () => lib,
          set: (v) => {
            lib = v;
            lib.oauth2.ready = () => Promise.resolve(lib.client({ serverUrl, tokenResponse: { access_token: accessToken, patient } }));
          },
        });
      }, [base, token, objector]);
      await page.goto(`${app}/index.html`);
      await page.waitForSelector("#warnings:not([hidden])", { timeout: 20000 });
      const shown = await page.locator("#warning-list li").allTextContents();
      assert.deepEqual(shown.map((t) => t.trim()), warnings);
      // "No active alerts" exactly when the record has none, never beside an alert.
      assert.equal(await page.locator("#no-alerts").isVisible(), !hasAlerts);
      assert.equal(await page.locator("#alerts").isVisible(), hasAlerts);
      await page.screenshot({ path: join(artifacts, "warnings-objector.png"), fullPage: true });
    });
    if (process.env.ONLY === "render") return;

    const backend = await backendToken(base);

    await scenario("EHR launch as gp-asha shows Jane Smith and her first alert", async (page) => {
      const launch = await registerLaunch(base, backend, "gp-asha");
      await page.goto(`${app}/launch.html?iss=${encodeURIComponent(base)}&launch=${encodeURIComponent(launch)}`);
      await signIn(page, "gp-asha");
      // Two roles, first sign-in: confirm the GP practice role (pre-selected).
      await page.waitForSelector("#confirm-role", { timeout: 20000 });
      await page.click("#confirm-role");
      await expectRecord(page, name, gpAlert, "ehr-launch-gp-asha.png");
      if (process.env.UPDATE_SCREENSHOT) {
        mkdirSync(join(root, "docs/img"), { recursive: true });
        await page.setViewportSize({ width: 1000, height: 900 });
        await page.screenshot({ path: join(root, "docs/img/viewer.png"), fullPage: true });
      }
    });

    const trust = await record(base, "RXK");
    await scenario("standalone launch as trust-ben, Jane picked by NHS number", async (page) => {
      assert.equal(trust.status, 200);
      await page.goto(`${app}/launch.html?iss=${encodeURIComponent(base)}`);
      await signIn(page, "trust-ben");
      await page.waitForSelector("#nhs-number", { timeout: 20000 });
      await page.fill("#nhs-number", JANE);
      await page.click("#choose-patient");
      await expectRecord(page, name, firstAlertText(trust.body), "standalone-trust-ben.png");
    });

    await scenario("standalone launch as patient-jane shows her own record", async (page) => {
      const token = scr(["token", "patient", "--nhs", JANE, "--aud", base]);
      const r = await fetch(`${base}/Patient/${JANE}/$everything`, { headers: { Authorization: "Bearer " + token } });
      assert.equal(r.status, 200);
      const own = await r.json();
      await page.goto(`${app}/launch.html?iss=${encodeURIComponent(base)}`);
      await signIn(page, "patient-jane");
      await expectRecord(page, patientName(own), firstAlertText(own), "standalone-patient-jane.png");
    });

    const eve = await record(base, "M85002");
    await scenario("EHR launch as gp-eve (no relationship) shows the refusal, no record", async (page) => {
      assert.equal(eve.status, 403, "gp-eve's practice has no relationship with Jane");
      const expected = eve.body.issue.map((i) => i.diagnostics).filter(Boolean).join(" ");
      assert.ok(expected, "the server's refusal has a text");
      const launch = await registerLaunch(base, backend, "gp-eve");
      await page.goto(`${app}/launch.html?iss=${encodeURIComponent(base)}&launch=${encodeURIComponent(launch)}`);
      await signIn(page, "gp-eve");
      await page.waitForSelector("#refusal:not([hidden])", { timeout: 20000 });
      assert.equal((await page.textContent("#refusal")).trim(), expected);
      assert.ok(await page.locator("#alerts").isHidden(), "no alerts shown");
      assert.ok(await page.locator("#no-alerts").isHidden(), "nor a claim that there are none");
      assert.equal(await page.locator("#alert-list li, #allergy-list li, #result-list li").count(), 0);
      assert.notEqual((await page.textContent("#patient-name")).trim(), name);
      await page.screenshot({ path: join(artifacts, "ehr-launch-gp-eve-refused.png"), fullPage: true });
    });
  } finally {
    if (browser) await browser.close();
    demo.kill("SIGTERM");
    if (failures.length) console.log("demo log (tail):\n" + log().split("\n").slice(-40).join("\n"));
    rmSync(data, { recursive: true, force: true });
    // Here, not after the block: an early return (ONLY=render) must not hide a failure.
    if (failures.length) {
      console.log(`${failures.length} failed`);
      process.exitCode = 1;
    } else if (scenarios > 0) {
      console.log(`all ${scenarios} passed`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
