//! The HL7 v2.4 backfill two trusts would push: the acute trust RXK (ADT, ORU^R01 results,
//! RDE^O11 medication orders, AL1 allergies) and the mental health trust TAJ (ADT, RDE^O11).
//!
//! Each segment ends with `\r`, as on the wire; each message ends with `\n`, so every line of
//! the output is one message starting `MSH|`. `MSH-10` is unique across the whole output
//! (`{facility}{sequence:09}`; the two bad fixture messages have their own ids). A patient's
//! messages come in the order they happened (admission, results and orders, discharge), none
//! later than the start of `today`; patients follow one another.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::catalogue::{self, Analyte, Code, Drug, Panel};
use crate::date::{self, ts, Day, Ts};
use crate::fixtures as f;
use crate::people::{fixture_people, Person, PersonAllergy, Plan, Sex, Trust};
use crate::rng::{Rng, Stream};
use crate::{Options, Summary, SynthError};

/// Where the messages go.
pub(crate) trait Sink {
    fn put(&mut self, message: &str) -> io::Result<()>;
}

impl Sink for String {
    fn put(&mut self, message: &str) -> io::Result<()> {
        self.push_str(message);
        Ok(())
    }
}

pub(crate) struct IoSink<'a>(pub &'a mut dyn io::Write);

impl Sink for IoSink<'_> {
    fn put(&mut self, message: &str) -> io::Result<()> {
        self.0.write_all(message.as_bytes())
    }
}

/// Each message to a function.
pub(crate) struct FnSink<'a>(pub &'a mut dyn FnMut(&str) -> io::Result<()>);

impl Sink for FnSink<'_> {
    fn put(&mut self, message: &str) -> io::Result<()> {
        (self.0)(message)
    }
}

pub(crate) fn generate(
    opts: &Options,
    sink: &mut dyn Sink,
    done: &AtomicUsize,
) -> Result<Summary, SynthError> {
    let plan = Plan::new(opts)?;
    let started = std::time::Instant::now();
    let mut out = Out {
        sink,
        seq: 0,
        visit: 0,
        order: 0,
        messages: 0,
        invalid: 0,
        patients: 0,
    };
    write_fixtures(&mut out, &plan)?;
    for person in plan.people() {
        if person.hospital.is_some() {
            write_random(&mut out, &plan, &person)?;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    let summary = Summary {
        patients: out.patients,
        rows: out.messages,
        rows_without_valid_nhs_number: out.invalid,
    };
    log::info!(
        "HL7 backfill: {} messages for {} patients ({} without a valid NHS number) in {} ms",
        summary.rows,
        summary.patients,
        summary.rows_without_valid_nhs_number,
        started.elapsed().as_millis()
    );
    Ok(summary)
}

/// Escapes HL7 delimiters in free text.
fn esc(text: &str) -> String {
    if !text.contains(['|', '^', '~', '\\', '&']) {
        return text.to_owned();
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => s.push_str("\\E\\"),
            '|' => s.push_str("\\F\\"),
            '^' => s.push_str("\\S\\"),
            '&' => s.push_str("\\T\\"),
            '~' => s.push_str("\\R\\"),
            c => s.push(c),
        }
    }
    s
}

/// One message being built.
struct Msg {
    text: String,
}

impl Msg {
    /// Appends a segment; `fields` are (field number, value), any order; gaps and trailing
    /// empty fields are left out.
    fn seg(&mut self, name: &str, fields: &[(usize, &str)]) {
        let last = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, _)| *i)
            .max()
            .unwrap_or(0);
        self.text.push_str(name);
        for i in 1..=last {
            self.text.push('|');
            if let Some((_, v)) = fields.iter().find(|(n, _)| *n == i) {
                self.text.push_str(v);
            }
        }
        self.text.push('\r');
    }
}

/// Who a message is about, as the trust knows them.
struct Subject<'a> {
    person: &'a Person,
    /// `PID-3` NHS number (may be invalid on purpose).
    nhs: &'a str,
    mrn: String,
    trust: &'a str,
    /// Registered practice (ODS, name), for `PD1-3`.
    practice: Option<(&'a str, &'a str)>,
}

/// A hospital visit.
struct Visit<'a> {
    class: &'a str,
    location: String,
    service: &'a str,
    number: String,
    admit: Ts,
    discharge: Option<Ts>,
}

