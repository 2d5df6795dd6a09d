//! Opening a patient's record for one caller: every source asked concurrently with a deadline,
//! the patient's facts built with their provenance (and what is unknown because a source did
//! not answer), the one policy decision asked, the records that may leave merged and the
//! decision kept for the audit. No HTTP: the server calls this and formats the answer.

pub mod access;
mod explain;
mod gather;
mod health;
mod neighbours;
mod open;
pub mod own_flags;

use std::sync::Arc;
use std::time::Duration;

pub use access::{Access, Touched};
pub use explain::{DescribedCaller, Explanation};
pub use gather::{merge_patient, PatientView};
pub use health::Readiness;
pub use open::{Known, OpenedRecord};
pub use scr_source::Wanted;

use scr_policy::{PolicyConfig, Rule};
use scr_source::Source;

/// What can go wrong opening a record. The server maps each to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No source knows the patient, or the caller may not know that it exists.
    #[error("{resource_type}/{id} not found")]
    NotFound { resource_type: String, id: String },
    /// The policy refused; `rule` says which rule.
    #[error("refused by {rule}: {reason}")]
    Refused { rule: Rule, reason: String },
    /// A source or the store could not answer. `detail` is for the log only.
    #[error("unavailable: {detail}")]
    Unavailable { detail: String },
    #[error("timed out: {detail}")]
    Timeout { detail: String },
    /// The facade's own store failed.
    #[error("store: {0}")]
    Store(#[from] scr_store::StoreError),
    /// The request names something the service cannot work with; `element` names it.
    #[error("invalid {element}: {message}")]
    Invalid { element: String, message: String },
    /// A stored or served resource could not be handled.
    #[error("internal error: {detail}")]
    Internal { detail: String },
}

impl RecordError {
    pub fn not_found(resource_type: &str, id: &str) -> RecordError {
        RecordError::NotFound {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
        }
    }

    pub fn refused(decision: &scr_policy::Decision) -> RecordError {
        RecordError::Refused {
            rule: decision.rule,
            reason: decision.reason.clone(),
        }
    }
}

/// The record service: the sources, the store and the policy configuration, built once at
/// start-up and shared by every request.
pub struct Records {
    sources: Vec<Arc<dyn Source>>,
    store: scr_store::Store,
    policy: PolicyConfig,
    source_timeout: Duration,
    /// The neighbouring records (issue 12), asked after the sources.
    peers: Vec<Arc<scr_source_peer::PeerSource>>,
    /// Whose each neighbour's record served here is, for reads by id.
    neighbour_ids: neighbours::NeighbourRecordIds,
}

impl Records {
    /// `sources` are the provider sources; the alerts written here are added as one more.
    pub fn new(
        mut sources: Vec<Arc<dyn Source>>,
        store: scr_store::Store,
        policy: PolicyConfig,
        source_timeout: Duration,
    ) -> Records {
        sources.push(Arc::new(own_flags::OwnFlags::new(store.clone())));
        Records {
            sources,
            store,
            policy,
            source_timeout,
            peers: Vec::new(),
            neighbour_ids: Default::default(),
        }
    }

    /// The neighbouring records to ask for every record opened here.
    pub fn with_peers(mut self, peers: Vec<Arc<scr_source_peer::PeerSource>>) -> Records {
        self.peers = peers;
        self
    }

    pub fn peers(&self) -> &[Arc<scr_source_peer::PeerSource>] {
        &self.peers
    }

    pub fn policy(&self) -> &PolicyConfig {
        &self.policy
    }

    pub fn sources(&self) -> &[Arc<dyn Source>] {
        &self.sources
    }

    pub fn source(&self, name: &str) -> Option<&Arc<dyn Source>> {
        self.sources.iter().find(|s| s.name() == name)
    }

    /// Runs blocking store work on the blocking pool with a connection from the store's pool.
    pub async fn with_store<T, F>(&self, work: F) -> Result<T, RecordError>
    where
        T: Send + 'static,
        F: FnOnce(&mut scr_store::DbConnection) -> Result<T, scr_store::StoreError>
            + Send
            + 'static,
    {
        let store = self.store.clone();
        actix_rt::task::spawn_blocking(move || {
            let mut conn = store.conn()?;
            work(&mut conn)
        })
        .await
        .map_err(|e| RecordError::Internal {
            detail: e.to_string(),
        })?
        .map_err(RecordError::Store)
    }
}
