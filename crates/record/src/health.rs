//! Readiness for operators (`/health/ready`): one round trip to the store and to each source,
//! concurrently, each bounded by the source timeout. Names and outcomes only: no patient data.

use futures_util::future::join_all;

use crate::{gather, Records};

/// What answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The facade's own store: without it nothing is served (no audit, no answer).
    pub store: bool,
    /// Each source by name: one that is down degrades answers, with a warning naming it.
    pub sources: Vec<(String, bool)>,
}

impl Records {
    pub async fn readiness(&self) -> Readiness {
        let store = async {
            let ping = self.with_store(|conn| scr_db::ping(conn).map_err(Into::into));
            actix_rt::time::timeout(self.source_timeout, ping)
                .await
                .is_ok_and(|r| r.is_ok())
        };
        let sources = join_all(self.sources.iter().map(|s| async move {
            let ok = gather::bounded(self, s, |src| src.ping()).await.is_ok();
            (s.name().to_owned(), ok)
        }));
        let (store, sources) = futures_util::future::join(store, sources).await;
        Readiness { store, sources }
    }
}
