//! The one decision entry point, [`decide`]: who is asking ([`Subject`] and their [`Grants`]),
//! what they ask ([`Ask`]), what is known of the patient ([`PatientFacts`]) and of each record
//! ([`RecordFacts`]) in; a [`Decision`] out: permit or refuse with the [`Rule`] that decided and
//! why, a [`Verdict`] per record (show, or withhold under a rule), the notices the response must
//! carry, and a trace of every rule evaluated with the facts it used (for `$explain`).
//!
//! Unknown facts fail closed: an objection status that could not be checked restricts as an
//! objection does (R-OBJ-2) and says why; a relationship is never assumed from a source that
//! did not answer, and the refusal names it; a record whose sensitivity is unknown is treated
//! as sensitive.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::facts::{CareLink, Claim, PatientFacts, RecordFacts, Sensitivity, Sourced, Statement};
use crate::{federation_of, profile_of, Federation, PolicyConfig, Profile, Rule, Subject};

/// The RESTful action asked for, as the SMART scopes and the role table name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
}

/// What the token's SMART scopes grant, in the caller's own context (`patient/`, `user/`,
/// `system/`). Implemented over the verified token by whoever holds it.
pub trait Grants {
    fn allows(&self, resource_type: &str, action: Action) -> bool;
}

/// Grants everything: for explaining what a profile allows, scopes aside, and for tests.
pub struct AllGrants;

impl Grants for AllGrants {
    fn allows(&self, _: &str, _: Action) -> bool {
        true
    }
}

/// The alert an update would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExistingAlert<'a> {
    /// `staff`, `patient` or `system`.
    pub author_kind: &'a str,
    /// The organisation that first wrote it.
    pub author_org: &'a str,
    pub category: &'a str,
}

/// What the caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask<'a> {
    /// Read or search a resource type at all, before any patient is considered.
    Type {
        resource_type: &'a str,
        action: Action,
    },
    /// Open the patient's record to read or search it: the patient decision, then each record.
    Open { action: Action },
    /// Create or update an alert (R-WRITE-1/2).
    WriteAlert {
        category: &'a str,
        existing: Option<ExistingAlert<'a>>,
    },
    /// Register or withdraw an objection as a Consent (R-OBJ-1).
    WriteObjection,
    /// Self-claim a relationship (R-LR-4).
    SelfClaim,
    /// Search the audit trail, about `patient` if given (R-AUD-4, R-AUD-5).
    AuditTrail,
    /// Read or search Consent statements (R-OBJ-6, privacy officers).
    Consents { action: Action },
    /// Explain the policy's decision for another caller on this patient (`$explain`): privacy
    /// officers only (R-AUD-4), with a token that lets them read the audit trail.
    Explain,
}

/// One question to the policy.
pub struct Request<'a> {
    pub subject: &'a Subject,
    pub grants: &'a dyn Grants,
    pub ask: Ask<'a>,
    /// The NHS number of the patient asked about, if any.
    pub patient: Option<&'a str>,
    /// What is known of that patient, where the question needs it.
    pub facts: Option<&'a PatientFacts>,
    /// The records (and demographics fragments) that might leave, for [`Ask::Open`].
    pub records: &'a [RecordFacts<'a>],
}

/// Whether one record may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Show,
    Withhold(Rule),
}

/// What a response must tell the caller about what it does not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// R-OBJ-3: an objection limits the record to the caller's own organisation's data.
    ObjectionRestricts,
    /// R-OBJ-6: told to the patient themself.
    ObjectionToldToPatient,
    /// The objection status could not be checked: these sources did not answer.
    ObjectionUnknown { sources: Vec<String> },
    /// R-SENS-3 / R-SENS-4: a generic notice that some items are withheld.
    SomeWithheld,
}

impl Notice {
    /// The text the Bundle's OperationOutcome carries.
    pub fn text(&self) -> String {
        match self {
            Notice::ObjectionRestricts => "The patient has objected to sharing: only records held by your own organisation are shown, so this record is not complete (R-OBJ-3)".into(),
            Notice::ObjectionToldToPatient => "An objection to sharing your record through the shared care record is recorded: professionals see only what their own organisation holds (R-OBJ-6)".into(),
            Notice::ObjectionUnknown { sources } => format!(
                "The patient's objection status could not be checked because {} did not answer: only records held by your own organisation are shown, so this record is not complete (R-OBJ-2)",
                sources.join(", ")
            ),
            Notice::SomeWithheld => "Some items are withheld from this record".into(),
        }
    }
}

/// How one rule came out in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    /// It allowed what was asked.
    Permit,
    /// It refused what was asked.
    Refuse,
    /// It held, and narrowed what may be shown.
    Restrict,
    /// It did not hold, or did not apply.
    NotApplicable,
    /// A fact it needs is unknown; it failed closed.
    Unknown,
}

impl StepResult {
    pub fn code(self) -> &'static str {
        match self {
            StepResult::Permit => "permit",
            StepResult::Refuse => "refuse",
            StepResult::Restrict => "restrict",
            StepResult::NotApplicable => "not-applicable",
            StepResult::Unknown => "unknown",
        }
    }
}

