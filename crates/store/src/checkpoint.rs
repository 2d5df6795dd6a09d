//! Signed checkpoints of the audit chain (R-AUD-3): what the chain alone cannot show.
//!
//! The hash chain shows a record altered, inserted or removed in the middle, but not that the
//! newest records were removed, nor a chain that someone with database access rewrote and then
//! recomputed from the start: the algorithm is public. A checkpoint is the record number and
//! hash of the chain's head at a moment, with the time, signed (Ed25519) with a key kept outside
//! the database and appended as one JSON line to a file outside the database. `scr audit
//! verify` then checks that every checkpoint's signature verifies, that the record at each
//! checkpoint still holds the checkpointed hash (a recomputed chain does not) and that the
//! trail reaches the furthest checkpoint (a truncated one does not).
//!
//! The writer ([`Checkpointer`]) never signs a head that does not follow from the last
//! checkpoint: it checks the records from there first. See docs/audit.md.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use openssl::pkey::{Id, PKey, Private};
use openssl::sha::Sha256;
use openssl::sign::{Signer, Verifier};
use serde::{Deserialize, Serialize};

use crate::audit::{self, Anchor, ChainReport, GENESIS};
use crate::{DbConnection, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signing key cannot be read, created or used.
    #[error("checkpoint key {path}: {detail}")]
    Key { path: String, detail: String },
    /// The checkpoint file cannot be read or appended to.
    #[error("checkpoint file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// OpenSSL could not sign.
    #[error("signing a checkpoint failed: {detail}")]
    Sign { detail: String },
    #[error("reading the audit trail failed")]
    Store {
        #[from]
        source: StoreError,
    },
    /// The trail does not follow from the last checkpoint: nothing was signed.
    #[error("the audit trail does not follow from the signed checkpoint of record {seq}: {detail}; no checkpoint written (run scr audit verify)")]
    Diverged { seq: i64, detail: String },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some((hex_digit(*hi)? << 4) | hex_digit(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The Ed25519 key checkpoints are signed with, and checked against.
pub struct CheckpointKey {
    key: PKey<Private>,
    fingerprint: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// A new random key.
    pub fn generate() -> Result<CheckpointKey, String> {
        let key = PKey::generate_ed25519().map_err(|e| e.to_string())?;
        CheckpointKey::from_key(key)
    }

    fn from_key(key: PKey<Private>) -> Result<CheckpointKey, String> {
        if key.id() != Id::ED25519 {
            return Err("not an Ed25519 private key".into());
        }
        let public = key.raw_public_key().map_err(|e| e.to_string())?;
        let mut h = Sha256::new();
        h.update(&public);
        let fingerprint = hex(&h.finish()[..8]);
        Ok(CheckpointKey { key, fingerprint })
    }

    /// A PEM (PKCS#8) Ed25519 private key.
    pub fn from_pem(pem: &[u8]) -> Result<CheckpointKey, String> {
        let key =
            PKey::private_key_from_pem(pem).map_err(|_| "not a PEM private key".to_string())?;
        CheckpointKey::from_key(key)
    }

    /// The key as PEM (PKCS#8).
    pub fn to_pem(&self) -> Result<Vec<u8>, String> {
        self.key
            .private_key_to_pem_pkcs8()
            .map_err(|e| e.to_string())
    }

    /// Reads the key at `path`.
    pub fn load(path: &Path) -> Result<CheckpointKey, CheckpointError> {
        let err = |detail: String| CheckpointError::Key {
            path: path.display().to_string(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        CheckpointKey::from_pem(&pem).map_err(err)
    }

    /// Reads the key at `path`, creating it (readable by its owner only) if there is no file;
    /// `true` when it was created.
    pub fn load_or_create(path: &Path) -> Result<(CheckpointKey, bool), CheckpointError> {
        if path.exists() {
            return Ok((CheckpointKey::load(path)?, false));
        }
        let err = |detail: String| CheckpointError::Key {
            path: path.display().to_string(),
            detail,
        };
        let key = CheckpointKey::generate().map_err(err)?;
        let pem = key.to_pem().map_err(err)?;
        write_private(path, &pem).map_err(|e| err(format!("cannot create it: {e}")))?;
        Ok((key, true))
    }

    /// The first 16 hex digits of the SHA-256 of the public key: names the key in each
    /// checkpoint, so a checkpoint signed with another key is reported as such.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs the head `(seq, hash)` at `time`.
    pub fn sign(&self, seq: i64, hash: &str, time: &str) -> Result<Checkpoint, CheckpointError> {
        let mut c = Checkpoint {
            seq,
            hash: hash.to_owned(),
            time: time.to_owned(),
            key: self.fingerprint.clone(),
            signature: String::new(),
        };
        let signature = Signer::new_without_digest(&self.key)
            .and_then(|mut s| s.sign_oneshot_to_vec(&c.signed_bytes()))
            .map_err(|e| CheckpointError::Sign {
                detail: e.to_string(),
            })?;
        c.signature = hex(&signature);
        Ok(c)
    }

    /// Whether `c` was signed with this key and is unaltered; why not.
    pub fn check(&self, c: &Checkpoint) -> Result<(), String> {
        if c.key != self.fingerprint {
            return Err(format!(
                "signed with another key ({}; the configured key is {})",
                c.key, self.fingerprint
            ));
        }
        let Some(signature) = unhex(&c.signature) else {
            return Err("its signature is not hex".into());
        };
        let ok = Verifier::new_without_digest(&self.key)
            .and_then(|mut v| v.verify_oneshot(&signature, &c.signed_bytes()))
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err("its signature does not verify: it was forged or altered".into())
        }
    }
}

/// Writes a private key readable by its owner only; never over an existing file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// One signed checkpoint: a line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The head's record number (0: the trail was empty).
    pub seq: i64,
    /// The head's hash ([`GENESIS`] for an empty trail).
    pub hash: String,
    /// When it was signed (ISO instant).
    pub time: String,
    /// The signing key's fingerprint.
    pub key: String,
    /// Ed25519 over [`Checkpoint::signed_bytes`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: `scr-audit-checkpoint/1\n`, then `seq` (decimal), `hash`, `time` and
    /// `key`, each as an 8-byte big-endian length and its UTF-8 bytes.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"scr-audit-checkpoint/1\n".to_vec();
        for field in [
            self.seq.to_string().as_str(),
            &self.hash,
            &self.time,
            &self.key,
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    /// The JSON line, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A line of the checkpoint file; why it is not a checkpoint.
    pub fn parse(line: &str) -> Result<Checkpoint, String> {
        serde_json::from_str(line).map_err(|_| "not a checkpoint".to_string())
    }

    pub fn anchor(&self) -> Anchor {
        Anchor {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::File {
        path: path.display().to_string(),
        source,
    }
}

/// Appends `c` as one line (one write, then flushed to disk), creating the file if missing. A
/// line left unfinished by a crash is ended first, so it cannot swallow this one.
pub fn append(path: &Path, c: &Checkpoint) -> Result<(), CheckpointError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = file_error(path);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(&err)?;
    let len = f.metadata().map_err(&err)?.len();
    let mut line = String::new();
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).map_err(&err)?;
        f.read_exact(&mut last).map_err(&err)?;
        if last[0] != b'\n' {
            line.push('\n');
        }
    }
    line.push_str(&c.to_line());
    line.push('\n');
    f.write_all(line.as_bytes()).map_err(&err)?;
    f.sync_data().map_err(&err)
}

/// One line of the checkpoint file, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLine {
    pub line: usize,
    pub parsed: Result<Checkpoint, String>,
}

fn parse_lines(text: &[u8], first_line: usize) -> Vec<FileLine> {
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| FileLine {
            line: first_line + i,
            parsed: std::str::from_utf8(l)
                .map_err(|_| "not a checkpoint".to_string())
                .and_then(Checkpoint::parse),
        })
        .collect()
}

/// Every line of the checkpoint file; `None` when there is no file.
pub fn read_file(path: &Path) -> Result<Option<Vec<FileLine>>, CheckpointError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(parse_lines(&bytes, 1))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(path)(e)),
    }
}

