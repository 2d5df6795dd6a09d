//! SMART on FHIR scopes: what the token lets the client do, before the access rules narrow it.
//!
//! R-ROLE-1 allows a request only if both the caller's profile and the token's scopes allow it, so
//! this module answers one question: may this token perform this interaction on this resource type,
//! and if only through search constraints, which ones?
//!
//! Understood forms (space separated, anything else is ignored, so `openid`, `launch/patient` or a
//! typo grants nothing rather than failing the login):
//!
//! - SMART v2: `context/Type.perms[?k=v&k2=v2]`, `context` one of `patient`, `user`, `system`,
//!   `Type` a resource type or `*`, `perms` a non-empty subset of `cruds` in that order.
//! - SMART v1: `context/Type.read` (= `rs`), `.write` (= `cud`), `.*` (= `cruds`); v1 has no
//!   constraints, so a v1 scope with `?` is ignored.

use std::fmt;

/// Who the scope is granted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeContext {
    /// `patient/`: data about the patient in context (NHS login, or a launch with patient context).
    Patient,
    /// `user/`: whatever the logged-in user may see.
    User,
    /// `system/`: a backend service acting for itself.
    System,
}

impl ScopeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }

    fn from_str(s: &str) -> Option<ScopeContext> {
        match s {
            "patient" => Some(ScopeContext::Patient),
            "user" => Some(ScopeContext::User),
            "system" => Some(ScopeContext::System),
            _ => None,
        }
    }
}

/// A FHIR REST interaction, as SMART v2 permission letters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Read,
    Search,
    Create,
    Update,
    Delete,
}

impl Interaction {
    /// The SMART v2 permission letter (`c`, `r`, `u`, `d`, `s`).
    pub fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Interaction::Create => 1,
            Interaction::Read => 2,
            Interaction::Update => 4,
            Interaction::Delete => 8,
            Interaction::Search => 16,
        }
    }
}

/// The canonical order of SMART v2 permission letters.
const ORDER: [Interaction; 5] = [
    Interaction::Create,
    Interaction::Read,
    Interaction::Update,
    Interaction::Delete,
    Interaction::Search,
];

/// One understood scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: ScopeContext,
    /// `None` for `*` (every resource type).
    pub resource_type: Option<String>,
    permissions: u8,
    /// SMART v2 search constraints (`?category=laboratory`), percent-decoded; empty = none.
    pub constraints: Vec<(String, String)>,
}

impl Scope {
    /// One SMART resource scope (`patient/Observation.rs?category=laboratory`, `user/*.read`);
    /// `None` for anything else (`openid`, `launch`, a malformed scope).
    pub fn parse(text: &str) -> Option<Scope> {
        let (context, rest) = text.split_once('/')?;
        let context = ScopeContext::from_str(context)?;
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let (resource_type, perms) = body.split_once('.')?;
        let resource_type = match resource_type {
            "*" => None,
            name if is_resource_type_name(name) => Some(name.to_owned()),
            _ => return None,
        };
        let (permissions, v1) = match perms {
            "read" => (Interaction::Read.bit() | Interaction::Search.bit(), true),
            "write" => (
                Interaction::Create.bit() | Interaction::Update.bit() | Interaction::Delete.bit(),
                true,
            ),
            "*" => (ORDER.iter().fold(0, |acc, i| acc | i.bit()), true),
            v2 => (parse_v2_permissions(v2)?, false),
        };
        let constraints = match query {
            None => Vec::new(),
            Some(_) if v1 => return None,
            Some(query) => parse_constraints(query)?,
        };
        Some(Scope {
            context,
            resource_type,
            permissions,
            constraints,
        })
    }