/// One rule evaluated, its result and the facts it used (never clinical content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub rule: Rule,
    pub result: StepResult,
    pub detail: String,
    pub facts: Vec<String>,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub permitted: bool,
    /// The rule that permitted or refused.
    pub rule: Rule,
    /// Why, for a refusal's OperationOutcome.
    pub reason: String,
    /// One per record of the request, in order.
    pub verdicts: Vec<Verdict>,
    pub notices: Vec<Notice>,
    /// Every rule evaluated, in order.
    pub trace: Vec<Step>,
    /// The self-claimed relationship in force, when R-LR-4 permitted the access.
    pub claim: Option<Claim>,
}

impl Decision {
    /// How many records were withheld, by the rule that withheld them.
    pub fn withheld(&self) -> BTreeMap<Rule, usize> {
        let mut counts = BTreeMap::new();
        for v in &self.verdicts {
            if let Verdict::Withhold(rule) = v {
                *counts.entry(*rule).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Per resource type: records shown, and records withheld by rule.
    pub fn counts_by_type(
        &self,
        records: &[RecordFacts<'_>],
    ) -> BTreeMap<String, (usize, BTreeMap<Rule, usize>)> {
        let mut out: BTreeMap<String, (usize, BTreeMap<Rule, usize>)> = BTreeMap::new();
        for (r, v) in records.iter().zip(&self.verdicts) {
            let e = out.entry(r.resource_type.to_owned()).or_default();
            match v {
                Verdict::Show => e.0 += 1,
                Verdict::Withhold(rule) => *e.1.entry(*rule).or_insert(0) += 1,
            }
        }
        out
    }
}

/// Builds a decision while the rules run, recording each step.
struct Trace {
    steps: Vec<Step>,
}

impl Trace {
    fn step(
        &mut self,
        rule: Rule,
        result: StepResult,
        detail: impl Into<String>,
        facts: Vec<String>,
    ) {
        self.steps.push(Step {
            rule,
            result,
            detail: detail.into(),
            facts,
        });
    }

    fn refuse(mut self, rule: Rule, reason: impl Into<String>, facts: Vec<String>) -> Decision {
        let reason = reason.into();
        self.step(rule, StepResult::Refuse, reason.clone(), facts);
        Decision {
            permitted: false,
            rule,
            reason,
            verdicts: Vec::new(),
            notices: Vec::new(),
            trace: self.steps,
            claim: None,
        }
    }

    fn permit(mut self, rule: Rule, detail: impl Into<String>, facts: Vec<String>) -> Decision {
        self.step(rule, StepResult::Permit, detail, facts);
        Decision {
            permitted: true,
            rule,
            reason: String::new(),
            verdicts: Vec::new(),
            notices: Vec::new(),
            trace: self.steps,
            claim: None,
        }
    }
}

/// The organisation whose own records an objection still lets the subject see (R-OBJ-2), and
/// whose sensitive and confidential records it holds (R-SENS-1..3).
///
/// A user of a neighbouring record has none here (R-FED-4): their organisation is asserted by
/// the neighbour, and this record holds none of that organisation's records (docs/federation.md);
/// were a neighbour to name an organisation whose records this record holds, counting it would
/// let the neighbour alone decide that sensitive, confidential or objected-to records leave.
pub fn own_org(subject: &Subject) -> Option<&str> {
    match subject {
        Subject::Staff {
            federation: Some(_),
            ..
        } => None,
        Subject::Staff { org, .. } => Some(org),
        Subject::System { org, .. } => org.as_deref(),
        Subject::Patient { .. } => None,
    }
}

/// R-ROLE-1 for patients: the one record a patient's token ever reaches (their own), which is
/// also what their searches of Patient, Consent and AuditEvent are about when they name none;
/// `None` for every other caller. What a patient is shown of the audit trail (R-AUD-5) is
/// narrowed by it too.
pub fn patient_scope(subject: &Subject) -> Option<&str> {
    match subject {
        Subject::Patient { nhs_number, .. } => Some(nhs_number),
        _ => None,
    }
}

/// The objection status the facts give (R-OBJ-1): the latest statement wins, by effective date
/// then recording time; without a standing objection, a source that may hold one and did not
/// answer makes the status unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectionStatus<'a> {
    /// No statement, or the latest withdraws an objection, and every source answered.
    Clear(Option<&'a Sourced<Statement>>),
    Stands(&'a Sourced<Statement>),
    /// The sources named did not answer.
    Unknown {
        sources: Vec<String>,
        latest: Option<&'a Sourced<Statement>>,
    },
}

impl ObjectionStatus<'_> {
    /// Whether R-OBJ-2 restricts what others see.
    pub fn restricts(&self) -> bool {
        !matches!(self, ObjectionStatus::Clear(_))
    }
}

pub fn objection_status(facts: &PatientFacts) -> ObjectionStatus<'_> {
    let (objections, withdrawals): (Vec<&Sourced<Statement>>, Vec<&Sourced<Statement>>) =
        facts.statements.iter().partition(|s| s.fact.objects);
    // The objection stands unless a withdrawal is later than every objection: a withdrawal
    // that cannot be ordered against an objection does not lift it (failing closed).
    let lifting = withdrawals
        .into_iter()
        .filter(|w| objections.iter().all(|o| later(&w.fact, &o.fact)))
        .reduce(latest_of);
    let latest = match (objections.into_iter().reduce(latest_of), lifting) {
        (Some(objection), None) => return ObjectionStatus::Stands(objection),
        (_, withdrawal) => withdrawal,
    };
    let sources: Vec<String> = facts
        .objections_unknown_from()
        .into_iter()
        .map(str::to_owned)
        .collect();
    if sources.is_empty() {
        ObjectionStatus::Clear(latest)
    } else {
        ObjectionStatus::Unknown { sources, latest }
    }
}

/// R-OBJ-1 "the latest statement wins", by effective date then recording time
/// (`gp-system.md`): whether `a` is known to be later than `b`. Effective values are compared
/// at the precision both have: a GP's coded entry carries a date, a Consent a date-time, and a
/// date cannot be ordered against a date-time of the same day, so then (as for equal effective
/// values) the recording times decide. Equal on both, neither is later.
fn later(a: &Statement, b: &Statement) -> bool {
    let day_time = |t: &str| -> (String, Option<String>) {
        match t.split_once('T') {
            Some((day, time)) => (day.to_owned(), Some(time.to_owned())),
            None => (t.to_owned(), None),
        }
    };
    let ((day_a, time_a), (day_b, time_b)) = (day_time(&a.effective), day_time(&b.effective));
    let effective = day_a.cmp(&day_b).then_with(|| match (time_a, time_b) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => Ordering::Equal,
    });
    effective
        .then_with(|| a.recorded_at.cmp(&b.recorded_at))
        .then_with(|| match (a.sequence, b.sequence) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => Ordering::Equal,
        })
        == Ordering::Greater
}

/// The later of two statements; the first when neither is known to be later.
fn latest_of<'a>(a: &'a Sourced<Statement>, b: &'a Sourced<Statement>) -> &'a Sourced<Statement> {
    if later(&b.fact, &a.fact) {
        b
    } else {
        a
    }
}

fn described<T: std::fmt::Display>(s: &Sourced<T>) -> String {
    format!("{} (source {})", s.fact, s.source)
}

/// The relationship that lets a staff member open the record, if any (R-LR-1..4).
fn relationship<'f>(
    subject: &Subject,
    facts: &'f PatientFacts,
    config: &PolicyConfig,
) -> Option<(Rule, String, Option<&'f Claim>)> {
    let Subject::Staff { user, org, .. } = subject else {
        return None;
    };
    if let Some((rule, fact)) = link_relationship(subject, facts, config) {
        return Some((rule, fact, None));
    }
    if profile_of(subject, config) == Some(Profile::Clinical) {
        if let Some(c) = facts
            .claims
            .iter()
            .find(|c| &c.fact.user == user && &c.fact.org == org)
        {
            return Some((Rule::Lr4, described(c), Some(&c.fact)));
        }
    }
    None
}

