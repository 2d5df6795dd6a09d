//! The people behind the data. Every random person is drawn from its own stream
//! (`seed`, index), so the GP, social care and HL7 generators, run separately, agree on who
//! exists, their NHS number, name, date of birth, address, conditions and allergies.

use std::sync::OnceLock;

use scr_fhir::nhs_number::with_check_digit;

use crate::catalogue::{self, AllergyDef, Code, Condition};
use crate::date::{self, Day};
use crate::rng::{Rng, Stream};
use crate::{fixtures, Options, SynthError};

/// The first nine-digit stem used for random patients (fixtures live below it).
pub(crate) const FIRST_RANDOM_STEM: u32 = 999_100_000;
const LAST_STEM: u32 = 999_999_999;
/// After the upper range runs out, random patients continue here: above every fixture stem.
const WRAP_STEM: u32 = 999_000_100;
const WRAP_END: u32 = FIRST_RANDOM_STEM - 1;

/// Valid test NHS numbers (999 prefix, Modulus 11) available to random patients.
pub fn max_random_patients() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| NhsNumbers::new().count())
}

/// The random patients' NHS numbers, in order: stems 999100000..=999999999, then
/// 999000100..=999099999, each completed with its check digit; stems without one are skipped.
#[derive(Debug, Clone)]
pub(crate) struct NhsNumbers {
    next: u32,
    end: u32,
    wrapped: bool,
}

impl NhsNumbers {
    pub(crate) fn new() -> NhsNumbers {
        NhsNumbers {
            next: FIRST_RANDOM_STEM,
            end: LAST_STEM,
            wrapped: false,
        }
    }
}

impl Iterator for NhsNumbers {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if self.next > self.end {
                if self.wrapped {
                    return None;
                }
                self.wrapped = true;
                self.next = WRAP_STEM;
                self.end = WRAP_END;
            }
            let stem = self.next;
            self.next += 1;
            if let Some(number) = with_check_digit(&stem.to_string()) {
                return Some(number);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sex {
    Male,
    Female,
    /// Gender other than male or female (GP `U`, HL7 `O`, social care `Other`).
    Other,
}

impl Sex {
    pub(crate) fn gp(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
            Sex::Other => "U",
        }
    }
    pub(crate) fn hl7(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
            Sex::Other => "O",
        }
    }
    pub(crate) fn social_care(self) -> &'static str {
        match self {
            Sex::Male => "Male",
            Sex::Female => "Female",
            Sex::Other => "Other",
        }
    }
}

/// Which trust holds hospital data about the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// The acute trust.
    Acute,
    /// The mental health trust.
    MentalHealth,
}

impl Trust {
    pub(crate) fn ods(self) -> &'static str {
        match self {
            Trust::Acute => fixtures::ACUTE_TRUST,
            Trust::MentalHealth => fixtures::MENTAL_HEALTH_TRUST,
        }
    }
}

/// An allergy the person has, known to the GP and told to the hospital.
#[derive(Debug, Clone)]
pub(crate) struct PersonAllergy {
    pub def: AllergyDef,
    pub onset: Day,
    pub severity: Option<&'static str>,
    pub reaction: Code,
    pub status: &'static str,
}

impl PersonAllergy {
    /// HL7 `AL1-4`.
    pub(crate) fn hl7_severity(&self) -> &'static str {
        match self.severity {
            Some("severe") => "SV",
            Some("moderate") => "MO",
            _ => "MI",
        }
    }
}

/// One person as every source knows them.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    /// Random patients: 0.. in order; fixtures: `usize::MAX - n`.
    pub index: usize,
    pub nhs: String,
    pub title: Option<&'static str>,
    pub given: &'static str,
    pub middle: Option<&'static str>,
    pub family: &'static str,
    pub sex: Sex,
    pub dob: Day,
    pub address_line_1: String,
    pub town: &'static str,
    pub postcode: String,
    pub telephone: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    /// ISO 639-1 code and English name.
    pub language: (&'static str, &'static str),
    pub interpreter: bool,
    /// Index into the practice list.
    pub practice: usize,
    pub registration_start: Day,
    pub conditions: Vec<Condition>,
    pub allergies: Vec<PersonAllergy>,
    pub objector: bool,
    pub social_care: bool,
    pub hospital: Option<Trust>,
}