/// One OBX result.
enum Obx<'a> {
    Numeric(&'a Analyte, f64),
    Coded(Code, Code),
}

struct Out<'s> {
    sink: &'s mut dyn Sink,
    seq: u64,
    visit: u64,
    order: u64,
    messages: usize,
    invalid: usize,
    patients: usize,
}

impl Out<'_> {
    fn next_visit(&mut self) -> String {
        self.visit += 1;
        format!("V{:07}", 1_000_000 + self.visit)
    }

    fn next_order(&mut self) -> u64 {
        self.order += 1;
        2_000_000 + self.order
    }

    /// Starts a message with its MSH; `control` overrides the generated `MSH-10`.
    fn begin(
        &mut self,
        app: &str,
        facility: &str,
        at: Ts,
        kind: &str,
        control: Option<&str>,
    ) -> Msg {
        let control = match control {
            Some(c) => c.to_owned(),
            None => {
                self.seq += 1;
                format!("{facility}{:09}", self.seq)
            }
        };
        let mut m = Msg {
            text: String::with_capacity(512),
        };
        let at = date::hl7_ts(at);
        m.text.push_str("MSH|^~\\&");
        m.seg(
            "",
            &[
                (1, app),
                (2, facility),
                (3, "SCR"),
                (4, "SCR"),
                (5, &at),
                (7, kind),
                (8, &control),
                (9, "P"),
                (10, "2.4"),
            ],
        );
        m
    }

    fn finish(&mut self, mut m: Msg, subject: &Subject<'_>) -> Result<(), SynthError> {
        m.text.push('\n');
        self.messages += 1;
        if !scr_fhir::nhs_number::is_valid(subject.nhs) {
            self.invalid += 1;
        }
        self.sink
            .put(&m.text)
            .map_err(|source| SynthError::Write { source })
    }

    fn pid(&self, m: &mut Msg, s: &Subject<'_>, full: bool) {
        let p = s.person;
        let ids = format!("{}^^^NHS^NH~{}^^^{}^MR", s.nhs, s.mrn, s.trust);
        let family = esc(&p.family.to_uppercase());
        let given = p.given.to_uppercase();
        let dob = date::hl7_date(p.dob);
        if !full {
            let name = format!("{family}^{given}");
            m.seg(
                "PID",
                &[(1, "1"), (3, &ids), (5, &name), (7, &dob), (8, p.sex.hl7())],
            );
            return;
        }
        let name = format!(
            "{family}^{given}^{}^^{}",
            p.middle.unwrap_or("").to_uppercase(),
            p.title.unwrap_or("").to_uppercase()
        );
        let address = format!(
            "{}^^{}^^{}",
            esc(&p.address_line_1.to_uppercase()),
            p.town.to_uppercase(),
            p.postcode
        );
        let phone = p
            .telephone
            .as_deref()
            .or(p.mobile.as_deref())
            .unwrap_or("")
            .replace(' ', "");
        m.seg(
            "PID",
            &[
                (1, "1"),
                (3, &ids),
                (5, &name),
                (7, &dob),
                (8, p.sex.hl7()),
                (11, &address),
                (13, &phone),
            ],
        );
        if let Some((ods, practice)) = s.practice {
            let xon = format!("{}^^{ods}", esc(&practice.to_uppercase()));
            m.seg("PD1", &[(3, &xon)]);
        }
    }

    fn pv1(&self, m: &mut Msg, v: &Visit<'_>) {
        let admit = date::hl7_ts(v.admit);
        let discharge = v.discharge.map(date::hl7_ts).unwrap_or_default();
        m.seg(
            "PV1",
            &[
                (1, "1"),
                (2, v.class),
                (3, &v.location),
                (10, v.service),
                (19, &v.number),
                (44, &admit),
                (45, &discharge),
            ],
        );
    }

    /// ADT^A01 / A04 at admission (with AL1 for the person's active allergies), or A03 at
    /// discharge (`v.discharge` set).
    fn adt(
        &mut self,
        s: &Subject<'_>,
        v: &Visit<'_>,
        event: &str,
        allergies: bool,
        control: Option<&str>,
    ) -> Result<(), SynthError> {
        let at = if event == "A03" {
            v.discharge.unwrap_or(v.admit)
        } else {
            v.admit
        };
        let mut m = self.begin("PAS", s.trust, at, &format!("ADT^{event}"), control);
        let evn = date::hl7_ts(at);
        m.seg("EVN", &[(1, event), (2, &evn)]);
        self.pid(&mut m, s, true);
        self.pv1(&mut m, v);
        if allergies {
            for (i, a) in s
                .person
                .allergies
                .iter()
                .filter(|a| a.status == "active")
                .enumerate()
            {
                let n = (i + 1).to_string();
                let code = format!("{}^{}^SCT", a.def.concept.id, a.def.concept.term);
                let onset = date::hl7_date(a.onset);
                m.seg(
                    "AL1",
                    &[
                        (1, &n),
                        (2, a.def.hl7_type),
                        (3, &code),
                        (4, a.hl7_severity()),
                        (5, a.reaction.term),
                        (6, &onset),
                    ],
                );
            }
        }
        self.finish(m, s)
    }

    /// ORU^R01 reported at `at`: one OBR (specimen taken an hour before) and its OBX results.
    #[expect(
        clippy::too_many_arguments,
        reason = "a result message has this many independent parts"
    )]
    fn oru(
        &mut self,
        s: &Subject<'_>,
        v: Option<&Visit<'_>>,
        test: Code,
        section: &str,
        filler: &str,
        at: Ts,
        results: &[Obx<'_>],
        status: &str,
    ) -> Result<(), SynthError> {
        let mut m = self.begin("LAB", s.trust, at, "ORU^R01", None);
        self.pid(&mut m, s, false);
        if let Some(v) = v {
            self.pv1(&mut m, v);
        }
        let collected = date::hl7_ts(at - 3600);
        let resulted = date::hl7_ts(at - 1800);
        let test = format!("{}^{}^L", test.id, esc(test.term));
        m.seg(
            "OBR",
            &[
                (1, "1"),
                (3, filler),
                (4, &test),
                (7, &collected),
                (24, section),
            ],
        );
        for (i, r) in results.iter().enumerate() {
            let n = (i + 1).to_string();
            match r {
                Obx::Numeric(a, value) => {
                    let id = format!("{}^{}^LN", a.loinc.id, a.loinc.term);
                    let value_s = format_value(*value, a.decimals);
                    let range = format!(
                        "{}-{}",
                        format_value(a.low, a.decimals),
                        format_value(a.high, a.decimals)
                    );
                    let flag = if *value < a.low {
                        "L"
                    } else if *value > a.high {
                        "H"
                    } else {
                        "N"
                    };
                    m.seg(
                        "OBX",
                        &[
                            (1, &n),
                            (2, "NM"),
                            (3, &id),
                            (5, &value_s),
                            (6, a.unit),
                            (7, &range),
                            (8, flag),
                            (11, status),
                            (14, &resulted),
                        ],
                    );
                }
                Obx::Coded(test, value) => {
                    let id = format!("{}^{}^LN", test.id, esc(test.term));
                    let value_s = format!("{}^{}^SCT", value.id, value.term);
                    m.seg(
                        "OBX",
                        &[
                            (1, &n),
                            (2, "CE"),
                            (3, &id),
                            (5, &value_s),
                            (8, "N"),
                            (11, status),
                            (14, &resulted),
                        ],
                    );
                }
            }
        }
        self.finish(m, s)
    }

    /// RDE^O11 sent at `at`: one medication order, placed five minutes before.
    fn rde(
        &mut self,
        s: &Subject<'_>,
        v: Option<&Visit<'_>>,
        drug: &Drug,
        at: Ts,
        control: &str,
    ) -> Result<(), SynthError> {
        let mut m = self.begin("EPMA", s.trust, at, "RDE^O11", None);
        self.pid(&mut m, s, false);
        if let Some(v) = v {
            self.pv1(&mut m, v);
        }
        let placer = format!("RX{}", self.next_order());
        let ordered = date::hl7_ts(at - 300);
        m.seg("ORC", &[(1, control), (2, &placer), (9, &ordered)]);
        let give = format!("{}^{}^DMD", drug.dmd, esc(drug.name));
        m.seg(
            "RXE",
            &[
                (1, "1"),
                (2, &give),
                (3, drug.give_amount),
                (5, drug.unit),
                (7, &esc(drug.dosage)),
            ],
        );
        let route = if drug.unit == "dose" {
            "IH^Inhalation^HL70162"
        } else {
            "PO^Oral^HL70162"
        };
        m.seg("RXR", &[(1, route)]);
        self.finish(m, s)
    }
}