/// The registration, visit or allocation that is a relationship of a staff member, if any
/// (R-LR-1..3).
fn link_relationship(
    subject: &Subject,
    facts: &PatientFacts,
    config: &PolicyConfig,
) -> Option<(Rule, String)> {
    let Subject::Staff { user, org, .. } = subject else {
        return None;
    };
    for link in &facts.links {
        let rule = match &link.fact {
            CareLink::Registration {
                org: o,
                current: true,
            } if o == org => Rule::Lr1,
            CareLink::Visit { org: o, ended_day }
                if o == org
                    && ended_day.is_none_or(|d| facts.today - d <= config.visit_window_days) =>
            {
                Rule::Lr2
            }
            // The allocation is the council's social care: it is a relationship for the worker
            // (or team member) acting at that council in a social care role, not for the same
            // person under another role, there or elsewhere.
            CareLink::Allocation {
                org: o,
                worker,
                team_members,
                open: true,
            } if o == org
                && (worker.as_deref() == Some(user) || team_members.contains(user))
                && profile_of(subject, config) == Some(Profile::SocialCare) =>
            {
                Rule::Lr3
            }
            _ => continue,
        };
        return Some((rule, described(link)));
    }
    None
}

/// Alert categories, as the write rules name them (the same codes as `scr_fhir::alerts`).
pub const PATIENT_ALERT_CATEGORIES: [&str; 2] = ["communication-support", "end-of-life-wishes"];
pub const SOCIAL_CARE_ALERT_CATEGORIES: [&str; 4] = [
    "safeguarding",
    "communication-support",
    "end-of-life-wishes",
    "other",
];

