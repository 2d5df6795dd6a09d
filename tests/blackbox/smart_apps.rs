//! SMART App Launch against the real server and its development identity provider, over real
//! HTTP, redirect by redirect as a browser follows them (the browser itself: tests/browser).
//! Promises: PKCE (a wrong verifier is refused), redirect URIs (an unregistered one is never
//! redirected to), scope intersection (asked x app x profile), the launch context bound to the
//! user it was started for and to its patient (R-LAUNCH-1), refresh token rotation (a reused
//! refresh token ends the sign-in), and a configuration that tells the truth.

use serde_json::Value;

use crate::harness::*;

const APP: &str = "scr-viewer";
const JANE: &str = "9990000018";
const KHAN: &str = "9990000026";
const VERIFIER: &str = "a-verifier-of-forty-three-or-more-characters-0123456789";

fn redirect_uri(s: &Server) -> String {
    format!("http://127.0.0.1:{}/apps/viewer/index.html", s.port)
}

fn enc(v: &str) -> String {
    scr_auth::apps::encode(v)
}

/// GET an absolute URL on this server, as a browser would (no redirect followed).
fn visit(s: &Server, url: &str) -> Response {
    visit_as(s, url, None)
}

/// [`visit`], the request carrying `X-Request-Id: request_id` when given.
fn visit_as(s: &Server, url: &str, request_id: Option<&str>) -> Response {
    let prefix = format!("http://127.0.0.1:{}", s.port);
    let path = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} is not on the server under test"));
    let headers: Vec<(&str, &str)> = request_id
        .map(|id| ("X-Request-Id", id))
        .into_iter()
        .collect();
    request_raw(s.port, "GET", path, &headers, b"")
}

fn post_form(s: &Server, path: &str, form: &[(&str, &str)]) -> Response {
    post_form_as(s, path, form, None)
}

/// [`post_form`], the request carrying `X-Request-Id: request_id` when given.
fn post_form_as(
    s: &Server,
    path: &str,
    form: &[(&str, &str)],
    request_id: Option<&str>,
) -> Response {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend(request_id.map(|id| ("X-Request-Id", id)));
    request_raw(s.port, "POST", path, &headers, body.join("&").as_bytes())
}

fn location(r: &Response) -> String {
    assert_eq!(
        r.status,
        302,
        "expected a redirect: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.header("Location").expect("Location").to_owned()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hidden session field of a sign-in page.
fn session_of(page: &str) -> String {
    let at = page
        .find("name=\"session\" value=\"")
        .expect("session field")
        + 22;
    page[at..].split('"').next().unwrap_or_default().to_owned()
}

fn authorize_url(s: &Server, scope: &str, launch: Option<&str>, verifier: &str) -> String {
    let challenge = scr_auth::apps::pkce_challenge(verifier);
    let mut url = format!(
        "/fhir/auth/authorize?response_type=code&client_id={APP}&redirect_uri={}&scope={}&state=st-1&aud={}&code_challenge={challenge}&code_challenge_method=S256",
        enc(&redirect_uri(s)),
        enc(scope),
        enc(&s.base),
    );
    if let Some(l) = launch {
        url.push_str(&format!("&launch={}", enc(l)));
    }
    url
}

/// How a sign-in ended: back at the app with a code, or on a page of the sign-in.
enum Ended {
    Code(String),
    Error(String),
    Page(String),
}

/// Walks authorize → development sign-in as `user` → callback; stops at the app or a page.
fn sign_in(s: &Server, scope: &str, launch: Option<&str>, user: &str) -> Ended {
    sign_in_as(s, scope, launch, user, None)
}

/// [`sign_in`], the callback (where the sign-in is audited) carrying `X-Request-Id`.
fn sign_in_as(
    s: &Server,
    scope: &str,
    launch: Option<&str>,
    user: &str,
    request_id: Option<&str>,
) -> Ended {
    let r = request_raw(
        s.port,
        "GET",
        &authorize_url(s, scope, launch, VERIFIER),
        &[],
        b"",
    );
    let to_idp = location(&r);
    if to_idp.starts_with(&redirect_uri(s)) {
        return Ended::Error(query_value(&to_idp, "error").unwrap_or_default());
    }
    assert!(to_idp.contains("/dev-idp/authorize"), "{to_idp}");
    let signed = visit(s, &format!("{to_idp}&user={user}"));
    let back = location(&signed);
    assert!(back.contains("/fhir/auth/callback"), "{back}");
    arrive(s, visit_as(s, &back, request_id))
}

fn arrive(s: &Server, r: Response) -> Ended {
    if r.status == 200 {
        return Ended::Page(String::from_utf8_lossy(&r.body).into_owned());
    }
    let url = location(&r);
    assert!(url.starts_with(&redirect_uri(s)), "{url}");
    assert_eq!(query_value(&url, "state").as_deref(), Some("st-1"));
    match query_value(&url, "code") {
        Some(code) => Ended::Code(code),
        None => Ended::Error(query_value(&url, "error").unwrap_or_default()),
    }
}

fn code_of(e: Ended) -> String {
    match e {
        Ended::Code(c) => c,
        Ended::Error(e) => panic!("sign-in ended with error {e}"),
        Ended::Page(p) => panic!("sign-in stopped on a page: {p}"),
    }
}

fn redeem(s: &Server, code: &str, verifier: &str) -> (u16, Value) {
    let r = post_form(
        s,
        "/fhir/auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri(s)),
            ("client_id", APP),
            ("code_verifier", verifier),
        ],
    );
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or_default(),
    )
}

