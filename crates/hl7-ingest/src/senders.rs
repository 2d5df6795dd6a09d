//! Which sending facilities (MSH-4) an MLLP connection may speak for (`[[mllp.senders]]`).
//!
//! A facility is bound to the peer addresses its integration engine connects from and, with
//! mutual TLS, to the name in its client certificate. A message whose MSH-4 the connection may
//! not send for is rejected (`AR`) and quarantined: claiming to be a trust in MSH-4 is not
//! enough to open a visit (R-LR-2) or to record a result in its name.

use std::net::IpAddr;
use std::str::FromStr;

/// An address or a CIDR block (`10.20.0.0/16`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(s: &str) -> Result<AddressRange, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let network = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("'{s}' is not an IP address or CIDR block"))?,
        );
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {max}"))?,
        };
        Ok(AddressRange { network, prefix })
    }
}

impl AddressRange {
    pub fn contains(&self, address: IpAddr) -> bool {
        let bits = |a: IpAddr| -> Option<(u128, u32)> {
            match a {
                IpAddr::V4(v) => Some((u128::from(u32::from(v)), 32)),
                IpAddr::V6(v) => Some((u128::from(v), 128)),
            }
        };
        let (Some((net, width)), Some((addr, addr_width))) =
            (bits(self.network), bits(canonical(address)))
        else {
            return false;
        };
        if width != addr_width {
            return false;
        }
        let prefix = u32::from(self.prefix);
        if prefix == 0 {
            return true;
        }
        let shift = width - prefix;
        (net >> shift) == (addr >> shift)
    }
}

/// An IPv4 peer seen on a dual-stack socket (`::ffff:10.0.0.1`) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// One `[[mllp.senders]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSender {
    /// MSH-4, the facility's ODS code.
    pub facility: String,
    /// Where it connects from; empty means any address (only with mutual TLS).
    pub addresses: Vec<AddressRange>,
    /// The common name its client certificate must carry under mutual TLS (the facility's
    /// code when not set).
    pub certificate: Option<String>,
}

/// Every allowed sender, and how much of the quarantine one connection identity may fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Senders {
    pub allowed: Vec<AllowedSender>,
    /// Unresolved quarantined messages kept per connection identity; beyond it a message is
    /// rejected without being stored (and logged), so a flood cannot fill the disk.
    pub quarantine_cap: u64,
}

/// The other end of an MLLP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub address: IpAddr,
    /// The verified client certificate's common name (mutual TLS).
    pub certificate: Option<String>,
}

impl Origin {
    /// What the quarantine records and caps by: the certificate's name when there is one
    /// (addresses change behind NAT), the address otherwise.
    pub fn identity(&self) -> String {
        match &self.certificate {
            Some(name) => format!("cert:{name}"),
            None => canonical(self.address).to_string(),
        }
    }
}

impl Senders {
    /// The facilities this connection may send for.
    pub fn facilities_for(&self, connection: &Origin) -> Vec<&str> {
        self.allowed
            .iter()
            .filter(|s| {
                let address_ok = if s.addresses.is_empty() {
                    connection.certificate.is_some()
                } else {
                    s.addresses.iter().any(|r| r.contains(connection.address))
                };
                let certificate_ok = match &connection.certificate {
                    None => true,
                    Some(name) => s
                        .certificate
                        .as_deref()
                        .unwrap_or(&s.facility)
                        .eq_ignore_ascii_case(name),
                };
                address_ok && certificate_ok
            })
            .map(|s| s.facility.as_str())
            .collect()
    }

    /// `None` when the connection may send for `facility`; otherwise why not (no patient data).
    pub fn refusal(&self, connection: &Origin, facility: &str) -> Option<String> {
        let allowed = self.facilities_for(connection);
        if allowed.is_empty() {
            return Some("this connection is not an allowed sender for any facility".into());
        }
        if facility.is_empty() || allowed.iter().any(|f| f.eq_ignore_ascii_case(facility)) {
            // An unreadable MSH-4 is rejected by the header checks that follow.
            return None;
        }
        Some(format!(
            "this connection may not send for facility '{facility}' (MSH-4)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> AddressRange {
        s.parse().unwrap()
    }

    fn at(addr: &str) -> Origin {
        Origin {
            address: addr.parse().unwrap(),
            certificate: None,
        }
    }

    fn senders() -> Senders {
        Senders {
            allowed: vec![
                AllowedSender {
                    facility: "RXK".into(),
                    addresses: vec![range("10.1.0.0/16"), range("127.0.0.1")],
                    certificate: None,
                },
                AllowedSender {
                    facility: "TAJ".into(),
                    addresses: vec![range("10.2.3.4")],
                    certificate: Some("taj-engine".into()),
                },
            ],
            quarantine_cap: 10,
        }
    }

    #[test]
    fn item1_addresses_and_cidr_blocks() {
        assert!(range("10.1.0.0/16").contains("10.1.255.7".parse().unwrap()));
        assert!(!range("10.1.0.0/16").contains("10.2.0.1".parse().unwrap()));
        assert!(range("127.0.0.1").contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(range("::1").contains("::1".parse().unwrap()));
        assert!(!range("::1").contains("127.0.0.1".parse().unwrap()));
        assert!(range("0.0.0.0/0").contains("192.168.1.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<AddressRange>().is_err());
        assert!("rxk.nhs.uk".parse::<AddressRange>().is_err());
    }

    #[test]
    fn item1_a_connection_speaks_only_for_the_facilities_bound_to_it() {
        let s = senders();
        assert_eq!(s.facilities_for(&at("10.1.9.9")), vec!["RXK"]);
        assert_eq!(s.refusal(&at("10.1.9.9"), "RXK"), None);
        assert!(s.refusal(&at("10.1.9.9"), "TAJ").is_some());
        assert!(s.refusal(&at("192.168.0.1"), "RXK").is_some());
    }

    #[test]
    fn item1_under_mutual_tls_the_certificate_name_must_match_too() {
        let s = senders();
        let taj = |cert: &str| Origin {
            address: "10.2.3.4".parse().unwrap(),
            certificate: Some(cert.into()),
        };
        assert_eq!(s.facilities_for(&taj("taj-engine")), vec!["TAJ"]);
        assert!(s.facilities_for(&taj("RXK")).is_empty());
        assert_eq!(taj("taj-engine").identity(), "cert:taj-engine");
        assert_eq!(at("::ffff:10.1.0.1").identity(), "10.1.0.1");
    }
}