impl Person {
    pub(crate) fn age(&self, on: Day) -> i64 {
        date::age(self.dob, on)
    }

    pub(crate) fn has_penicillin_allergy(&self) -> bool {
        self.allergies.iter().any(|a| a.def.penicillin)
    }
}

/// Validated options with `today` parsed.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub today: Day,
    pub seed: u64,
    pub patients: usize,
    /// Practices random patients register with: (ODS, name).
    pub practices: Vec<(String, String)>,
    /// Every practice written to `organisation`: the options' practices plus the fixtures'.
    pub organisations: Vec<(String, String)>,
}

impl Plan {
    pub(crate) fn new(opts: &Options) -> Result<Plan, SynthError> {
        let today = date::parse(&opts.today).ok_or_else(|| SynthError::InvalidToday {
            value: opts.today.clone(),
        })?;
        if opts.patients > 0 {
            if opts.practices.is_empty() {
                return Err(SynthError::NoPractices);
            }
            let max = max_random_patients();
            if opts.patients > max {
                return Err(SynthError::TooManyPatients {
                    requested: opts.patients,
                    max,
                });
            }
        }
        let mut organisations: Vec<(String, String)> = Vec::new();
        for (ods, name) in &opts.practices {
            if organisations.iter().any(|(o, _)| o == ods) {
                return Err(SynthError::DuplicatePractice { ods: ods.clone() });
            }
            organisations.push((ods.clone(), name.clone()));
        }
        for (ods, name) in fixtures::PRACTICES {
            if !organisations.iter().any(|(o, _)| o == ods) {
                organisations.push((ods.to_owned(), name.to_owned()));
            }
        }
        Ok(Plan {
            today,
            seed: opts.seed,
            patients: opts.patients,
            practices: opts.practices.clone(),
            organisations,
        })
    }

