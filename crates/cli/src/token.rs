//! `scr token`: development tokens, signed with the shipped development-only key.

use clap::{Args, ValueEnum};

use scr_auth::dev;
use scr_fhir::build::unix_now as now;

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Staff,
    Patient,
    System,
    /// A SMART Backend Services client assertion of the development client, for the token
    /// endpoint (`--aud` is then the token endpoint's URL).
    Assertion,
}

#[derive(Args)]
pub struct TokenArgs {
    /// Who the token is for.
    kind: Kind,
    /// The FHIR base URL the token is for (its audience).
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    aud: String,
    /// Staff: organisation ODS code; system: the client's organisation.
    #[arg(long, default_value = "M85001")]
    org: String,
    /// Staff: national RBAC job role code (R8000 clinical, R8008 admin, R8014 social worker...).
    #[arg(long, default_value = "R8000")]
    role: String,
    /// Staff: user id (`sub`); system: client id.
    #[arg(long)]
    sub: Option<String>,
    /// Patient: NHS number.
    #[arg(long, default_value = "9990000018")]
    nhs: String,
    /// Patient: NHS login identity proofing level.
    #[arg(long, default_value = "P9")]
    level: String,
    /// SMART scopes; defaults by kind (user/*.rs user/Flag.cu, patient/*.rs, system/*.rs).
    #[arg(long)]
    scope: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    lifetime: i64,
}

pub fn mint(args: &TokenArgs) -> Result<String, String> {
    if let Kind::Assertion = args.kind {
        let client = args
            .sub
            .clone()
            .unwrap_or_else(|| dev::DEV_CLIENT_ID.into());
        let lifetime = args.lifetime.min(300);
        return dev::client_assertion(
            &client,
            &args.aud,
            now(),
            lifetime,
            dev::dev_client_private_key_pem(),
            "ES384",
            dev::DEV_CLIENT_KID,
        )
        .map_err(|e| e.to_string());
    }
    let claims = match args.kind {
        Kind::Staff => dev::staff_claims(
            &dev::StaffToken {
                audience: args.aud.clone(),
                subject: args.sub.clone().unwrap_or_else(|| "555021935107".into()),
                org: args.org.clone(),
                role_code: args.role.clone(),
                scope: args
                    .scope
                    .clone()
                    .unwrap_or_else(|| "user/*.rs user/Flag.cu".into()),
                name: Some("Development User".into()),
                lifetime_seconds: args.lifetime,
            },
            now(),
        ),
        Kind::Patient => dev::patient_claims(
            &dev::PatientToken {
                audience: args.aud.clone(),
                nhs_number: args.nhs.clone(),
                proofing_level: args.level.clone(),
                scope: args.scope.clone().unwrap_or_else(|| "patient/*.rs".into()),
                lifetime_seconds: args.lifetime,
            },
            now(),
        ),
        Kind::Assertion => unreachable!("handled above"),
        Kind::System => dev::system_claims(
            &dev::SystemToken {
                audience: args.aud.clone(),
                client_id: args
                    .sub
                    .clone()
                    .unwrap_or_else(|| "dev-backend-client".into()),
                org: args.org.clone(),
                scope: args.scope.clone().unwrap_or_else(|| "system/*.rs".into()),
                lifetime_seconds: args.lifetime,
            },
            now(),
        ),
    };
    dev::sign_rs256(&claims, dev::dev_private_key_pem(), dev::DEV_KID).map_err(|e| e.to_string())
}

pub fn run(args: TokenArgs) -> Result<(), String> {
    println!("{}", mint(&args)?);
    Ok(())
}

/// A staff token for the demo banner.
pub fn demo_token(aud: &str, org: &str, role: &str, lifetime: i64) -> Result<String, String> {
    mint(&TokenArgs {
        kind: Kind::Staff,
        aud: aud.into(),
        org: org.into(),
        role: role.into(),
        sub: None,
        nhs: String::new(),
        level: String::new(),
        scope: None,
        lifetime,
    })
}