/// The one entry point: decides `request` under `config`.
pub fn decide(request: &Request<'_>, config: &PolicyConfig) -> Decision {
    let mut trace = Trace { steps: Vec::new() };
    let subject = request.subject;
    let Some(profile) = profile_of(subject, config) else {
        return trace.refuse(
            Rule::Role1,
            "the caller's role is not mapped to an access profile",
            vec![role_fact(subject)],
        );
    };
    trace.step(
        Rule::Role1,
        StepResult::NotApplicable,
        format!("the caller acts under the {} profile", profile.as_str()),
        vec![role_fact(subject)],
    );
    if let Subject::Patient { proofing_level, .. } = subject {
        if proofing_level.as_deref() != Some("P9") {
            return trace.refuse(
                Rule::Role1,
                "only fully verified (P9) NHS login users may see their record",
                vec![format!(
                    "identity proofing level {}",
                    proofing_level.as_deref().unwrap_or("none")
                )],
            );
        }
    }
    if let Some(fed) = federation_of(subject) {
        trace = match federated_bounds(request, fed, trace) {
            Ok(trace) => trace,
            Err(refused) => return *refused,
        };
    }
    if let Subject::Staff {
        patient_context: Some(context),
        ..
    } = subject
    {
        trace = match launch_bounds(request, context, trace) {
            Ok(trace) => trace,
            Err(refused) => return *refused,
        };
    }
    match request.ask {
        Ask::Type {
            resource_type,
            action,
        } => match type_allowed(profile, request.grants, resource_type, action) {
            Ok(()) => trace.permit(
                Rule::Role1,
                format!(
                    "the {} profile and the token's scopes allow {resource_type}",
                    profile.as_str()
                ),
                vec![],
            ),
            Err((rule, reason)) => trace.refuse(rule, reason, vec![]),
        },
        Ask::Open { action } => open(request, config, profile, action, trace),
        Ask::WriteAlert { category, existing } => {
            write_alert(request, config, profile, category, existing, trace)
        }
        Ask::WriteObjection => write_objection(request, config, profile, trace),
        Ask::SelfClaim => {
            if profile == Profile::Clinical {
                trace.permit(
                    Rule::Lr4,
                    "clinical profiles may self-claim a relationship",
                    vec![],
                )
            } else {
                trace.refuse(
                    Rule::Lr4,
                    "only clinical profiles may self-claim a relationship",
                    vec![],
                )
            }
        }
        Ask::Explain => {
            if profile != Profile::PrivacyOfficer {
                trace.refuse(
                    Rule::Role1,
                    "only privacy officers and Caldicott guardians may ask why a caller sees what they see",
                    vec![],
                )
            } else if !request.grants.allows("AuditEvent", Action::Read) {
                trace.refuse(
                    Rule::Role1,
                    "the token's scopes do not grant reading AuditEvent",
                    vec![],
                )
            } else {
                trace.permit(
                    Rule::Aud4,
                    "privacy officers review who may see what",
                    vec![],
                )
            }
        }
        Ask::AuditTrail => own_or_officer(
            request,
            profile,
            ("AuditEvent", Action::Search),
            (Rule::Aud5, Rule::Aud4),
            "a patient may see only the accesses to their own record",
            trace,
        ),
        Ask::Consents { action } => own_or_officer(
            request,
            profile,
            ("Consent", action),
            (Rule::Obj6, Rule::Role1),
            "a patient may see only their own consent statements",
            trace,
        ),
    }
}

/// R-FED-2: a token a neighbouring record exchanged reads the one patient it names (their
/// record, and the types its profile and scopes allow), and does nothing else: no write, no
/// self-claim (break glass travels as its purpose of use, R-FED-3), no audit trail, no
/// explanation.
fn federated_bounds(
    request: &Request<'_>,
    fed: &Federation,
    mut trace: Trace,
) -> Result<Trace, Box<Decision>> {
    let peer = format!("asks through the neighbouring record {}", fed.peer);
    match request.ask {
        Ask::Type { .. } | Ask::Open { .. } => {}
        Ask::SelfClaim => {
            return Err(Box::new(trace.refuse(
                Rule::Fed3,
                "a user of a neighbouring record cannot self-claim a relationship here: their record sends break glass as its purpose of use (ETREAT or BTG) with the reason",
                vec![peer],
            )))
        }
        _ => {
            return Err(Box::new(trace.refuse(
                Rule::Fed2,
                "a token exchanged by a neighbouring record only reads the record of the patient it names",
                vec![peer],
            )))
        }
    }
    if let Some(patient) = request.patient {
        if patient != fed.patient {
            return Err(Box::new(trace.refuse(
                Rule::Fed2,
                "a token exchanged by a neighbouring record opens only the patient it names: exchange another token for this patient",
                vec![peer],
            )));
        }
        trace.step(
            Rule::Fed2,
            StepResult::Permit,
            "the exchanged token names this patient",
            vec![peer],
        );
    }
    Ok(trace)
}