fn format_value(v: f64, decimals: i32) -> String {
    format!("{v:.prec$}", prec = decimals.max(0) as usize)
}

const HOUR: u32 = 3600;

fn write_fixtures(out: &mut Out<'_>, plan: &Plan) -> Result<(), SynthError> {
    let t = plan.today;
    let people = fixture_people();
    let m1 = (f::PRACTICE_HIGH_STREET, f::PRACTICES[0].1);
    let rxk = f::ACUTE_TRUST;

    // Jane Smith at RXK: admitted 20 days ago, results, medicines, discharged 15 days ago.
    let mut jane_person = people.jane.clone();
    jane_person.allergies = vec![PersonAllergy {
        def: catalogue::PENICILLIN_ALLERGY,
        onset: t - 4000,
        severity: Some("severe"),
        reaction: catalogue::ANAPHYLAXIS,
        status: "active",
    }];
    let jane = Subject {
        person: &jane_person,
        nhs: f::JANE_SMITH_NHS,
        mrn: f::JANE_SMITH_RXK_MRN.into(),
        trust: rxk,
        practice: Some(m1),
    };
    let mut visit = Visit {
        class: "I",
        location: format!("WARD 4^BED 2^^{rxk}"),
        service: "300",
        number: f::JANE_SMITH_RXK_VISIT.into(),
        admit: ts(t - f::JANE_SMITH_RXK_ADMITTED_DAYS_AGO, 9 * HOUR + 25 * 60),
        discharge: None,
    };
    out.patients += 1;
    out.adt(&jane, &visit, "A01", true, None)?;
    let ue = [
        Obx::Numeric(&catalogue::SODIUM, 139.0),
        Obx::Numeric(&catalogue::POTASSIUM, 5.9),
    ];
    out.oru(
        &jane,
        Some(&visit),
        catalogue::UE.test,
        "CH",
        f::JANE_SMITH_UE_ORDER,
        ts(t - 19, 12 * HOUR),
        &ue,
        "F",
    )?;
    out.rde(
        &jane,
        Some(&visit),
        &catalogue::PARACETAMOL_500,
        ts(t - 17, 16 * HOUR),
        "NW",
    )?;
    visit.discharge = Some(ts(t - f::JANE_SMITH_RXK_DISCHARGED_DAYS_AGO, 14 * HOUR));
    out.adt(&jane, &visit, "A03", false, None)?;

    // Mohammed Khan at RXK: a cardiology clinic and its results (he objects at the GP).
    let khan = Subject {
        person: &people.khan,
        nhs: f::MOHAMMED_KHAN_NHS,
        mrn: "K1000002".into(),
        trust: rxk,
        practice: Some(m1),
    };
    let visit = Visit {
        class: "O",
        location: format!("OPD 3^^^{rxk}"),
        service: "320",
        number: "V990002".into(),
        admit: ts(t - 40, 10 * HOUR),
        discharge: None,
    };
    out.patients += 1;
    out.adt(&khan, &visit, "A04", true, None)?;
    let ue = [
        Obx::Numeric(&catalogue::SODIUM, 141.0),
        Obx::Numeric(&catalogue::POTASSIUM, 4.4),
        Obx::Numeric(&catalogue::UREA, 6.1),
        Obx::Numeric(&catalogue::CREATININE, 96.0),
    ];
    out.oru(
        &khan,
        Some(&visit),
        catalogue::UE.test,
        "CH",
        "L990002",
        ts(t - 40, 13 * HOUR),
        &ue,
        "F",
    )?;

    // Sam Taylor at RXK: sexual health and fertility results (never shared), and an ED visit.
    let sam = Subject {
        person: &people.sam,
        nhs: f::SAM_TAYLOR_NHS,
        mrn: "K1000004".into(),
        trust: rxk,
        practice: Some(m1),
    };
    out.patients += 1;
    let fert = Visit {
        class: "O",
        location: format!("FERTILITY CLINIC^^^{rxk}"),
        service: "FERT",
        number: f::SAM_TAYLOR_FERT_VISIT.into(),
        admit: ts(t - 60, 9 * HOUR),
        discharge: None,
    };
    out.adt(&sam, &fert, "A04", false, None)?;
    let hormones = [
        Obx::Numeric(&catalogue::FSH, 6.2),
        Obx::Numeric(&catalogue::LH, 4.8),
    ];
    out.oru(
        &sam,
        Some(&fert),
        catalogue::FERTILITY_PANEL.test,
        "CH",
        "L990043",
        ts(t - 60, 15 * HOUR),
        &hormones,
        "F",
    )?;
    let gum = Visit {
        class: "O",
        location: format!("GUM CLINIC^^^{rxk}"),
        service: "GUM",
        number: f::SAM_TAYLOR_GUM_VISIT.into(),
        admit: ts(t - 30, 14 * HOUR),
        discharge: None,
    };
    out.adt(&sam, &gum, "A04", false, None)?;
    let sti = [
        Obx::Coded(catalogue::CHLAMYDIA_NAAT, catalogue::NOT_DETECTED),
        Obx::Coded(catalogue::GONORRHOEA_NAAT, catalogue::NOT_DETECTED),
    ];
    out.oru(
        &sam,
        Some(&gum),
        catalogue::STI_SCREEN,
        "GUM",
        "L990042",
        ts(t - 28, 11 * HOUR),
        &sti,
        "F",
    )?;
    let ed = Visit {
        class: "E",
        location: format!("ED^MAJORS 3^^{rxk}"),
        service: "180",
        number: f::SAM_TAYLOR_ED_VISIT.into(),
        admit: ts(t - 5, 21 * HOUR),
        discharge: None,
    };
    out.adt(&sam, &ed, "A04", false, None)?;
    let fbc = [
        Obx::Numeric(&catalogue::HAEMOGLOBIN, 142.0),
        Obx::Numeric(&catalogue::WHITE_CELLS, 7.9),
        Obx::Numeric(&catalogue::PLATELETS, 268.0),
    ];
    out.oru(
        &sam,
        Some(&ed),
        catalogue::FBC.test,
        "HM",
        "L990044",
        ts(t - 5, 23 * HOUR),
        &fbc,
        "F",
    )?;

    // Oliver White at TAJ: admitted 10 days ago, still an inpatient, on citalopram.
    let taj = f::MENTAL_HEALTH_TRUST;
    let oliver = Subject {
        person: &people.oliver,
        nhs: f::OLIVER_WHITE_NHS,
        mrn: "T1000007".into(),
        trust: taj,
        practice: None,
    };
    let visit = Visit {
        class: "I",
        location: format!("ASH WARD^BED 3^^{taj}"),
        service: "710",
        number: f::OLIVER_WHITE_TAJ_VISIT.into(),
        admit: ts(t - 10, 16 * HOUR),
        discharge: None,
    };
    out.patients += 1;
    out.adt(&oliver, &visit, "A01", false, None)?;
    out.rde(
        &oliver,
        Some(&visit),
        &catalogue::CITALOPRAM_20,
        ts(t - 9, 10 * HOUR),
        "NW",
    )?;

    // An ADT whose only NHS number fails the check (AE), and one from an unknown facility (AR).
    let grace = crate::people::fixture_person(
        21,
        f::INVALID_CHECK_DIGIT_NHS,
        Some("Mrs"),
        "Grace",
        None,
        "Evans",
        Sex::Female,
        "1977-11-23",
        ("5 Elm Grove", "West Bromwich", "B71 4JP"),
    );
    let bad = Subject {
        person: &grace,
        nhs: f::INVALID_CHECK_DIGIT_NHS,
        mrn: "K7654321".into(),
        trust: rxk,
        practice: None,
    };
    let visit = Visit {
        class: "I",
        location: format!("WARD 7^BED 1^^{rxk}"),
        service: "100",
        number: "V990901".into(),
        admit: ts(t - 3, 8 * HOUR),
        discharge: None,
    };
    out.patients += 1;
    out.adt(
        &bad,
        &visit,
        "A01",
        false,
        Some(f::HL7_INVALID_NHS_CONTROL_ID),
    )?;
    let xxx = f::UNKNOWN_FACILITY;
    let unknown = Subject {
        person: &people.jane,
        nhs: f::JANE_SMITH_NHS,
        mrn: "X0000001".into(),
        trust: xxx,
        practice: Some(m1),
    };
    let visit = Visit {
        class: "O",
        location: format!("CLINIC 1^^^{xxx}"),
        service: "300",
        number: "V990902".into(),
        admit: ts(t - 2, 11 * HOUR),
        discharge: None,
    };
    out.adt(
        &unknown,
        &visit,
        "A04",
        false,
        Some(f::HL7_UNKNOWN_FACILITY_CONTROL_ID),
    )
}