/// The furthest checkpoint signed with `key` among the file's last 64 KiB (a few hundred
/// checkpoints), without reading a file that grows for years.
pub fn latest_in_tail(
    path: &Path,
    key: &CheckpointKey,
) -> Result<Option<Checkpoint>, CheckpointError> {
    const TAIL: u64 = 64 * 1024;
    let err = file_error(path);
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let len = f.metadata().map_err(&err)?.len();
    let from = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(from)).map_err(&err)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(&err)?;
    if from > 0 {
        // The first line is probably cut.
        let cut = bytes
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..cut);
    }
    Ok(parse_lines(&bytes, 0)
        .into_iter()
        .filter_map(|l| l.parsed.ok())
        .filter(|c| key.check(c).is_ok())
        .max_by_key(|c| c.seq))
}

/// Writes checkpoints: the key, the file, and the furthest checkpoint it knows.
#[derive(Debug)]
pub struct Checkpointer {
    key: CheckpointKey,
    file: PathBuf,
    last: Option<Checkpoint>,
}

impl Checkpointer {
    /// Loads the key (creating it if missing; `true` then) and the file's latest checkpoint;
    /// creates the file if missing, so a file that cannot be written is known at once.
    pub fn open(key_file: &Path, file: &Path) -> Result<(Checkpointer, bool), CheckpointError> {
        let (key, created) = CheckpointKey::load_or_create(key_file)?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(file)
                .map_err(file_error(file))?;
        }
        let last = latest_in_tail(file, &key)?;
        Ok((
            Checkpointer {
                key,
                file: file.to_owned(),
                last,
            },
            created,
        ))
    }

    pub fn key(&self) -> &CheckpointKey {
        &self.key
    }

    /// Signs the trail's head and appends the checkpoint, after checking that every record
    /// from the last checkpoint on follows from it (else [`CheckpointError::Diverged`], and
    /// nothing is written). Unless `always`, writes nothing when the trail has not grown since
    /// the last checkpoint.
    pub fn checkpoint(
        &mut self,
        conn: &mut DbConnection,
        time: &str,
        always: bool,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        // Another process (`scr audit checkpoint`, another server) may have written one since.
        if let Some(on_file) = latest_in_tail(&self.file, &self.key)? {
            if self.last.as_ref().is_none_or(|l| on_file.seq > l.seq) {
                self.last = Some(on_file);
            }
        }
        let from = self.last.as_ref().map_or(
            Anchor {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
            Checkpoint::anchor,
        );
        let report = audit::verify_from(conn, &from)?;
        if let Some(detail) = divergence(&report) {
            return Err(CheckpointError::Diverged {
                seq: from.seq,
                detail,
            });
        }
        let (seq, hash) = report.head.unwrap_or((0, GENESIS.to_owned()));
        if !always && self.last.as_ref().is_some_and(|l| l.seq == seq) {
            return Ok(None);
        }
        let c = self.key.sign(seq, &hash, time)?;
        append(&self.file, &c)?;
        self.last = Some(c.clone());
        Ok(Some(c))
    }
}