fn refresh(s: &Server, token: &str) -> (u16, Value) {
    let r = post_form(
        s,
        "/fhir/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", APP),
        ],
    );
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or_default(),
    )
}

/// A host system registers an EHR launch for `user` and `patient`.
fn launch(s: &Server, patient: &str, user: &str) -> String {
    let host = system(s, "M85001", "system/*.rs");
    let body = format!("{{\"patient\":\"{patient}\",\"user\":\"{user}\"}}");
    let r = s.request(
        "POST",
        "/auth/launch",
        &[
            ("Authorization", &format!("Bearer {host}")),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["launch"].as_str().unwrap_or_default().to_owned()
}

fn scopes(token_response: &Value) -> Vec<String> {
    token_response["scope"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn smart_configuration_advertises_the_authorization_code_flow_with_pkce() {
    for s in servers() {
        let c = s.get("/.well-known/smart-configuration", None).json();
        assert_eq!(
            c["authorization_endpoint"],
            format!("{}/auth/authorize", s.base)
        );
        assert_eq!(
            c["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        for g in ["authorization_code", "refresh_token", "client_credentials"] {
            assert!(
                c["grant_types_supported"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == g)),
                "{g}"
            );
        }
        for cap in [
            "launch-ehr",
            "launch-standalone",
            "context-ehr-patient",
            "client-public",
        ] {
            assert!(
                c["capabilities"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == cap)),
                "{cap}"
            );
        }
        let jwks = s.get("/auth/jwks", None);
        assert_eq!(jwks.status, 200);
        assert!(jwks.json()["keys"][0]["n"].is_string());
    }
}

#[test]
fn smart_standalone_launch_gives_a_working_token_for_the_chosen_patient() {
    for s in servers() {
        let page = match sign_in(
            s,
            "launch/patient openid fhirUser patient/*.rs online_access",
            None,
            "trust-ben",
        ) {
            Ended::Page(p) => p,
            _ => panic!("expected the patient picker"),
        };
        assert!(page.contains("Choose a patient"), "{page}");
        // A patient the user has no relationship with reads as refused, and the picker stays.
        let r = post_form(
            s,
            "/fhir/auth/patient",
            &[
                ("session", &session_of(&page)),
                ("nhs_number", "9990000050"),
            ],
        );
        assert_eq!(r.status, 200);
        let page = String::from_utf8_lossy(&r.body).into_owned();
        assert!(page.contains("id=\"refusal\""), "{page}");
        let r = post_form(
            s,
            "/fhir/auth/patient",
            &[("session", &session_of(&page)), ("nhs_number", JANE)],
        );
        let code = code_of(arrive(s, r));
        let (status, t) = redeem(s, &code, VERIFIER);
        assert_eq!(status, 200, "{t}");
        assert_eq!(t["patient"], JANE);
        assert_eq!(t["token_type"], "Bearer");
        assert!(
            t["id_token"].is_string() && t["refresh_token"].is_string(),
            "{t}"
        );
        let token = t["access_token"].as_str().unwrap_or_default();
        let r = s.get(&format!("/Patient/{JANE}/$everything"), Some(token));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        // R-LAUNCH-1: the token opens that patient only.
        let r = s.get(&format!("/Patient/{KHAN}"), Some(token));
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert!(String::from_utf8_lossy(&r.body).contains("R-LAUNCH-1"));
    }
}

#[test]
fn smart_pkce_a_wrong_verifier_is_refused_and_the_code_is_spent() {
    for s in servers() {
        let code = code_of(sign_in(s, "openid user/*.rs", None, "trust-ben"));
        let (status, t) = redeem(
            s,
            &code,
            "another-verifier-of-forty-three-or-more-chars-0000",
        );
        assert_eq!(status, 400);
        assert_eq!(t["error"], "invalid_grant");
        // The code was used by the failed attempt.
        let (status, t) = redeem(s, &code, VERIFIER);
        assert_eq!(status, 400);
        assert_eq!(t["error"], "invalid_grant");
    }
}

#[test]
fn smart_redirect_uri_mismatch_is_never_redirected_to() {
    for s in servers() {
        let url = authorize_url(s, "openid user/*.rs", None, VERIFIER).replace(
            &enc(&redirect_uri(s)),
            &enc("https://attacker.example/callback"),
        );
        let r = request_raw(s.port, "GET", &url, &[], b"");
        assert_eq!(r.status, 400);
        assert!(r.header("Location").is_none());
        assert!(String::from_utf8_lossy(&r.body).contains("redirect_uri"));
        // Without PKCE the error goes back to the (registered) app.
        let url = authorize_url(s, "openid user/*.rs", None, VERIFIER)
            .replace("&code_challenge_method=S256", "");
        let back = location(&request_raw(s.port, "GET", &url, &[], b""));
        assert!(back.starts_with(&redirect_uri(s)), "{back}");
        assert_eq!(
            query_value(&back, "error").as_deref(),
            Some("invalid_request")
        );
    }
}

#[test]
fn smart_scopes_are_the_intersection_of_asked_app_and_profile() {
    for s in servers() {
        // A social worker asks for everything: R-ROLE-3 leaves Patient and Flag; system/ is
        // never an app's; the launch scope needs a launch.
        let code = code_of(sign_in(
            s,
            "openid user/*.rs system/*.rs",
            None,
            "social-dan",
        ));
        let (_, t) = redeem(s, &code, VERIFIER);
        let granted = scopes(&t);
        assert!(
            granted.contains(&"user/Patient.rs".to_owned()),
            "{granted:?}"
        );
        assert!(granted.contains(&"user/Flag.rs".to_owned()), "{granted:?}");
        assert!(
            !granted
                .iter()
                .any(|g| g.contains("Observation") || g.starts_with("system/")),
            "{granted:?}"
        );
        // A clinician gets the clinical types; patient/ scopes only with a patient in context.
        let code = code_of(sign_in(
            s,
            "openid user/*.rs patient/*.rs",
            None,
            "trust-ben",
        ));
        let (_, t) = redeem(s, &code, VERIFIER);
        let granted = scopes(&t);
        assert!(
            granted.contains(&"user/Observation.rs".to_owned()),
            "{granted:?}"
        );
        assert!(
            !granted.iter().any(|g| g.starts_with("patient/")),
            "{granted:?}"
        );
    }
}

#[test]
fn smart_ehr_launch_context_is_bound_to_the_user_who_started_it() {
    for s in servers() {
        // Started for Dr Patel; Dr Okafor signs in with it.
        let id = launch(s, JANE, "gp-asha");
        match sign_in(s, "launch openid patient/*.rs", Some(&id), "trust-ben") {
            Ended::Error(e) => assert_eq!(e, "access_denied"),
            _ => panic!("a launch was used by another user"),
        }
        // Used once: the same launch does not work again, even for its user.
        match sign_in(s, "launch openid patient/*.rs", Some(&id), "gp-asha") {
            Ended::Error(e) => assert_eq!(e, "invalid_request"),
            _ => panic!("a launch was used twice"),
        }
    }
}

#[test]
fn smart_ehr_launch_with_role_confirmation_gives_the_patient_in_context() {
    for s in servers() {
        let id = launch(s, JANE, "gp-asha");
        let ended = sign_in(
            s,
            "launch openid fhirUser patient/*.rs",
            Some(&id),
            "gp-asha",
        );
        // Dr Patel holds two roles: the first sign-in asks which to act in (unless an earlier
        // test already confirmed it on this server).
        let ended = match ended {
            Ended::Page(page) => {
                assert!(page.contains("Confirm your role"), "{page}");
                let roles: Vec<&str> = page.matches("name=\"role\"").collect();
                assert_eq!(roles.len(), 2, "{page}");
                let role = page
                    .split("name=\"role\" value=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
                    .to_owned();
                let r = post_form(
                    s,
                    "/fhir/auth/role",
                    &[("session", &session_of(&page)), ("role", &role)],
                );
                arrive(s, r)
            }
            other => other,
        };
        let (status, t) = redeem(s, &code_of(ended), VERIFIER);
        assert_eq!(status, 200, "{t}");
        assert_eq!(t["patient"], JANE);
        assert!(scopes(&t).contains(&"launch".to_owned()), "{t}");
        let token = t["access_token"].as_str().unwrap_or_default();
        let b = s.get(&format!("/Patient/{JANE}/$everything"), Some(token));
        assert_eq!(b.status, 200, "{}", String::from_utf8_lossy(&b.body));
        // A role chosen once is remembered: the next launch goes straight back to the app.
        let id = launch(s, JANE, "gp-asha");
        assert!(matches!(
            sign_in(s, "launch openid patient/*.rs", Some(&id), "gp-asha"),
            Ended::Code(_)
        ));
    }
}

#[test]
fn smart_refresh_tokens_rotate_and_a_reused_one_ends_the_sign_in() {
    for s in servers() {
        let code = code_of(sign_in(
            s,
            "openid user/*.rs online_access",
            None,
            "trust-ben",
        ));
        let (_, t) = redeem(s, &code, VERIFIER);
        let first = t["refresh_token"].as_str().unwrap_or_default().to_owned();
        let (status, t2) = refresh(s, &first);
        assert_eq!(status, 200, "{t2}");
        let second = t2["refresh_token"].as_str().unwrap_or_default().to_owned();
        assert_ne!(first, second);
        let token = t2["access_token"].as_str().unwrap_or_default();
        assert_eq!(s.get(&format!("/Patient/{JANE}"), Some(token)).status, 200);
        // The first one again: refused, and the whole sign-in with it.
        let (status, t3) = refresh(s, &first);
        assert_eq!(status, 400);
        assert_eq!(t3["error"], "invalid_grant");
        let (status, _) = refresh(s, &second);
        assert_eq!(status, 400);
        // A refresh token is not an access token.
        assert_eq!(
            s.get(&format!("/Patient/{JANE}"), Some(&second)).status,
            401
        );
    }
}

#[test]
fn smart_launch_endpoint_accepts_host_systems_only() {
    for s in servers() {
        let clinician = clinician(s, "M85001");
        let r = s.request(
            "POST",
            "/auth/launch",
            &[
                ("Authorization", &format!("Bearer {clinician}")),
                ("Content-Type", "application/json"),
            ],
            format!("{{\"patient\":\"{JANE}\",\"user\":\"gp-asha\"}}").as_bytes(),
        );
        assert_eq!(r.status, 403);
        let host = system(s, "M85001", "system/*.rs");
        let r = s.request(
            "POST",
            "/auth/launch",
            &[
                ("Authorization", &format!("Bearer {host}")),
                ("Content-Type", "application/json"),
            ],
            b"{\"patient\":\"123\",\"user\":\"gp-asha\"}",
        );
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("patient"));
        let r = s.request("POST", "/auth/launch", &[], b"{}");
        assert_eq!(r.status, 401);
    }
}

/// The AuditEvents of the request with `X-Request-Id: request_id` among `agent`'s newest, as a
/// privacy officer finds them.
fn audited(s: &Server, agent: &str, request_id: &str) -> Vec<Value> {
    let po = staff_as(s, "po-0001", "M85001", "R0001", "user/AuditEvent.rs");
    let r = s.get(&format!("/AuditEvent?agent={agent}&_count=500"), Some(&po));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    of_type(&r.json(), "AuditEvent")
        .into_iter()
        .filter(|e| audit_detail(e, "request-id") == Some(request_id))
        .cloned()
        .collect()
}

#[test]
fn r_aud_1_an_apps_sign_in_and_its_patient_choices_are_audited_naming_the_app() {
    for s in servers() {
        let (login, refused, chosen) = (
            unique_id("login"),
            unique_id("refused"),
            unique_id("chosen"),
        );
        let scope = "launch/patient openid patient/*.rs";
        let page = match sign_in_as(s, scope, None, "trust-ben", Some(&login)) {
            Ended::Page(p) => p,
            _ => panic!("expected the patient picker"),
        };
        let r = post_form_as(
            s,
            "/fhir/auth/patient",
            &[
                ("session", &session_of(&page)),
                ("nhs_number", "9990000050"),
            ],
            Some(&refused),
        );
        let page = String::from_utf8_lossy(&r.body).into_owned();
        assert!(page.contains("id=\"refusal\""), "{page}");
        let r = post_form_as(
            s,
            "/fhir/auth/patient",
            &[("session", &session_of(&page)), ("nhs_number", JANE)],
            Some(&chosen),
        );
        code_of(arrive(s, r));

        let e = audited(s, "trust-ben", &login);
        assert_eq!(e.len(), 1, "{}: {e:?}", s.name);
        assert_eq!(e[0]["type"]["code"], "110114", "{}", e[0]);
        assert_eq!(e[0]["subtype"][0]["code"], "110122", "{}", e[0]);
        assert_eq!(e[0]["outcome"], "0", "{}", e[0]);
        assert_eq!(audit_detail(&e[0], "client-id"), Some(APP));
        assert_eq!(e[0]["agent"][1]["who"]["identifier"]["value"], "RXK");

        // The refused choice: the user was told "no relationship, or no record"; the trail
        // names the patient and the rule that refused.
        let e = audited(s, "trust-ben", &refused);
        assert_eq!(e.len(), 1, "{}: {e:?}", s.name);
        assert_eq!(e[0]["subtype"][0]["code"], "patient-choice", "{}", e[0]);
        assert_eq!(e[0]["outcome"], "4", "{}", e[0]);
        let entity = e[0]["entity"][0]["what"]["reference"].as_str();
        assert_eq!(entity, Some("Patient/9990000050"), "{}", e[0]);
        let rule = audit_detail(&e[0], "decided-by").unwrap_or_default();
        assert!(rule.starts_with("R-"), "{}", e[0]);
        assert_eq!(audit_detail(&e[0], "client-id"), Some(APP));

        let e = audited(s, "trust-ben", &chosen);
        assert_eq!(e.len(), 1, "{}: {e:?}", s.name);
        assert_eq!(e[0]["outcome"], "0", "{}", e[0]);
        assert_eq!(
            e[0]["entity"][0]["what"]["reference"],
            format!("Patient/{JANE}")
        );

        // A launch used by another user than it was started for: a refused sign-in.
        let id = launch(s, JANE, "gp-asha");
        let stolen = unique_id("stolen");
        match sign_in_as(
            s,
            "launch openid patient/*.rs",
            Some(&id),
            "trust-ben",
            Some(&stolen),
        ) {
            Ended::Error(e) => assert_eq!(e, "access_denied"),
            _ => panic!("a launch was used by another user"),
        }
        let e = audited(s, "trust-ben", &stolen);
        assert_eq!(e.len(), 1, "{}: {e:?}", s.name);
        assert_eq!(e[0]["outcome"], "4", "{}", e[0]);
        let why = e[0]["outcomeDesc"].as_str().unwrap_or_default();
        assert!(why.contains("R-LAUNCH-1"), "{why}");
    }
}

#[test]
fn r_aud_2_no_code_is_issued_for_a_sign_in_or_patient_choice_the_trail_could_not_record() {
    for s in own_servers("smart-audit-lock", |c| c) {
        let scope = "launch/patient openid patient/*.rs";
        let page = match sign_in(&s, scope, None, "trust-ben") {
            Ended::Page(p) => p,
            _ => panic!("expected the patient picker"),
        };
        let (release, holder) = crate::faults::hold_audit_lock(&s);
        let r = post_form(
            &s,
            "/fhir/auth/patient",
            &[("session", &session_of(&page)), ("nhs_number", JANE)],
        );
        // On PostgreSQL only the trail is locked: the picker says the service could not answer.
        // On SQLite the lock holds the whole store, sign-in state included: 503, and the
        // picker's session is kept for when the store answers again. No code either way.
        let picker = page.clone();
        let page = String::from_utf8_lossy(&r.body).into_owned();
        let page = match r.status {
            200 => {
                assert!(page.contains("could not answer"), "{page}");
                match sign_in(&s, scope, None, "gp-eve") {
                    Ended::Error(e) => assert_eq!(e, "temporarily_unavailable", "{}", s.name),
                    _ => panic!("{}: a sign-in went on without its audit", s.name),
                }
                page
            }
            503 if !crate::faults::is_postgres(&s) => {
                assert!(page.contains("unavailable"), "{page}");
                picker
            }
            other => panic!("{}: no code while the trail is locked: {other}", s.name),
        };
        release.send(()).ok();
        holder.join().ok();
        // The same picker, once the trail can be written: the app gets its code.
        let r = post_form(
            &s,
            "/fhir/auth/patient",
            &[("session", &session_of(&page)), ("nhs_number", JANE)],
        );
        let (status, t) = redeem(&s, &code_of(arrive(&s, r)), VERIFIER);
        assert_eq!(status, 200, "{t}");
        crate::faults::chain_verifies(&s);
    }
}