    /// What both scopes allow: the same context, the narrower resource type, the common
    /// interactions and both scopes' constraints. `None` when they share nothing.
    pub fn intersect(&self, other: &Scope) -> Option<Scope> {
        if self.context != other.context {
            return None;
        }
        let resource_type = match (&self.resource_type, &other.resource_type) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(a), _) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        let permissions = self.permissions & other.permissions;
        if permissions == 0 {
            return None;
        }
        let mut constraints = self.constraints.clone();
        for c in &other.constraints {
            if !constraints.contains(c) {
                constraints.push(c.clone());
            }
        }
        Some(Scope {
            context: self.context,
            resource_type,
            permissions,
            constraints,
        })
    }

    /// The same scope for one resource type, keeping only `interactions` (`None` when none
    /// remain): a wildcard narrowed to what a profile allows.
    pub fn narrowed(&self, resource_type: &str, interactions: &[Interaction]) -> Option<Scope> {
        if self
            .resource_type
            .as_deref()
            .is_some_and(|own| own != resource_type)
        {
            return None;
        }
        let allowed = interactions.iter().fold(0, |acc, i| acc | i.bit());
        let permissions = self.permissions & allowed;
        (permissions != 0).then(|| Scope {
            context: self.context,
            resource_type: Some(resource_type.to_owned()),
            permissions,
            constraints: self.constraints.clone(),
        })
    }

    pub fn permits(&self, interaction: Interaction) -> bool {
        self.permissions & interaction.bit() != 0
    }

    /// Whether the scope covers this resource type and interaction (constraints aside).
    pub fn covers(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|own| own == resource_type)
            && self.permits(interaction)
    }
}

/// Canonical SMART v2 form, e.g. `patient/Observation.rs?category=laboratory`.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.",
            self.context.as_str(),
            self.resource_type.as_deref().unwrap_or("*")
        )?;
        for interaction in ORDER {
            if self.permits(interaction) {
                write!(f, "{}", interaction.letter())?;
            }
        }
        for (i, (key, value)) in self.constraints.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{}={}", percent_encode(key), percent_encode(value))?;
        }
        Ok(())
    }
}

/// A FHIR resource type name: an ASCII capital then letters and digits.
fn is_resource_type_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `cruds` letters, each at most once and in that order (SMART v2 §scopes).
fn parse_v2_permissions(perms: &str) -> Option<u8> {
    let mut bits = 0;
    let mut next = 0;
    for letter in perms.chars() {
        let offset = ORDER[next..].iter().position(|i| i.letter() == letter)?;
        bits |= ORDER[next + offset].bit();
        next += offset + 1;
    }
    (bits != 0).then_some(bits)
}

/// `k=v&k2=v2`, percent-decoded. Any malformed pair discards the whole scope: a constraint that
/// cannot be read must not silently become no constraint.
fn parse_constraints(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = percent_decode(key)?;
            let value = percent_decode(value)?;
            (!key.is_empty() && !value.is_empty()).then_some((key, value))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes what would break the scope's syntax (separators, `%`, space, `?`, `#`, non-ASCII).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && !b"%&=?#+".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The understood scopes of a token, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    scopes: Vec<Scope>,
}

impl Scopes {
    /// Parses a space-separated `scope` claim, keeping only SMART resource scopes.
    pub fn parse(scope: &str) -> Scopes {
        Scopes {
            scopes: scope.split_whitespace().filter_map(Scope::parse).collect(),
        }
    }

