//! A small HL7 v2 parser: enough of the ER7 encoding for the messages the feed accepts.
//!
//! Segments end at `\r` or `\n`; fields are separated by `|`, repetitions by `~`, components by
//! `^`, subcomponents by `&` (or whatever MSH-1 and MSH-2 declare), and the escape sequences
//! `\F\ \S\ \T\ \R\ \E\` (and `\.br\`, a line break) are decoded in every value. MSH is special:
//! MSH-1 is the field separator itself and MSH-2 the encoding characters, kept verbatim.
//!
//! Positions are 1-based as in the standard: `seg.field(3)` is `PID-3`, `component(1)` the first
//! component. Absent positions read as empty strings.

use std::fmt;

/// Why a text is not an HL7 v2 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("the message is empty")]
    Empty,
    #[error("the message does not start with an MSH segment")]
    NoMsh,
    #[error("MSH-1/MSH-2 do not declare the field separator and encoding characters")]
    BadEncodingCharacters,
    #[error("segment {line} has no valid segment id: {id:?}")]
    BadSegmentId { line: usize, id: String },
}

/// The separators a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: Option<char>,
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
        }
    }
}

/// One repetition of a field: components of subcomponents, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repetition {
    components: Vec<Vec<String>>,
}

impl Repetition {
    /// Component `n` (1-based), its first subcomponent; empty when absent.
    pub fn component(&self, n: usize) -> &str {
        self.subcomponent(n, 1)
    }

    /// Subcomponent `s` of component `n` (both 1-based); empty when absent.
    pub fn subcomponent(&self, n: usize, s: usize) -> &str {
        n.checked_sub(1)
            .and_then(|i| self.components.get(i))
            .and_then(|c| s.checked_sub(1).and_then(|j| c.get(j)))
            .map_or("", String::as_str)
    }

    /// True when every component is empty.
    pub fn is_empty(&self) -> bool {
        self.components.iter().flatten().all(String::is_empty)
    }
}

/// One field: its repetitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field {
    repetitions: Vec<Repetition>,
}

impl Field {
    pub fn repetitions(&self) -> &[Repetition] {
        &self.repetitions
    }

    /// The first repetition (an empty one when the field is empty).
    pub fn first(&self) -> &Repetition {
        static EMPTY: Repetition = Repetition {
            components: Vec::new(),
        };
        self.repetitions.first().unwrap_or(&EMPTY)
    }

    /// Component `n` of the first repetition.
    pub fn component(&self, n: usize) -> &str {
        self.first().component(n)
    }

    /// The first component of the first repetition: the value of a simple field.
    pub fn value(&self) -> &str {
        self.component(1)
    }

    pub fn is_empty(&self) -> bool {
        self.repetitions.iter().all(Repetition::is_empty)
    }
}

/// One segment: its id and fields, indexed so that `field(n)` is `SEG-n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    id: String,
    /// `fields[0]` is unused (the segment id); for MSH, `fields[1]` is MSH-1.
    fields: Vec<Field>,
}

impl Segment {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Field `n` (1-based); an empty field when absent.
    pub fn field(&self, n: usize) -> &Field {
        static EMPTY: Field = Field {
            repetitions: Vec::new(),
        };
        if n == 0 {
            return &EMPTY;
        }
        self.fields.get(n).unwrap_or(&EMPTY)
    }

    /// The value of field `n`: its first repetition's first component.
    pub fn get(&self, n: usize) -> &str {
        self.field(n).value()
    }

    /// Component `c` of the first repetition of field `n`.
    pub fn component(&self, n: usize, c: usize) -> &str {
        self.field(n).component(c)
    }

    /// Every repetition of field `n`.
    pub fn repetitions(&self, n: usize) -> &[Repetition] {
        self.field(n).repetitions()
    }

    /// The number of fields present (the highest position).
    pub fn len(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed message: its segments in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    delimiters: Delimiters,
    segments: Vec<Segment>,
}

impl Message {
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The MSH segment (always present in a parsed message).
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Every segment with this id, in order (repeating segments: OBX, AL1, ...).
    pub fn segments_named<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// The value of `SEG-n` in the first segment `id`: `msg.get("PID", 3)`. Empty when absent.
    pub fn get(&self, id: &str, n: usize) -> &str {
        self.segment(id).map_or("", |s| s.get(n))
    }

    /// Component `c` of `SEG-n` in the first segment `id`: `msg.component("MSH", 9, 2)`.
    pub fn component(&self, id: &str, n: usize, c: usize) -> &str {
        self.segment(id).map_or("", |s| s.component(n, c))
    }
}

impl fmt::Display for Message {
    /// A short description for logs: type and control id only, never patient data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msh = self.msh();
        write!(
            f,
            "{}^{} {}",
            msh.component(9, 1),
            msh.component(9, 2),
            msh.get(10)
        )
    }
}