    /// The random people, in index order.
    pub(crate) fn people(&self) -> impl Iterator<Item = Person> + '_ {
        NhsNumbers::new()
            .take(self.patients)
            .enumerate()
            .map(move |(index, nhs)| self.person(index, nhs))
    }

    fn person(&self, index: usize, nhs: String) -> Person {
        let today = self.today;
        let mut rng = Rng::for_patient(self.seed, index, Stream::Person);
        let sex = if rng.chance(490) {
            Sex::Male
        } else {
            Sex::Female
        };
        let age = rng.range(0, 95);
        let dob = today - age * 365 - age / 4 - rng.range(1, 364);
        let age = date::age(dob, today);
        let given_names: &[&'static str] = if sex == Sex::Male {
            &catalogue::MALE_NAMES
        } else {
            &catalogue::FEMALE_NAMES
        };
        let given = *rng.pick(given_names);
        let middle = rng
            .chance(400)
            .then(|| *rng.pick(given_names))
            .filter(|m| *m != given);
        let family = *rng.pick(&catalogue::SURNAMES);
        let title = match (sex, age) {
            (_, a) if a < 16 => None,
            (_, _) if rng.chance(10) => Some("Dr"),
            (Sex::Male, _) => Some("Mr"),
            _ => Some(*rng.pick(&["Mrs", "Ms", "Miss"])),
        };
        let (district, town) = *rng.pick(&catalogue::DISTRICTS);
        let letters = catalogue::POSTCODE_LETTERS;
        let postcode = format!(
            "{district} {}{}{}",
            rng.range(1, 9),
            letters[rng.below(letters.len())] as char,
            letters[rng.below(letters.len())] as char
        );
        let address_line_1 = format!("{} {}", rng.range(1, 250), rng.pick(&catalogue::STREETS));
        let telephone = rng
            .chance(450)
            .then(|| format!("0121 496 0{:03}", rng.below(1000)));
        let mobile =
            (age >= 12 && rng.chance(800)).then(|| format!("07700 900{:03}", rng.below(1000)));
        let email = (age >= 16 && rng.chance(400)).then(|| {
            let clean = |s: &str| s.to_ascii_lowercase().replace('\'', "");
            format!(
                "{}.{}{}@example.com",
                clean(given),
                clean(family),
                rng.below(100)
            )
        });
        let language = *rng.weighted(&catalogue::LANGUAGES);
        let interpreter = language.0 != "en" && rng.chance(500);
        let practice = rng.below(self.practices.len().max(1));
        let registration_start = if age < 1 {
            (dob + rng.range(7, 28)).min(today - 1)
        } else {
            let earliest = (today - dob - 30).min(30 * 365);
            (today - rng.range(30, earliest.max(30))).max(dob + 7)
        };
        let conditions: Vec<Condition> = Condition::ALL
            .iter()
            .copied()
            .filter(|c| rng.chance(c.per_mille(age)))
            .collect();
        let allergy_count = *rng.weighted(&[(600, 0usize), (250, 1), (100, 2), (50, 3)]);
        let mut allergies: Vec<PersonAllergy> = Vec::new();
        while allergies.len() < allergy_count {
            let def = *rng.pick(&catalogue::ALLERGIES);
            if allergies.iter().any(|a| a.def.concept.id == def.concept.id) {
                continue;
            }
            allergies.push(random_allergy(&mut rng, def, dob, today));
        }
        let objector = rng.chance(10);
        let social_care = rng.chance(100);
        let hospital = rng.chance(300).then(|| {
            if age >= 16 && rng.chance(150) {
                Trust::MentalHealth
            } else {
                Trust::Acute
            }
        });
        Person {
            index,
            nhs,
            title,
            given,
            middle,
            family,
            sex,
            dob,
            address_line_1,
            town,
            postcode,
            telephone,
            mobile,
            email,
            language,
            interpreter,
            practice,
            registration_start,
            conditions,
            allergies,
            objector,
            social_care,
            hospital,
        }
    }

    /// Name of practice `i` in the organisation list.
    pub(crate) fn practice(&self, i: usize) -> (&str, &str) {
        let (ods, name) = &self.practices[i];
        (ods, name)
    }
}

fn random_allergy(rng: &mut Rng, def: AllergyDef, dob: Day, today: Day) -> PersonAllergy {
    let onset = rng.range((dob + 180).min(today - 1), today - 1);
    let severity = *rng.weighted(&[
        (450, Some("mild")),
        (350, Some("moderate")),
        (100, Some("severe")),
        (100, None),
    ]);
    let reaction = if severity == Some("severe") && rng.chance(500) {
        catalogue::ANAPHYLAXIS
    } else {
        catalogue::REACTIONS[1 + rng.below(catalogue::REACTIONS.len() - 1)]
    };
    let status = *rng.weighted(&[(900, "active"), (50, "inactive"), (50, "resolved")]);
    PersonAllergy {
        def,
        onset,
        severity,
        reaction,
        status,
    }
}

