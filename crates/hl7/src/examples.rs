//! The three example messages of `specs/hl7v2-acute.md`, segments ended by `\r` as on the wire.

pub const ADT_A01: &str = "MSH|^~\\&|PAS|RXK|SCR|SCR|20261101093000||ADT^A01|RXK000123|P|2.4\r\
EVN|A01|20261101093000\r\
PID|1||9990000018^^^NHS^NH~K1234567^^^RXK^MR||SMITH^JANE^ANN^^MRS||19700102|F|||1 HIGH STREET^^WEST BROMWICH^^B70 1AA||07700900123\r\
PD1|||HIGH STREET SURGERY^^M85001\r\
PV1|1|I|WARD 4^BED 2^^RXK||||||||||||||||V998877|||||||||||||||||||||||||20261101092500\r\
AL1|1|DA|91936005^Allergy to penicillin^SCT|SV|Anaphylaxis|20150610\r";

pub const ORU_R01: &str = "MSH|^~\\&|LAB|RXK|SCR|SCR|20261101120000||ORU^R01|RXK000124|P|2.4\r\
PID|1||9990000018^^^NHS^NH||SMITH^JANE||19700102|F\r\
OBR|1||L556677|UE^Urea and electrolytes^L|||20261101110000|||||||||||||||||CH\r\
OBX|1|NM|2951-2^Sodium^LN||139|mmol/L|133-146|N|||F|||20261101113000\r\
OBX|2|NM|2823-3^Potassium^LN||5.9|mmol/L|3.5-5.3|H|||F|||20261101113000\r";

pub const RDE_O11: &str = "MSH|^~\\&|EPMA|RXK|SCR|SCR|20261103160000||RDE^O11|RXK000125|P|2.4\r\
PID|1||9990000018^^^NHS^NH||SMITH^JANE||19700102|F\r\
ORC|NW|RX778899|||||||20261103155500\r\
RXE|1|322236009^Paracetamol 500mg tablets^DMD|2||tablet||Two tablets up to four times a day when required\r";

/// `raw` with field `n` of the first `segment` (not MSH) set to `value`, padding with empty
/// fields as needed.
pub fn with_field(raw: &str, segment: &str, n: usize, value: &str) -> String {
    let mut done = false;
    raw.split('\r')
        .map(|line| {
            if done || !line.starts_with(&format!("{segment}|")) {
                return line.to_owned();
            }
            done = true;
            let mut fields: Vec<String> = line.split('|').map(str::to_owned).collect();
            if fields.len() <= n {
                fields.resize(n + 1, String::new());
            }
            fields[n] = value.to_owned();
            fields.join("|")
        })
        .collect::<Vec<_>>()
        .join("\r")
}