/// Parses one message. Segment terminators may be `\r`, `\n` or `\r\n`; blank lines are skipped.
pub fn parse(raw: &str) -> Result<Message, ParseError> {
    let mut lines = raw
        .split(['\r', '\n'])
        .map(|l| l.trim_end_matches(' '))
        .filter(|l| !l.trim().is_empty());
    let first = lines.next().ok_or(ParseError::Empty)?;
    let first =
        first.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{b}' || c == '\u{feff}');
    if !first.starts_with("MSH") {
        return Err(ParseError::NoMsh);
    }
    let delimiters = delimiters(first)?;
    let mut segments = vec![parse_msh(first, &delimiters)];
    for (i, line) in lines.enumerate() {
        let line = line.trim_end_matches('\u{1c}');
        if line.is_empty() {
            continue;
        }
        segments.push(parse_segment(line, &delimiters, i + 2)?);
    }
    Ok(Message {
        delimiters,
        segments,
    })
}

fn delimiters(msh: &str) -> Result<Delimiters, ParseError> {
    let mut chars = msh.chars().skip(3);
    let field = chars.next().ok_or(ParseError::BadEncodingCharacters)?;
    let encoding: Vec<char> = chars.take_while(|c| *c != field).collect();
    if field.is_alphanumeric() || field.is_whitespace() || encoding.len() < 3 || encoding.len() > 4
    {
        return Err(ParseError::BadEncodingCharacters);
    }
    let d = Delimiters {
        field,
        component: encoding[0],
        repetition: encoding[1],
        escape: Some(encoding[2]).filter(|_| encoding.len() == 4),
        subcomponent: if encoding.len() == 4 {
            encoding[3]
        } else {
            encoding[2]
        },
    };
    let all = [d.field, d.component, d.repetition, d.subcomponent];
    let distinct = all
        .iter()
        .enumerate()
        .all(|(i, a)| all[i + 1..].iter().all(|b| a != b) && Some(*a) != d.escape);
    if !distinct
        || encoding
            .iter()
            .any(|c| c.is_alphanumeric() || c.is_whitespace())
    {
        return Err(ParseError::BadEncodingCharacters);
    }
    Ok(d)
}

fn parse_msh(line: &str, d: &Delimiters) -> Segment {
    // "MSH|^~\&|PAS|..." -> ["MSH", "^~\&", "PAS", ...]: MSH-2 is parts[1], MSH-n is parts[n-1].
    let parts: Vec<&str> = line.split(d.field).collect();
    let mut fields = Vec::with_capacity(parts.len() + 1);
    fields.push(Field::default());
    fields.push(verbatim(&d.field.to_string()));
    fields.push(verbatim(parts.get(1).copied().unwrap_or_default()));
    fields.extend(parts.iter().skip(2).map(|p| parse_field(p, d)));
    Segment {
        id: "MSH".into(),
        fields,
    }
}

fn verbatim(value: &str) -> Field {
    Field {
        repetitions: vec![Repetition {
            components: vec![vec![value.to_owned()]],
        }],
    }
}

fn parse_segment(line: &str, d: &Delimiters, line_no: usize) -> Result<Segment, ParseError> {
    let mut parts = line.split(d.field);
    let id = parts.next().unwrap_or_default();
    let valid_id = id.len() == 3
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && id.as_bytes()[0].is_ascii_uppercase();
    if !valid_id {
        return Err(ParseError::BadSegmentId {
            line: line_no,
            id: id.chars().take(10).collect(),
        });
    }
    let mut fields = vec![Field::default()];
    fields.extend(parts.map(|p| parse_field(p, d)));
    Ok(Segment {
        id: id.to_owned(),
        fields,
    })
}

fn parse_field(raw: &str, d: &Delimiters) -> Field {
    if raw.is_empty() {
        return Field::default();
    }
    let repetitions = raw
        .split(d.repetition)
        .map(|rep| Repetition {
            components: rep
                .split(d.component)
                .map(|c| c.split(d.subcomponent).map(|s| unescape(s, d)).collect())
                .collect(),
        })
        .collect();
    Field { repetitions }
}