    /// Whether any scope, in any context, lets the token perform `interaction` on
    /// `resource_type` (possibly only within its constraints: see [`Scopes::constraints`]).
    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.scopes
            .iter()
            .any(|s| s.covers(resource_type, interaction))
    }

    /// The search constraints the interaction is limited to.
    ///
    /// - `None`: some scope allows it without constraint.
    /// - `Some(list)`: allowed only for resources matching one of the inner lists (each inner list
    ///   is one scope's `key=value` pairs, all of which must hold). `Some(vec![])` means no scope
    ///   allows it at all, so callers that only look at this answer still deny.
    pub fn constraints(
        &self,
        resource_type: &str,
        interaction: Interaction,
    ) -> Option<Vec<Vec<(String, String)>>> {
        let mut list = Vec::new();
        for scope in self
            .scopes
            .iter()
            .filter(|s| s.covers(resource_type, interaction))
        {
            if scope.constraints.is_empty() {
                return None;
            }
            list.push(scope.constraints.clone());
        }
        Some(list)
    }

    /// Whether any scope is of this context (a backend-services token must have `system/` ones).
    pub fn has_context(&self, context: ScopeContext) -> bool {
        self.scopes.iter().any(|s| s.context == context)
    }

    /// The understood scopes only, in canonical SMART v2 form, space separated (e.g. to answer
    /// the granted `scope` from the token endpoint).
    pub fn as_string(&self) -> String {
        self.scopes
            .iter()
            .map(Scope::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.scopes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Interaction::*;

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn v2_scopes_grant_their_letters() {
        let scopes = Scopes::parse("user/*.rs user/Flag.cu");
        assert!(scopes.allows("Observation", Read));
        assert!(scopes.allows("Observation", Search));
        assert!(!scopes.allows("Observation", Create));
        assert!(scopes.allows("Flag", Create));
        assert!(scopes.allows("Flag", Update));
        assert!(!scopes.allows("Flag", Delete));
        assert_eq!(scopes.as_string(), "user/*.rs user/Flag.cu");
    }

    #[test]
    fn v1_read_means_rs_and_write_means_cud() {
        let scopes = Scopes::parse("user/*.read patient/Flag.write");
        assert!(scopes.allows("Patient", Read) && scopes.allows("Patient", Search));
        assert!(!scopes.allows("Patient", Update));
        assert!(scopes.allows("Flag", Create) && scopes.allows("Flag", Delete));
        assert_eq!(scopes.as_string(), "user/*.rs patient/Flag.cud");
        let all = Scopes::parse("system/*.*");
        assert!([Create, Read, Update, Delete, Search]
            .iter()
            .all(|i| all.allows("AuditEvent", *i)));
        assert_eq!(all.as_string(), "system/*.cruds");
    }

    #[test]
    fn search_constraint_narrows_the_scope() {
        let scopes = Scopes::parse("patient/Observation.rs?category=laboratory");
        assert!(scopes.allows("Observation", Search));
        assert_eq!(
            scopes.constraints("Observation", Search),
            Some(vec![vec![pair("category", "laboratory")]])
        );
        assert_eq!(
            scopes.as_string(),
            "patient/Observation.rs?category=laboratory"
        );
    }

    #[test]
    fn constraints_of_several_scopes_are_alternatives() {
        let scopes = Scopes::parse(
            "patient/Observation.rs?category=laboratory \
             patient/Observation.rs?category=vital-signs&status=final",
        );
        assert_eq!(
            scopes.constraints("Observation", Read),
            Some(vec![
                vec![pair("category", "laboratory")],
                vec![pair("category", "vital-signs"), pair("status", "final")],
            ])
        );
    }

    #[test]
    fn unconstrained_scope_lifts_constraints() {
        let scopes = Scopes::parse("patient/Observation.rs?category=laboratory patient/*.r");
        assert_eq!(scopes.constraints("Observation", Read), None);
        // Search only comes through the constrained scope.
        assert_eq!(
            scopes.constraints("Observation", Search),
            Some(vec![vec![pair("category", "laboratory")]])
        );
    }

    #[test]
    fn not_allowed_is_an_empty_constraint_list() {
        let scopes = Scopes::parse("patient/Observation.rs?category=laboratory");
        assert!(!scopes.allows("Flag", Read));
        assert_eq!(scopes.constraints("Flag", Read), Some(vec![]));
    }

    #[test]
    fn constraint_values_are_percent_decoded() {
        let scopes = Scopes::parse(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory",
        );
        assert_eq!(
            scopes.constraints("Observation", Read),
            Some(vec![vec![pair(
                "category",
                "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
            )]])
        );
    }

    #[test]
    fn garbage_scopes_are_ignored() {
        let scopes = Scopes::parse(
            "openid profile launch/patient fhirUser offline_access nationalrbacaccess \
             admin/*.rs user/observation.rs user/Observation.sr user/Observation.rr \
             user/Observation. user/Observation user/Obs-ervation.rs \
             user/*.read?x=1 user/Flag.rs? user/Flag.rs?category user/Flag.rs?a=%zz",
        );
        assert!(scopes.is_empty(), "{}", scopes.as_string());
        assert!(!scopes.allows("Observation", Read));
    }

    #[test]
    fn contexts_are_recorded() {
        let scopes = Scopes::parse("system/Patient.rs openid");
        assert!(scopes.has_context(ScopeContext::System));
        assert!(!scopes.has_context(ScopeContext::User));
        assert_eq!(scopes.iter().count(), 1);
        assert_eq!(Scopes::parse(""), Scopes::default());
    }
}
