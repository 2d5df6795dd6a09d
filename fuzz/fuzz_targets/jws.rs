//! Bearer tokens, two ways. Odd first byte: the rest is an `Authorization` header value, read
//! and verified as it comes (the signature will almost never hold, so this exercises the JWS
//! parsing up to the signature). Even first byte: the rest is a claims object, signed with the
//! development key so that verification reaches the claims checks, `Caller` and the scopes: its
//! keys are laid over a valid staff, patient or system token's claims (chosen by the first
//! byte), so that most inputs get past `iss`, `aud` and `exp`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scr_auth::{dev, jwt, Verifier};
use serde_json::Value;

const AUDIENCE: &str = "https://scr.example.nhs.uk/fhir";
/// 2026-09-21T07:06:40Z.
const NOW: i64 = 1_790_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let issuer = dev::dev_issuer().expect("the development issuer's key set parses");
        Verifier::new(vec![issuer], AUDIENCE.to_owned(), 60)
    })
}

/// Valid claims of one of the three kinds of token, with a fixed `jti`.
fn base_claims(kind: u8) -> Value {
    let mut claims = match kind % 3 {
        0 => dev::staff_claims(
            &dev::StaffToken {
                audience: AUDIENCE.to_owned(),
                subject: "555021935107".to_owned(),
                org: "RXK".to_owned(),
                role_code: "R8000".to_owned(),
                scope: "user/*.rs".to_owned(),
                name: Some("Dr Test".to_owned()),
                lifetime_seconds: 3600,
            },
            NOW,
        ),
        1 => dev::patient_claims(
            &dev::PatientToken {
                audience: AUDIENCE.to_owned(),
                nhs_number: "9990000018".to_owned(),
                proofing_level: "P9".to_owned(),
                scope: "patient/*.rs".to_owned(),
                lifetime_seconds: 3600,
            },
            NOW,
        ),
        _ => dev::system_claims(
            &dev::SystemToken {
                audience: AUDIENCE.to_owned(),
                client_id: "dev-backend-client".to_owned(),
                org: "RXK".to_owned(),
                scope: "system/Observation.rs?category=laboratory".to_owned(),
                lifetime_seconds: 300,
            },
            NOW,
        ),
    };
    claims["jti"] = "fuzz-jti".into();
    claims
}

fn check(token: &str) {
    let v = verifier();
    let _ = jwt::declared_algorithm(token);
    let _ = jwt::declared_issuer(token);
    let _ = v.verify_claims(token, NOW);
    let _ = v.verify(token, NOW);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        let header = String::from_utf8_lossy(rest);
        let _ = scr_auth::bearer_token(None);
        if let Ok(token) = scr_auth::bearer_token(Some(&header)) {
            check(token);
        }
        check(&header);
    } else if let Ok(overlay) = serde_json::from_slice::<Value>(rest) {
        let mut claims = base_claims(mode >> 1);
        match (claims.as_object_mut(), overlay) {
            (Some(base), Value::Object(keys)) => base.extend(keys),
            (_, other) => claims = other,
        }
        let token = dev::sign_rs256(&claims, dev::dev_private_key_pem(), dev::DEV_KID)
            .expect("the development key signs");
        check(&token);
    }
});