/// What kind of hospital contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contact {
    Inpatient,
    Emergency,
    Outpatient,
    SexualHealth,
    MentalHealthWard,
    Community,
}

/// Something that happens during a contact, sent as one message.
enum Event {
    Results {
        test: Code,
        section: &'static str,
        filler: String,
        results: Vec<(Analyte, f64)>,
        status: &'static str,
    },
    SexualHealthScreen {
        filler: String,
    },
    Order(Drug),
}

fn write_random(out: &mut Out<'_>, plan: &Plan, p: &Person) -> Result<(), SynthError> {
    let Some(trust) = p.hospital else {
        return Ok(());
    };
    let t = plan.today;
    let horizon = ts(t, 0);
    let mut rng = Rng::for_patient(plan.seed, p.index, Stream::Hl7);
    let letter = if trust == Trust::Acute { 'K' } else { 'T' };
    let s = Subject {
        person: p,
        nhs: &p.nhs,
        mrn: format!("{letter}{}", 2_000_000 + p.index),
        trust: trust.ods(),
        practice: Some(plan.practice(p.practice)),
    };
    out.patients += 1;
    let age = p.age(t);
    let first_day = (p.dob + 1).max(t - 730).min(t - 1);
    let contacts = *rng.weighted(&[(700, 1usize), (300, 2)]);
    let mut starts: Vec<Day> = (0..contacts).map(|_| rng.range(first_day, t - 1)).collect();
    starts.sort_unstable();
    let mut clock: Ts = 0;
    for start in starts {
        let contact = match trust {
            Trust::Acute if age >= 16 && rng.chance(10) => Contact::SexualHealth,
            Trust::Acute => *rng.weighted(&[
                (350, Contact::Inpatient),
                (350, Contact::Emergency),
                (300, Contact::Outpatient),
            ]),
            Trust::MentalHealth => {
                *rng.weighted(&[(400, Contact::MentalHealthWard), (600, Contact::Community)])
            }
        };
        let number = out.next_visit();
        let (class, location, service, stay) = match contact {
            Contact::Inpatient => {
                let (service, ward) = if age < 16 {
                    ("420", "WARD 20")
                } else if age >= 80 && rng.chance(500) {
                    ("430", "WARD 15")
                } else {
                    *rng.pick(&catalogue::ACUTE_SERVICES)
                };
                (
                    "I",
                    format!("{ward}^BED {}^^{}", rng.range(1, 28), s.trust),
                    service,
                    rng.range(1, 10),
                )
            }
            Contact::Emergency => (
                "E",
                format!("ED^MAJORS {}^^{}", rng.range(1, 20), s.trust),
                "180",
                0,
            ),
            Contact::Outpatient => {
                let service = *rng.pick(&["320", "340", "110", "300", "100"]);
                (
                    "O",
                    format!("OPD {}^^^{}", rng.range(1, 6), s.trust),
                    service,
                    0,
                )
            }
            Contact::SexualHealth => ("O", format!("GUM CLINIC^^^{}", s.trust), "GUM", 0),
            Contact::MentalHealthWard => {
                let ward = *rng.pick(&["ASH WARD", "BIRCH WARD", "CEDAR WARD"]);
                (
                    "I",
                    format!("{ward}^BED {}^^{}", rng.range(1, 18), s.trust),
                    "710",
                    rng.range(7, 40),
                )
            }
            Contact::Community => ("O", format!("CMHT^^^{}", s.trust), "710", 0),
        };
        // Contacts never overlap: a second one starts after the first is over.
        let admit = ts(
            start,
            rng.range(7, 19) as u32 * HOUR + rng.below(3600) as u32,
        )
        .max(clock + 3600);
        if admit >= horizon - 3600 {
            break;
        }
        let discharge = if stay == 0 {
            admit + rng.range(2, 6) * 3600
        } else {
            ts(
                admit.div_euclid(86_400) + stay,
                rng.range(10, 18) as u32 * HOUR,
            )
        };
        let mut visit = Visit {
            class,
            location,
            service,
            number,
            admit,
            discharge: None,
        };

        // What happens during the contact, in order.
        let mut events: Vec<Event> = Vec::new();
        let result_count = match contact {
            Contact::Inpatient => rng.range(1, 3),
            Contact::Emergency => rng.range(1, 2),
            Contact::Outpatient => rng.range(0, 1),
            Contact::SexualHealth => 1,
            Contact::MentalHealthWard | Contact::Community => 0,
        };
        for _ in 0..result_count {
            let filler = format!("L{}", out.next_order());
            if contact == Contact::SexualHealth {
                events.push(Event::SexualHealthScreen { filler });
                continue;
            }
            let panel: Panel = *rng.pick(&catalogue::ROUTINE_PANELS);
            let results: Vec<(Analyte, f64)> = panel
                .analytes
                .iter()
                .map(|a| (*a, rng.real(a.min, a.max, a.decimals)))
                .collect();
            let first = results[0].0;
            events.push(Event::Results {
                test: panel.test,
                section: panel.section,
                filler: filler.clone(),
                results,
                status: "F",
            });
            if rng.chance(30) {
                // The laboratory corrects the first result of the panel.
                let corrected = vec![(first, rng.real(first.min, first.max, first.decimals))];
                events.push(Event::Results {
                    test: panel.test,
                    section: panel.section,
                    filler,
                    results: corrected,
                    status: "C",
                });
            }
        }
        let orders = match contact {
            Contact::Inpatient => rng.range(0, 2),
            Contact::Emergency | Contact::Outpatient => rng.range(0, 1),
            Contact::SexualHealth => 0,
            Contact::MentalHealthWard | Contact::Community => 1,
        };
        for _ in 0..orders {
            let drug = if trust == Trust::MentalHealth {
                catalogue::CITALOPRAM_20
            } else {
                let mut options: Vec<Drug> = p
                    .conditions
                    .iter()
                    .flat_map(|c| c.repeat_drugs().iter().copied())
                    .collect();
                options.push(catalogue::PARACETAMOL_500);
                if !p.has_penicillin_allergy() {
                    options.push(catalogue::AMOXICILLIN_500);
                }
                *rng.pick(&options)
            };
            events.push(Event::Order(drug));
        }

        let event = if class == "I" { "A01" } else { "A04" };
        out.adt(&s, &visit, event, contact != Contact::SexualHealth, None)?;
        // Events spread evenly between admission and discharge (or the start of today).
        let end = discharge.min(horizon - 60);
        let n = events.len() as i64;
        for (i, e) in events.iter().enumerate() {
            let at = admit + (end - admit) * (i as i64 + 1) / (n + 1);
            match e {
                Event::Results {
                    test,
                    section,
                    filler,
                    results,
                    status,
                } => {
                    let obx: Vec<Obx<'_>> =
                        results.iter().map(|(a, v)| Obx::Numeric(a, *v)).collect();
                    out.oru(&s, Some(&visit), *test, section, filler, at, &obx, status)?;
                }
                Event::SexualHealthScreen { filler } => {
                    let sti = [
                        Obx::Coded(catalogue::CHLAMYDIA_NAAT, catalogue::NOT_DETECTED),
                        Obx::Coded(catalogue::GONORRHOEA_NAAT, catalogue::NOT_DETECTED),
                    ];
                    out.oru(
                        &s,
                        Some(&visit),
                        catalogue::STI_SCREEN,
                        "MB",
                        filler,
                        at,
                        &sti,
                        "F",
                    )?;
                }
                Event::Order(drug) => out.rde(&s, Some(&visit), drug, at, "NW")?,
            }
        }
        clock = end;
        if discharge < horizon {
            visit.discharge = Some(discharge);
            out.adt(&s, &visit, "A03", false, None)?;
        } else {
            // Still in: no later contact.
            break;
        }
    }
    Ok(())
}