/// R-LAUNCH-1: an app launched with a patient in context (SMART App Launch) reads that patient,
/// writes alerts for them and may break glass for them, and does nothing else: no other
/// patient, no objection, no audit trail, no explanation.
fn launch_bounds(
    request: &Request<'_>,
    context: &str,
    mut trace: Trace,
) -> Result<Trace, Box<Decision>> {
    let fact = "the app was launched with one patient in context".to_owned();
    match request.ask {
        Ask::Type { .. } | Ask::Open { .. } | Ask::WriteAlert { .. } | Ask::SelfClaim => {}
        _ => {
            return Err(Box::new(trace.refuse(
                Rule::Launch1,
                "an app launched for one patient reads that patient's record and writes their alerts only",
                vec![fact],
            )))
        }
    }
    if let Some(patient) = request.patient {
        if patient != context {
            return Err(Box::new(trace.refuse(
                Rule::Launch1,
                "an app launched for one patient opens only that patient: launch it again for another",
                vec![fact],
            )));
        }
        trace.step(
            Rule::Launch1,
            StepResult::Permit,
            "the patient is the one the app was launched for",
            vec![fact],
        );
    }
    Ok(trace)
}

/// R-FED-3 for a user of a neighbouring record: this record's own relationships (R-LR-1..3) of
/// their organisation first; then the relationship the neighbour asserts, if the neighbour is
/// trusted and it is a relationship rule of the user's own organisation; then break glass, sent
/// as the purpose of use, for clinical profiles (as R-LR-4 allows locally), audited as break
/// glass; otherwise no relationship (R-LR-5). Self-claims made here are not theirs: their
/// break glass is in the token.
fn federated_relationship(
    request: &Request<'_>,
    config: &PolicyConfig,
    facts: &PatientFacts,
    fed: &Federation,
    needed_for: &str,
    mut trace: Trace,
) -> Result<(Trace, Rule, Option<Claim>), Box<Decision>> {
    let subject = request.subject;
    let Subject::Staff { user, org, .. } = subject else {
        return Err(Box::new(trace.refuse(
            Rule::Fed3,
            "a user of a neighbouring record acts as staff",
            vec![],
        )));
    };
    if let Some((rule, fact)) = link_relationship(subject, facts, config) {
        trace.step(
            rule,
            StepResult::Permit,
            "a legitimate relationship holds here",
            vec![fact],
        );
        return Ok((trace, rule, None));
    }
    let trusted = config.trusted_peers.iter().any(|p| p == &fed.peer);
    if let Some((rule_id, rel_org)) = &fed.relationship {
        let fact = format!(
            "{} asserts a relationship under its {rule_id} at {rel_org}",
            fed.peer
        );
        let counts = Rule::from_id(rule_id)
            .is_some_and(|r| matches!(r, Rule::Lr1 | Rule::Lr2 | Rule::Lr3))
            && rel_org == org;
        if !trusted {
            trace.step(
                Rule::Fed3,
                StepResult::NotApplicable,
                format!(
                    "{} is not trusted for relationships here: its asserted relationship does not count",
                    fed.peer
                ),
                vec![fact],
            );
        } else if !counts {
            trace.step(
                Rule::Fed3,
                StepResult::NotApplicable,
                "the asserted relationship is not a registration, visit or allocation (R-LR-1 to R-LR-3) of the user's own organisation",
                vec![fact],
            );
        } else {
            trace.step(
                Rule::Fed3,
                StepResult::Permit,
                "the trusted neighbour's asserted relationship counts as one of the user's organisation",
                vec![fact],
            );
            return Ok((trace, Rule::Fed3, None));
        }
    }
    if fed.purpose.is_break_glass() {
        let fact = format!(
            "purpose of use {} sent by {} with a written reason",
            fed.purpose.code(),
            fed.peer
        );
        if profile_of(subject, config) == Some(Profile::Clinical) {
            trace.step(
                Rule::Fed3,
                StepResult::Permit,
                "break glass sent as the purpose of use: an access audited as break glass",
                vec![fact],
            );
            let claim = Claim {
                user: user.clone(),
                org: org.clone(),
                purpose: fed.purpose.code().to_owned(),
                reason: fed.reason.clone().unwrap_or_default(),
                expires_at: fed.expires_at.clone(),
            };
            return Ok((trace, Rule::Fed3, Some(claim)));
        }
        trace.step(
            Rule::Fed3,
            StepResult::NotApplicable,
            "only clinical profiles may break glass (R-LR-4)",
            vec![fact],
        );
    }
    Err(no_relationship(
        facts,
        needed_for,
        "; the neighbouring record may send a relationship of the user's organisation (counted only if it is trusted here) or, for a clinician, break glass as the purpose of use with a reason",
        trace,
    ))
}

/// R-LR-5: the refusal when no relationship holds, naming the sources that did not answer.
/// `how` tells the caller how they could get one.
fn no_relationship(
    facts: &PatientFacts,
    needed_for: &str,
    how: &str,
    mut trace: Trace,
) -> Box<Decision> {
    let considered: Vec<String> = facts.links.iter().map(described).collect();
    let unanswered = facts.relationships_unknown_from();
    if unanswered.is_empty() {
        Box::new(trace.refuse(
            Rule::Lr5,
            format!("a legitimate relationship with this patient is required{needed_for}{how}"),
            considered,
        ))
    } else {
        trace.step(
            Rule::Lr5,
            StepResult::Unknown,
            format!(
                "{} did not answer: a relationship it may hold is unknown, so none is assumed",
                unanswered.join(", ")
            ),
            vec![],
        );
        Box::new(trace.refuse(
            Rule::Lr5,
            format!(
                "a legitimate relationship with this patient is required{needed_for}, and it could not be checked because {} did not answer{how}",
                unanswered.join(", ")
            ),
            considered,
        ))
    }
}