/// Decodes the escape sequences of one value. Unknown sequences are kept as written.
pub fn unescape(value: &str, d: &Delimiters) -> String {
    let Some(esc) = d.escape else {
        return value.to_owned();
    };
    if !value.contains(esc) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(esc),
            ".br" => out.push('\n'),
            _ => {
                out.push(esc);
                out.push_str(seq);
                out.push(esc);
            }
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Encodes a value for writing into a message with the standard delimiters.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\r' | '\n' => out.push_str("\\.br\\"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{ADT_A01, ORU_R01, RDE_O11};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn parses_the_adt_example_with_repeating_identifiers() -> TestResult {
        let m = parse(ADT_A01)?;
        assert_eq!(m.get("MSH", 1), "|");
        assert_eq!(m.get("MSH", 2), "^~\\&");
        assert_eq!(m.get("MSH", 4), "RXK");
        assert_eq!(m.component("MSH", 9, 1), "ADT");
        assert_eq!(m.component("MSH", 9, 2), "A01");
        assert_eq!(m.get("MSH", 10), "RXK000123");
        assert_eq!(m.get("MSH", 12), "2.4");
        let pid = m.segment("PID").ok_or("no PID")?;
        let ids = pid.repetitions(3);
        assert_eq!(ids.len(), 2);
        assert_eq!(
            (
                ids[0].component(1),
                ids[0].component(4),
                ids[0].component(5)
            ),
            ("9990000018", "NHS", "NH")
        );
        assert_eq!(
            (ids[1].component(1), ids[1].component(5)),
            ("K1234567", "MR")
        );
        assert_eq!(pid.component(5, 1), "SMITH");
        assert_eq!(pid.component(5, 5), "MRS");
        assert_eq!(pid.get(7), "19700102");
        assert_eq!(pid.component(11, 3), "WEST BROMWICH");
        assert_eq!(pid.get(13), "07700900123");
        assert_eq!(m.component("PD1", 3, 3), "M85001");
        let pv1 = m.segment("PV1").ok_or("no PV1")?;
        assert_eq!(
            (pv1.get(2), pv1.get(19), pv1.get(44)),
            ("I", "V998877", "20261101092500")
        );
        assert_eq!(m.component("AL1", 3, 2), "Allergy to penicillin");
        assert_eq!(m.to_string(), "ADT^A01 RXK000123");
        Ok(())
    }

    #[test]
    fn parses_repeating_result_segments_in_order() -> TestResult {
        let m = parse(ORU_R01)?;
        let obx: Vec<&Segment> = m.segments_named("OBX").collect();
        assert_eq!(obx.len(), 2);
        assert_eq!(obx[1].component(3, 1), "2823-3");
        assert_eq!(obx[1].get(5), "5.9");
        assert_eq!(obx[1].get(7), "3.5-5.3");
        assert_eq!(obx[1].get(11), "F");
        assert_eq!(m.get("OBR", 3), "L556677");
        assert_eq!(m.get("OBR", 24), "CH");
        let ids: Vec<&str> = m.segments().iter().map(Segment::id).collect();
        assert_eq!(ids, ["MSH", "PID", "OBR", "OBX", "OBX"]);
        Ok(())
    }

    #[test]
    fn parses_the_medication_example() -> TestResult {
        let m = parse(RDE_O11)?;
        assert_eq!(m.get("ORC", 1), "NW");
        assert_eq!(m.get("ORC", 2), "RX778899");
        assert_eq!(m.component("RXE", 2, 3), "DMD");
        assert_eq!(
            m.get("RXE", 7),
            "Two tablets up to four times a day when required"
        );
        Ok(())
    }

    #[test]
    fn escape_sequences_and_subcomponents_are_decoded() -> TestResult {
        let m =
            parse("MSH|^~\\&|A|B\rNTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X41\\|x&y^z~w")?;
        let nte = m.segment("NTE").ok_or("no NTE")?;
        assert_eq!(nte.get(3), "a|b^c&d~e\\f\ng\\X41\\");
        assert_eq!(nte.field(4).first().subcomponent(1, 2), "y");
        assert_eq!(nte.component(4, 2), "z");
        assert_eq!(nte.repetitions(4)[1].component(1), "w");
        assert_eq!(
            unescape(&escape("a|b^c&d~e\\f"), &Delimiters::default()),
            "a|b^c&d~e\\f"
        );
        Ok(())
    }

    #[test]
    fn line_feeds_and_crlf_end_segments_too() -> TestResult {
        let m = parse("MSH|^~\\&|A|B\r\nPID|1||X\n\nPV1|1|I\r")?;
        assert_eq!(m.segments().len(), 3);
        assert_eq!(m.get("PV1", 2), "I");
        assert_eq!(m.get("PID", 99), "");
        assert_eq!(m.get("ZZZ", 1), "");
        Ok(())
    }

    #[test]
    fn non_messages_are_refused() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("\r\n"), Err(ParseError::Empty));
        assert_eq!(parse("hello world"), Err(ParseError::NoMsh));
        assert_eq!(parse("MSH"), Err(ParseError::BadEncodingCharacters));
        assert_eq!(parse("MSH|^~|A"), Err(ParseError::BadEncodingCharacters));
        assert!(matches!(
            parse("MSH|^~\\&|A\rthis is not a segment"),
            Err(ParseError::BadSegmentId { line: 2, .. })
        ));
    }
}