fn divergence(report: &ChainReport) -> Option<String> {
    if let Some(a) = &report.beyond_end {
        return Some(format!(
            "record {} is no longer in the trail: the newest records were removed",
            a.seq
        ));
    }
    if let Some(a) = &report.anchor_mismatch {
        return Some(format!(
            "record {} holds another hash: the chain was rewritten and recomputed",
            a.seq
        ));
    }
    if let (Some(seq), Some(why)) = (report.first_broken, report.why) {
        return Some(format!("the chain breaks at record {seq}: {why}"));
    }
    None
}

/// The result of `scr audit verify` with checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub chain: ChainReport,
    /// Checkpoints whose signature verifies.
    pub valid: usize,
    /// Lines that are not checkpoints signed with the key: (line number, why).
    pub bad_lines: Vec<(usize, String)>,
    /// The furthest valid checkpoint.
    pub latest: Option<Checkpoint>,
    /// There is no checkpoint file.
    pub no_file: bool,
}

/// Checks the checkpoint file's signatures, then the chain from the start through every valid
/// checkpoint to the end.
pub fn verify(
    conn: &mut DbConnection,
    key: &CheckpointKey,
    file: &Path,
) -> Result<Verification, CheckpointError> {
    let lines = read_file(file)?;
    let no_file = lines.is_none();
    let mut anchors = Vec::new();
    let mut bad_lines = Vec::new();
    let mut latest: Option<Checkpoint> = None;
    for l in lines.into_iter().flatten() {
        match l.parsed.and_then(|c| key.check(&c).map(|()| c)) {
            Ok(c) => {
                anchors.push(c.anchor());
                if latest.as_ref().is_none_or(|x| c.seq >= x.seq) {
                    latest = Some(c);
                }
            }
            Err(why) => bad_lines.push((l.line, why)),
        }
    }
    let chain = audit::verify_chain_anchored(conn, &anchors)?;
    Ok(Verification {
        chain,
        valid: anchors.len(),
        bad_lines,
        latest,
        no_file,
    })
}