fn role_fact(subject: &Subject) -> String {
    match subject {
        Subject::Staff {
            org,
            role_code,
            user,
            federation,
            ..
        } => {
            format!(
                "staff user {user}, role {role_code} at {org}{}",
                federation
                    .as_ref()
                    .map(|f| format!(", through the neighbouring record {}", f.peer))
                    .unwrap_or_default()
            )
        }
        Subject::Patient { .. } => "a patient (NHS login)".into(),
        Subject::System { client_id, org } => format!(
            "backend service {client_id}{}",
            org.as_deref()
                .map(|o| format!(" of {o}"))
                .unwrap_or_default()
        ),
    }
}

/// R-ROLE-1 and R-ROLE-3 for one resource type and action.
fn type_allowed(
    profile: Profile,
    grants: &dyn Grants,
    resource_type: &str,
    action: Action,
) -> Result<(), (Rule, String)> {
    if !profile.readable().contains(&resource_type) {
        let rule = if profile == Profile::SocialCare {
            Rule::Role3
        } else {
            Rule::Role1
        };
        return Err((
            rule,
            format!(
                "the {} profile may not read {resource_type}",
                profile.as_str()
            ),
        ));
    }
    if !grants.allows(resource_type, action) {
        return Err((
            Rule::Role1,
            format!(
                "the token's scopes do not grant {} of {resource_type}",
                action_word(action)
            ),
        ));
    }
    Ok(())
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Read => "reading",
        Action::Search => "searching",
        Action::Create => "creating",
        Action::Update => "updating",
    }
}

/// The patient decision: a patient their own record; staff a relationship; systems by scope.
/// `needed_for` completes a refusal's "a legitimate relationship with this patient is
/// required" (empty for opening the record, " to write an alert" for a write).
fn patient_decision(
    request: &Request<'_>,
    config: &PolicyConfig,
    facts: &PatientFacts,
    needed_for: &str,
    trace: Trace,
) -> Result<(Trace, Rule, Option<Claim>), Box<Decision>> {
    let nhs = request.patient.unwrap_or_default();
    let mut trace = trace;
    match request.subject {
        Subject::Patient { nhs_number, .. } => {
            if nhs_number != nhs {
                return Err(Box::new(trace.refuse(
                    Rule::Role1,
                    "a patient may see only their own record",
                    vec![],
                )));
            }
            trace.step(
                Rule::Role1,
                StepResult::Permit,
                "the patient's own record",
                vec![],
            );
            Ok((trace, Rule::Role1, None))
        }
        Subject::System { .. } => {
            trace.step(
                Rule::Role1,
                StepResult::Permit,
                "backend services are bound by their scopes, R-OBJ and R-SENS, not by relationships",
                vec![],
            );
            Ok((trace, Rule::Role1, None))
        }
        Subject::Staff {
            federation: Some(fed),
            ..
        } => federated_relationship(request, config, facts, fed, needed_for, trace),
        Subject::Staff { .. } => match relationship(request.subject, facts, config) {
            Some((rule, fact, claim)) => {
                trace.step(
                    rule,
                    StepResult::Permit,
                    "a legitimate relationship holds",
                    vec![fact],
                );
                Ok((trace, rule, claim.cloned()))
            }
            None => {
                let how = if profile_of(request.subject, config) == Some(Profile::Clinical) {
                    "; a clinician directly involved in this patient's care may self-claim one with POST Patient/{id}/$break-glass, giving a purpose of use (ETREAT or BTG) and a reason, which is audited"
                } else {
                    "; this role cannot self-claim one"
                };
                Err(no_relationship(facts, needed_for, how, trace))
            }
        },
    }
}

