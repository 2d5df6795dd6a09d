//! Why a message was not applied: the causes the feed's ACKs and quarantine name.

/// A short machine-readable cause of an AE or AR, stored with the quarantined message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not an HL7 v2 message.
    Unparseable,
    /// MSH-4 is not a configured sending facility.
    UnknownFacility,
    /// MSH-12 is not 2.4.
    UnsupportedVersion,
    /// MSH-9 is not one of the supported messages.
    UnsupportedType,
    /// A field the feed needs is empty.
    MissingField,
    /// PID-3 has no NHS number, or it fails the Modulus 11 check.
    NhsNumber,
    /// A field holds a value the feed cannot translate.
    InvalidValue,
    /// The message contradicts what is stored (an order number of another patient, ...).
    Conflict,
    /// The message is larger than the listener accepts; only its beginning was kept.
    TooLarge,
    /// The MLLP connection may not send for the facility in MSH-4 (`[[mllp.senders]]`).
    SenderNotAllowed,
    /// The control id was applied before with different content: not a resend.
    ControlIdReused,
    /// The connection's quarantine is full: rejected without being kept.
    QuarantineFull,
    /// A result (ORU) for a patient the facade has never received demographics for.
    UnknownPatient,
    /// The store could not keep the message (locked, full, unreachable): nothing was applied or
    /// kept, and the sender should send it again (AR: a reason unrelated to its content).
    StoreUnavailable,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unparseable => "unparseable",
            ErrorKind::UnknownFacility => "unknown-facility",
            ErrorKind::UnsupportedVersion => "unsupported-version",
            ErrorKind::UnsupportedType => "unsupported-type",
            ErrorKind::MissingField => "missing-field",
            ErrorKind::NhsNumber => "nhs-number",
            ErrorKind::InvalidValue => "invalid-value",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::SenderNotAllowed => "sender-not-allowed",
            ErrorKind::ControlIdReused => "control-id-reused",
            ErrorKind::QuarantineFull => "quarantine-full",
            ErrorKind::UnknownPatient => "unknown-patient",
            ErrorKind::StoreUnavailable => "store-unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorKind> {
        [
            ErrorKind::Unparseable,
            ErrorKind::UnknownFacility,
            ErrorKind::UnsupportedVersion,
            ErrorKind::UnsupportedType,
            ErrorKind::MissingField,
            ErrorKind::NhsNumber,
            ErrorKind::InvalidValue,
            ErrorKind::Conflict,
            ErrorKind::TooLarge,
            ErrorKind::SenderNotAllowed,
            ErrorKind::ControlIdReused,
            ErrorKind::QuarantineFull,
            ErrorKind::UnknownPatient,
            ErrorKind::StoreUnavailable,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// The HL7 table 0357 error condition code for the ACK's ERR segment.
    pub fn hl7_error_code(self) -> u16 {
        match self {
            ErrorKind::Unparseable => 100,
            ErrorKind::MissingField => 101,
            ErrorKind::InvalidValue | ErrorKind::NhsNumber => 102,
            ErrorKind::UnsupportedType => 200,
            ErrorKind::UnsupportedVersion => 203,
            // 204: unknown key identifier.
            ErrorKind::UnknownFacility | ErrorKind::UnknownPatient => 204,
            ErrorKind::ControlIdReused => 205,
            ErrorKind::Conflict
            | ErrorKind::TooLarge
            | ErrorKind::SenderNotAllowed
            | ErrorKind::QuarantineFull
            | ErrorKind::StoreUnavailable => 207,
        }
    }
}
