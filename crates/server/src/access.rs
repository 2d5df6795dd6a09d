//! Between the sources and the response: authenticates the caller and asks the policy about the
//! request and about every record before it leaves.

use actix_web::http::header;
use actix_web::HttpRequest;
use serde_json::Value;

use scr_auth::{Caller, CallerKind, Interaction, ScopeContext};
use scr_policy::Subject;
use scr_source::Record;

use crate::error::ApiError;
use crate::state::AppState;

/// The verified caller of a request, and the patients the request has touched so far (with the
/// rule that decided each), for the audit (R-AUD-1: one AuditEvent per patient touched).
pub struct Access {
    pub caller: Caller,
    pub subject: Subject,
    pub touched: std::sync::Mutex<Vec<Touched>>,
    /// The purpose of use of a self-claimed relationship in force (ETREAT or BTG), for the audit.
    pub break_glass_purpose: std::sync::Mutex<Option<String>>,
}

/// One patient a request asked for, and the policy's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub nhs_number: String,
    pub rule: &'static str,
    pub allowed: bool,
}

impl Access {
    pub fn touch(&self, nhs_number: &str, decision: &scr_policy::Decision) {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        if !touched.iter().any(|t| t.nhs_number == nhs_number) {
            touched.push(Touched {
                nhs_number: nhs_number.to_owned(),
                rule: decision.rule,
                allowed: decision.allowed,
            });
        }
    }

    pub fn set_break_glass_purpose(&self, purpose: &str) {
        *self
            .break_glass_purpose
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(purpose.to_owned());
    }

    pub fn break_glass_purpose(&self) -> Option<String> {
        self.break_glass_purpose
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn touched(&self) -> Vec<Touched> {
        self.touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Verifies the bearer token; 401 with `WWW-Authenticate` on any failure.
pub fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Access, ApiError> {
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let token = scr_auth::bearer_token(header_value)?;
    let caller = state.verifier.verify(token, scr_fhir::build::unix_now())?;
    let subject = match caller.kind {
        CallerKind::Staff => Subject::Staff {
            user: caller.subject.clone(),
            org: caller.organisation.clone().unwrap_or_default(),
            role_code: caller.role_code.clone().unwrap_or_default(),
        },
        CallerKind::Patient => Subject::Patient {
            nhs_number: caller.nhs_number.clone().unwrap_or_default(),
            proofing_level: caller.identity_proofing_level.clone(),
        },
        CallerKind::System => Subject::System {
            client_id: caller.subject.clone(),
            org: caller.organisation.clone(),
        },
    };
    Ok(Access {
        caller,
        subject,
        touched: Default::default(),
        break_glass_purpose: Default::default(),
    })
}

impl Access {
    /// Scopes count only in the caller's own context: `patient/` for patients, `user/` for
    /// staff, `system/` for backend services.
    fn context(&self) -> ScopeContext {
        match self.caller.kind {
            CallerKind::Staff => ScopeContext::User,
            CallerKind::Patient => ScopeContext::Patient,
            CallerKind::System => ScopeContext::System,
        }
    }

    pub fn scopes_allow(&self, resource_type: &str, interaction: Interaction) -> bool {
        let ctx = self.context();
        self.caller
            .scopes
            .iter()
            .any(|s| s.context == ctx && s.covers(resource_type, interaction))
    }

    /// May the caller read or search this type at all? (R-ROLE-1, R-ROLE-3)
    pub fn may(&self, state: &AppState, resource_type: &str, interaction: Interaction) -> bool {
        scr_policy::authorise_read(
            &self.subject,
            resource_type,
            self.scopes_allow(resource_type, interaction),
            &state.policy,
        )
        .allowed
    }

    /// Refuses the request (403) unless the caller may read or search this type.
    pub fn require(
        &self,
        state: &AppState,
        resource_type: &str,
        interaction: Interaction,
    ) -> Result<(), ApiError> {
        let decision = scr_policy::authorise_read(
            &self.subject,
            resource_type,
            self.scopes_allow(resource_type, interaction),
            &state.policy,
        );
        if decision.allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden(&decision))
        }
    }

    /// The token's SMART v2 search constraints (`patient/Observation.rs?category=laboratory`)
    /// for one record the policy already lets leave.
    pub fn within_scope_constraints(&self, record: &Record, interaction: Interaction) -> bool {
        self.within_constraints(
            record.resource_type,
            &record.resource,
            &record.nhs_number,
            interaction,
        )
    }

    fn within_constraints(
        &self,
        resource_type: &str,
        resource: &Value,
        nhs: &str,
        interaction: Interaction,
    ) -> bool {
        let ctx = self.context();
        let allowing: Vec<_> = self
            .caller
            .scopes
            .iter()
            .filter(|s| s.context == ctx && s.covers(resource_type, interaction))
            .collect();
        if allowing.iter().any(|s| s.constraints.is_empty()) {
            return true;
        }
        allowing.iter().any(|s| {
            let mut pairs = s.constraints.clone();
            if resource_type != "Patient" {
                pairs.push(("patient".into(), nhs.to_owned()));
            }
            // A constraint the facade cannot evaluate allows nothing.
            scr_fhir::search::parse(resource_type, &pairs, false)
                .is_ok_and(|req| req.matches(resource))
        })
    }
}