fn open(
    request: &Request<'_>,
    config: &PolicyConfig,
    profile: Profile,
    action: Action,
    trace: Trace,
) -> Decision {
    let empty = PatientFacts::default();
    let facts = request.facts.unwrap_or(&empty);
    let (mut trace, rule, claim) = match patient_decision(request, config, facts, "", trace) {
        Ok(t) => t,
        Err(refused) => return *refused,
    };
    let subject = request.subject;
    let is_patient = matches!(subject, Subject::Patient { .. });
    let status = objection_status(facts);
    let mut notices = Vec::new();
    match &status {
        ObjectionStatus::Clear(latest) => trace.step(
            Rule::Obj2,
            StepResult::NotApplicable,
            "no objection stands",
            latest.map(described).into_iter().collect(),
        ),
        ObjectionStatus::Stands(s) => {
            trace.step(
                if is_patient { Rule::Obj6 } else { Rule::Obj2 },
                if is_patient {
                    StepResult::NotApplicable
                } else {
                    StepResult::Restrict
                },
                if is_patient {
                    "an objection stands; the patient still sees their own record"
                } else {
                    "an objection stands: only the caller's own organisation's records are shown"
                },
                vec![described(s)],
            );
            notices.push(if is_patient {
                Notice::ObjectionToldToPatient
            } else {
                Notice::ObjectionRestricts
            });
        }
        ObjectionStatus::Unknown { sources, latest } => {
            trace.step(
                Rule::Obj2,
                if is_patient {
                    StepResult::NotApplicable
                } else {
                    StepResult::Unknown
                },
                format!(
                    "the objection status is unknown because {} did not answer{}",
                    sources.join(", "),
                    if is_patient {
                        "; the patient still sees their own record"
                    } else {
                        ": only the caller's own organisation's records are shown"
                    }
                ),
                latest.map(described).into_iter().collect(),
            );
            if !is_patient {
                notices.push(Notice::ObjectionUnknown {
                    sources: sources.clone(),
                });
            }
        }
    }
    if let Some(fed) = federation_of(subject) {
        trace.step(
            Rule::Fed4,
            StepResult::NotApplicable,
            "objection and sensitivity rules apply to the neighbouring record's user as to a caller holding none of the records: under an objection nothing is shared, sensitive and confidential records never leave",
            vec![format!("asks through the neighbouring record {}", fed.peer)],
        );
    }
    let restricted = status.restricts() && !is_patient;
    let own = own_org(subject);
    let mut verdicts = Vec::with_capacity(request.records.len());
    for r in request.records {
        verdicts.push(record_verdict(request, profile, action, r, restricted, own));
    }
    let mut decision = Decision {
        permitted: true,
        rule,
        reason: String::new(),
        verdicts,
        notices,
        trace: Vec::new(),
        claim,
    };
    let withheld = decision.withheld();
    for (rule, n) in &withheld {
        trace.step(
            *rule,
            StepResult::Restrict,
            format!("{n} record(s) withheld"),
            vec![],
        );
    }
    if withheld.contains_key(&Rule::Sens3) {
        decision.notices.push(Notice::SomeWithheld);
    }
    decision.trace = trace.steps;
    decision
}

/// One record's fate, once the patient decision permits: the type and the scopes (R-ROLE-1/3),
/// then for others than the patient sensitivity (R-SENS-1/2), confidentiality (R-SENS-3) and
/// objection (R-OBJ-2); for the patient, what the GP kept from them (R-SENS-5) and
/// confidentiality (R-SENS-3).
fn record_verdict(
    request: &Request<'_>,
    profile: Profile,
    action: Action,
    r: &RecordFacts<'_>,
    restricted: bool,
    own: Option<&str>,
) -> Verdict {
    let labels = &r.labels;
    let holder = own == Some(labels.source_org);
    // Demographics: their type is decided with the request (`Ask::Type`); their labels, like
    // any record's, are not ignored should a source ever set them.
    if r.resource_type != "Patient" {
        if let Err((rule, _)) = type_allowed(profile, request.grants, r.resource_type, action) {
            return Verdict::Withhold(rule);
        }
    }
    if !r.within_scope_constraints {
        return Verdict::Withhold(Rule::Role1);
    }
    if let Subject::Patient { .. } = request.subject {
        if labels.hidden_from_patient {
            return Verdict::Withhold(Rule::Sens5);
        }
        if labels.confidential {
            return Verdict::Withhold(Rule::Sens3);
        }
        return Verdict::Show;
    }
    if labels.sensitivity != Sensitivity::NotSensitive && !holder {
        return Verdict::Withhold(Rule::Sens1);
    }
    if labels.confidential && !holder {
        return Verdict::Withhold(Rule::Sens3);
    }
    if restricted && !holder {
        return Verdict::Withhold(Rule::Obj2);
    }
    Verdict::Show
}