impl Verification {
    /// What failed, one sentence each; empty when the trail verifies.
    pub fn problems(&self, file: &Path) -> Vec<String> {
        let mut out: Vec<String> = self
            .bad_lines
            .iter()
            .map(|(n, why)| format!("checkpoint file {} line {n}: {why}", file.display()))
            .collect();
        out.extend(self.chain.problems());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::event;
    use crate::audit::tests::{all_rows, restore};
    use crate::audit::{link_hash_v2, verify_chain};
    use crate::schema::audit_event;
    use crate::test_support::test_databases;
    use crate::Store;
    use diesel::prelude::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const TIME: &str = "2026-12-03T10:00:00Z";

    /// A fresh folder for a key and a checkpoint file, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> std::io::Result<Scratch> {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("scr_checkpoint_{label}_{}_{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            Ok(Scratch(dir))
        }
        fn key(&self) -> PathBuf {
            self.0.join("checkpoint-key.pem")
        }
        fn file(&self) -> PathBuf {
            self.0.join("checkpoints.jsonl")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A store with five audit rows and a checkpoint of them.
    fn checkpointed(
        store: &Store,
        scratch: &Scratch,
    ) -> Result<Checkpointer, Box<dyn std::error::Error>> {
        store.append_audit(&(1..=5).map(event).collect::<Vec<_>>())?;
        let (mut writer, created) = Checkpointer::open(&scratch.key(), &scratch.file())?;
        assert!(created);
        let c = writer.checkpoint(&mut *store.conn()?, TIME, true)?;
        assert_eq!(c.map(|c| c.seq), Some(5));
        let key = CheckpointKey::load(&scratch.key())?;
        let v = verify(&mut *store.conn()?, &key, &scratch.file())?;
        assert!(v.problems(&scratch.file()).is_empty(), "{v:?}");
        assert_eq!((v.valid, v.latest.map(|c| c.seq)), (1, Some(5)));
        Ok(writer)
    }

    /// Issue 11 item 6: deleting the newest rows left a chain that verified. The checkpoint
    /// shows the trail no longer reaches the record it covered.
    #[test]
    fn item6_r_aud_3_truncation_after_a_checkpoint_is_detected() -> TestResult {
        for db in test_databases("item6_truncation")? {
            let scratch = Scratch::new("truncation")?;
            let store = Store::open(&db.url, 2)?;
            let mut writer = checkpointed(&store, &scratch)?;
            let mut conn = store.conn()?;
            diesel::delete(audit_event::table.filter(audit_event::seq.ge(4))).execute(&mut conn)?;
            assert_eq!(
                verify_chain(&mut conn)?.first_broken,
                None,
                "the chain alone cannot see it"
            );
            let key = CheckpointKey::load(&scratch.key())?;
            let v = verify(&mut conn, &key, &scratch.file())?;
            assert_eq!(
                v.chain.beyond_end.as_ref().map(|a| a.seq),
                Some(5),
                "{}",
                db.label
            );
            let problems = v.problems(&scratch.file());
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].contains("ends at record 3")
                    && problems[0].contains("covers record 5")
                    && problems[0].contains("truncated"),
                "{problems:?}"
            );
            let refused = writer.checkpoint(&mut conn, TIME, true);
            assert!(
                matches!(refused, Err(CheckpointError::Diverged { seq: 5, .. })),
                "{refused:?}"
            );
            assert_eq!(read_file(&scratch.file())?.map(|l| l.len()), Some(1));
        }
        Ok(())
    }

    /// Issue 11 item 6: anyone with database access could alter a row and recompute every
    /// hash after it. The checkpoint's hash no longer matches the record it covered.
    #[test]
    fn item6_r_aud_3_a_recomputed_chain_fails_the_checkpoint() -> TestResult {
        for db in test_databases("item6_recomputed")? {
            let scratch = Scratch::new("recomputed")?;
            let store = Store::open(&db.url, 2)?;
            let mut writer = checkpointed(&store, &scratch)?;
            let mut conn = store.conn()?;
            let rows = all_rows(&mut conn)?;
            let mut prev = rows[0].hash.clone();
            for mut row in rows.into_iter().skip(1) {
                if row.seq == 2 {
                    row.patient_nhs = None;
                }
                row.prev_hash = prev;
                row.hash = link_hash_v2(&row.chained());
                prev = row.hash.clone();
                restore(&mut conn, &row)?;
            }
            assert_eq!(
                verify_chain(&mut conn)?.first_broken,
                None,
                "the chain alone cannot see it"
            );
            let key = CheckpointKey::load(&scratch.key())?;
            let v = verify(&mut conn, &key, &scratch.file())?;
            assert_eq!(
                v.chain.anchor_mismatch.as_ref().map(|a| a.seq),
                Some(5),
                "{}",
                db.label
            );
            let problems = v.problems(&scratch.file());
            assert!(
                problems.len() == 1
                    && problems[0].starts_with("record 5 does not hold the hash")
                    && problems[0].contains("recomputed"),
                "{problems:?}"
            );
            // Nor does the writer sign the recomputed head.
            let refused = writer.checkpoint(&mut conn, TIME, true);
            assert!(
                matches!(refused, Err(CheckpointError::Diverged { seq: 5, .. })),
                "{refused:?}"
            );
            // A fresh writer (a restarted server) finds the checkpoint in the file.
            let (mut fresh, created) = Checkpointer::open(&scratch.key(), &scratch.file())?;
            assert!(!created);
            assert!(fresh.checkpoint(&mut conn, TIME, false).is_err());
        }
        Ok(())
    }

    /// A checkpoint whose signature does not verify with the configured key is reported, and
    /// never used as an anchor.
    #[test]
    fn item6_r_aud_3_a_forged_checkpoint_signature_is_rejected() -> TestResult {
        for db in test_databases("item6_forged")? {
            let scratch = Scratch::new("forged")?;
            let store = Store::open(&db.url, 2)?;
            checkpointed(&store, &scratch)?;
            let mut conn = store.conn()?;
            let key = CheckpointKey::load(&scratch.key())?;
            let genuine = key.sign(5, &all_rows(&mut conn)?[4].hash, "2026-12-03T11:00:00Z")?;
            // Moved to another record: the signature no longer matches.
            let moved = Checkpoint {
                seq: 3,
                ..genuine.clone()
            };
            // Signed with an attacker's key but naming ours.
            let other = CheckpointKey::generate()?;
            let mut forged = other.sign(5, "ab".repeat(32).as_str(), TIME)?;
            forged.key = key.fingerprint().to_owned();
            // Signed with an attacker's key, honestly named.
            let foreign = other.sign(5, &genuine.hash, TIME)?;
            let mut text = std::fs::read_to_string(scratch.file())?;
            for line in [
                moved.to_line(),
                forged.to_line(),
                foreign.to_line(),
                "hello".into(),
            ] {
                text.push_str(&line);
                text.push('\n');
            }
            std::fs::write(scratch.file(), text)?;
            let v = verify(&mut conn, &key, &scratch.file())?;
            assert_eq!(v.valid, 1, "{}", db.label);
            assert_eq!(
                v.bad_lines.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                vec![2, 3, 4, 5]
            );
            let problems = v.problems(&scratch.file());
            assert!(
                problems[0].contains("line 2: its signature does not verify"),
                "{problems:?}"
            );
            assert!(
                problems[1].contains("line 3: its signature does not verify"),
                "{problems:?}"
            );
            assert!(
                problems[2].contains("line 4: signed with another key"),
                "{problems:?}"
            );
            assert!(
                problems[3].contains("line 5: not a checkpoint"),
                "{problems:?}"
            );
            assert_eq!(v.chain.anchor_mismatch, None, "forged anchors are not used");
            // Nor does the writer anchor on them.
            let on_file = read_file(&scratch.file())?.and_then(|l| l[0].parsed.clone().ok());
            assert_eq!(latest_in_tail(&scratch.file(), &key)?, on_file);
        }
        Ok(())
    }

    #[test]
    fn item6_r_aud_3_the_server_checkpoints_only_when_the_trail_grew() -> TestResult {
        for db in test_databases("item6_grew")? {
            let scratch = Scratch::new("grew")?;
            let store = Store::open(&db.url, 2)?;
            let (mut writer, _) = Checkpointer::open(&scratch.key(), &scratch.file())?;
            let mut conn = store.conn()?;
            let first = writer.checkpoint(&mut conn, TIME, false)?;
            assert_eq!(
                first.map(|c| (c.seq, c.hash)),
                Some((0, GENESIS.to_owned())),
                "an empty trail is checkpointed once"
            );
            assert_eq!(writer.checkpoint(&mut conn, TIME, false)?, None);
            store.append_audit(&[event(1)])?;
            assert_eq!(
                writer.checkpoint(&mut conn, TIME, false)?.map(|c| c.seq),
                Some(1)
            );
            assert_eq!(writer.checkpoint(&mut conn, TIME, false)?, None);
            assert_eq!(
                writer.checkpoint(&mut conn, TIME, true)?.map(|c| c.seq),
                Some(1)
            );
            let key = CheckpointKey::load(&scratch.key())?;
            let v = verify(&mut conn, &key, &scratch.file())?;
            assert!(
                v.problems(&scratch.file()).is_empty() && v.valid == 3,
                "{v:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_checkpoint_file_that_cannot_be_created_is_known_when_the_writer_opens() -> TestResult {
        let scratch = Scratch::new("unwritable")?;
        let file = scratch.0.join("no-such-folder").join("checkpoints.jsonl");
        let err = Checkpointer::open(&scratch.key(), &file).unwrap_err();
        assert!(matches!(err, CheckpointError::File { .. }), "{err:?}");
        Ok(())
    }

    #[test]
    fn item6_the_checkpoint_key_is_created_once_for_its_owner_and_must_be_ed25519() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new("key")?;
        let (key, created) = CheckpointKey::load_or_create(&scratch.key())?;
        assert!(created);
        let mode = std::fs::metadata(scratch.key())?.permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only");
        let (again, created) = CheckpointKey::load_or_create(&scratch.key())?;
        assert!(!created);
        assert_eq!(key.fingerprint(), again.fingerprint());
        let rsa = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
        let other = scratch.0.join("rsa.pem");
        std::fs::write(&other, rsa.private_key_to_pem_pkcs8()?)?;
        let err = CheckpointKey::load(&other).unwrap_err().to_string();
        assert!(err.contains("not an Ed25519"), "{err}");
        std::fs::write(&other, b"garbage")?;
        let err = CheckpointKey::load(&other).unwrap_err().to_string();
        assert!(err.contains("not a PEM private key"), "{err}");
        Ok(())
    }

    /// A line cut short by a crash does not swallow the next checkpoint.
    #[test]
    fn a_checkpoint_appended_after_an_unfinished_line_stays_readable() -> TestResult {
        let scratch = Scratch::new("unfinished")?;
        let key = CheckpointKey::generate()?;
        std::fs::write(scratch.file(), b"{\"seq\":1,\"ha")?;
        let c = key.sign(1, GENESIS, TIME)?;
        append(&scratch.file(), &c)?;
        let lines = read_file(&scratch.file())?.unwrap_or_default();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].parsed, Ok(c));
        Ok(())
    }
}