/// A fixture person with no random parts; the caller fills in the rest.
#[expect(
    clippy::too_many_arguments,
    reason = "a table of fixture people reads best as one call per person"
)]
pub(crate) fn fixture_person(
    slot: usize,
    nhs: &str,
    title: Option<&'static str>,
    given: &'static str,
    middle: Option<&'static str>,
    family: &'static str,
    sex: Sex,
    dob: &str,
    address: (&str, &'static str, &str),
) -> Person {
    let dob = date::parse(dob).unwrap_or_default();
    Person {
        index: usize::MAX - slot,
        nhs: nhs.to_owned(),
        title,
        given,
        middle,
        family,
        sex,
        dob,
        address_line_1: address.0.to_owned(),
        town: address.1,
        postcode: address.2.to_owned(),
        telephone: None,
        mobile: None,
        email: None,
        language: ("en", "English"),
        interpreter: false,
        practice: 0,
        registration_start: dob,
        conditions: Vec::new(),
        allergies: Vec::new(),
        objector: false,
        social_care: false,
        hospital: None,
    }
}

/// The fixture people (demographics only: each generator writes their records by hand).
pub(crate) struct FixturePeople {
    pub jane: Person,
    pub khan: Person,
    pub amelia: Person,
    pub sam: Person,
    pub peter: Person,
    pub linda: Person,
    pub oliver: Person,
}

pub(crate) fn fixture_people() -> FixturePeople {
    use fixtures as f;
    let mut jane = fixture_person(
        1,
        f::JANE_SMITH_NHS,
        Some("Mrs"),
        "Jane",
        Some("Ann"),
        "Smith",
        Sex::Female,
        "1970-01-02",
        ("1 High Street", "West Bromwich", "B70 1AA"),
    );
    jane.telephone = Some("0121 496 0123".into());
    jane.mobile = Some("07700 900123".into());
    jane.language = ("pa", "Punjabi");
    jane.interpreter = true;
    let khan = fixture_person(
        2,
        f::MOHAMMED_KHAN_NHS,
        Some("Mr"),
        "Mohammed",
        None,
        "Khan",
        Sex::Male,
        "1958-03-14",
        ("22 Birmingham Road", "West Bromwich", "B70 6QT"),
    );
    let amelia = fixture_person(
        3,
        f::AMELIA_NOWAK_NHS,
        None,
        "Amelia",
        None,
        "Nowak",
        Sex::Female,
        "2015-06-30",
        ("14 Tipton Road", "Dudley", "DY1 4SQ"),
    );
    let sam = fixture_person(
        4,
        f::SAM_TAYLOR_NHS,
        None,
        "Sam",
        None,
        "Taylor",
        Sex::Other,
        "1988-09-09",
        ("7 Canal Street", "Wolverhampton", "WV1 3LN"),
    );
    let peter = fixture_person(
        5,
        f::PETER_JONES_NHS,
        Some("Mr"),
        "Peter",
        None,
        "Jones",
        Sex::Male,
        "1945-12-01",
        ("3 Park Road", "Dudley", "DY2 8PH"),
    );
    let linda = fixture_person(
        6,
        f::LINDA_BROWN_NHS,
        Some("Ms"),
        "Linda",
        None,
        "Brown",
        Sex::Female,
        "1980-04-04",
        ("41 Walsall Road", "Walsall", "WS1 2DN"),
    );
    let oliver = fixture_person(
        7,
        f::OLIVER_WHITE_NHS,
        Some("Mr"),
        "Oliver",
        None,
        "White",
        Sex::Male,
        "1999-07-07",
        ("9 Stafford Street", "Walsall", "WS2 8DE"),
    );
    FixturePeople {
        jane,
        khan,
        amelia,
        sam,
        peter,
        linda,
        oliver,
    }
}

#[cfg(test)]
mod tests {
    use scr_fhir::nhs_number::is_valid;

    use super::*;

    #[test]
    fn random_nhs_numbers_are_valid_distinct_and_above_the_fixtures() {
        let numbers: Vec<String> = NhsNumbers::new().take(5000).collect();
        assert!(numbers
            .iter()
            .all(|n| is_valid(n) && n.as_str() >= "9991000000"));
        let mut sorted = numbers.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), numbers.len());
    }

    #[test]
    fn the_999_range_caps_the_number_of_random_patients() {
        let max = max_random_patients();
        assert!(max > 900_000 && max < 1_000_000, "{max}");
        let last = NhsNumbers::new().last().unwrap_or_default();
        assert!(last.starts_with("99909999"), "{last}");
    }
}