fn write_alert(
    request: &Request<'_>,
    config: &PolicyConfig,
    profile: Profile,
    category: &str,
    existing: Option<ExistingAlert<'_>>,
    trace: Trace,
) -> Decision {
    let action = if existing.is_some() {
        Action::Update
    } else {
        Action::Create
    };
    if !request.grants.allows("Flag", action) {
        return trace.refuse(
            Rule::Role1,
            "the token's scopes do not grant writing Flag",
            vec![],
        );
    }
    let nhs = request.patient.unwrap_or_default();
    let empty = PatientFacts::default();
    let facts = request.facts.unwrap_or(&empty);
    let categories = |c: &str| format!("alert category {c}");
    match request.subject {
        Subject::Patient { nhs_number, .. } => {
            if nhs_number != nhs {
                return trace.refuse(
                    Rule::Write2,
                    "a patient may write only on their own record",
                    vec![],
                );
            }
            if existing.is_some_and(|e| e.author_kind != "patient") {
                return trace.refuse(
                    Rule::Write2,
                    "a patient cannot change or end an alert a professional set",
                    vec![],
                );
            }
            if !PATIENT_ALERT_CATEGORIES.contains(&category) {
                return trace.refuse(Rule::Write2, "patients record their communication needs and wishes (communication-support, end-of-life-wishes)", vec![categories(category)]);
            }
            trace.permit(
                Rule::Write2,
                "a patient writes their own communication needs and wishes",
                vec![categories(category)],
            )
        }
        Subject::System { org: None, .. } => trace.refuse(
            Rule::Role2,
            "a backend service writes alerts only for an organisation (its client registration names none)",
            vec![],
        ),
        Subject::System { org: Some(org), .. } if config.view_only_orgs.contains(org) => trace
            .refuse(
                Rule::Role2,
                "this organisation is view-only: it never writes, nor do its systems",
                vec![format!("{org} is view-only")],
            ),
        Subject::System { .. } => trace.permit(
            Rule::Write1,
            "the backend service's scopes grant writing alerts",
            vec![],
        ),
        Subject::Staff { org, .. } => {
            if config.view_only_orgs.contains(org) {
                return trace.refuse(
                    Rule::Role2,
                    "this organisation is view-only: it never writes",
                    vec![format!("{org} is view-only")],
                );
            }
            match profile {
                Profile::Clinical => {}
                Profile::SocialCare => {
                    let outside = |c: &str| !SOCIAL_CARE_ALERT_CATEGORIES.contains(&c);
                    if outside(category) || existing.is_some_and(|e| outside(e.category)) {
                        return trace.refuse(Rule::Write1, "social care writes safeguarding, communication-support, end-of-life-wishes and other alerts only", vec![categories(category)]);
                    }
                    // The stored alert decides who may change it: a clinician's alert (or
                    // another council's) is not social care's to rewrite or end, whatever its
                    // category.
                    if let Some(e) = existing.filter(|e| e.author_org != org.as_str()) {
                        return trace.refuse(
                            Rule::Write1,
                            "social care changes or ends only alerts its own organisation wrote",
                            vec![format!("written by {}", e.author_org)],
                        );
                    }
                }
                _ => return trace.refuse(Rule::Write1, "this role may not write alerts", vec![]),
            }
            match patient_decision(request, config, facts, " to write an alert", trace) {
                Ok((trace, _, _)) => trace.permit(
                    Rule::Write1,
                    "the writer's profile and relationship allow this alert",
                    vec![categories(category)],
                ),
                Err(refused) => *refused,
            }
        }
    }
}

fn write_objection(
    request: &Request<'_>,
    config: &PolicyConfig,
    profile: Profile,
    trace: Trace,
) -> Decision {
    if !request.grants.allows("Consent", Action::Create) {
        return trace.refuse(
            Rule::Role1,
            "the token's scopes do not grant creating Consent",
            vec![],
        );
    }
    let Subject::Staff { org, .. } = request.subject else {
        return trace.refuse(
            Rule::Obj1,
            "objections are registered by the patient's GP practice",
            vec![],
        );
    };
    if config.view_only_orgs.contains(org) {
        return trace.refuse(
            Rule::Role2,
            "this organisation is view-only: it never writes",
            vec![format!("{org} is view-only")],
        );
    }
    if !matches!(profile, Profile::Clinical | Profile::ClinicalSupport) {
        return trace.refuse(Rule::Obj1, "this role may not register objections", vec![]);
    }
    let empty = PatientFacts::default();
    let facts = request.facts.unwrap_or(&empty);
    let registration = facts
        .links
        .iter()
        .find(|l| matches!(&l.fact, CareLink::Registration { org: o, current: true } if o == org));
    if let Some(r) = registration {
        return trace.permit(
            Rule::Obj1,
            "a user of the patient's registered practice",
            vec![described(r)],
        );
    }
    let unanswered = facts.relationships_unknown_from();
    if unanswered.is_empty() {
        trace.refuse(Rule::Obj1, "only a user of the patient's registered practice may register or withdraw an objection", vec![])
    } else {
        trace.refuse(Rule::Obj1, format!("only a user of the patient's registered practice may register or withdraw an objection, and the registration could not be checked because {} did not answer", unanswered.join(", ")), vec![])
    }
}

/// The audit trail and Consent: a patient about themself only; privacy officers (and any
/// profile the table lets read the type) about anyone.
fn own_or_officer(
    request: &Request<'_>,
    profile: Profile,
    (resource_type, action): (&str, Action),
    (own_rule, officer_rule): (Rule, Rule),
    own_reason: &str,
    trace: Trace,
) -> Decision {
    if let Err((rule, reason)) = type_allowed(profile, request.grants, resource_type, action) {
        return trace.refuse(rule, reason, vec![]);
    }
    match request.subject {
        Subject::Patient { nhs_number, .. } => match request.patient {
            Some(p) if p != nhs_number => trace.refuse(own_rule, own_reason, vec![]),
            _ => trace.permit(own_rule, "the patient's own record", vec![]),
        },
        _ => trace.permit(
            officer_rule,
            format!("the {} profile reads {resource_type}", profile.as_str()),
            vec![],
        ),
    }
}
