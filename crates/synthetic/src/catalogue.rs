//! The vocabulary of the synthetic data: real SNOMED CT concept ids, dm+d VMP ids and LOINC
//! codes with their terms, and the names, streets and postcodes of the West Midlands (Sandwell,
//! Dudley, Wolverhampton, Walsall). Telephone numbers come from Ofcom's ranges reserved for
//! drama (0121 496 0xxx, 07700 900xxx), e-mail addresses from `example.com`.

/// A code and its display term.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Code {
    pub id: &'static str,
    pub term: &'static str,
}

const fn code(id: &'static str, term: &'static str) -> Code {
    Code { id, term }
}

// ---- SNOMED CT: observables and findings recorded at the GP -------------------------------

pub(crate) const SYSTOLIC_BP: Code = code("271649006", "Systolic blood pressure");
pub(crate) const DIASTOLIC_BP: Code = code("271650006", "Diastolic blood pressure");
pub(crate) const BODY_WEIGHT: Code = code("27113001", "Body weight");
pub(crate) const BODY_HEIGHT: Code = code("50373000", "Body height");
pub(crate) const BMI: Code = code("60621009", "Body mass index");
pub(crate) const HEART_RATE: Code = code("364075005", "Heart rate");
pub(crate) const RESPIRATORY_RATE: Code = code("86290005", "Respiratory rate");
pub(crate) const SPO2: Code = code("431314004", "Peripheral oxygen saturation");
/// The UK IFCC-standardised HbA1c observable used by GP systems and QOF (mmol/mol).
pub(crate) const HBA1C: Code = code(
    "999791000000106",
    "Haemoglobin A1c level - International Federation of Clinical Chemistry and Laboratory Medicine standardised",
);
pub(crate) const SERUM_CHOLESTEROL: Code = code("1005671000000105", "Serum cholesterol level");
pub(crate) const ALCOHOL_INTAKE: Code = code("160573003", "Alcohol intake");
pub(crate) const SMOKER: Code = code("77176002", "Smoker");
pub(crate) const EX_SMOKER: Code = code("8517006", "Ex-smoker");
pub(crate) const NEVER_SMOKED: Code = code("266919005", "Never smoked tobacco");

/// The objection to the shared care record (R-OBJ-1).
pub(crate) const OBJECTION: Code = code(
    "416409005",
    "Refused consent for upload to local shared electronic record",
);

/// Long-term conditions: each drives diagnoses at the GP and the medicines prescribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Hypertension,
    Type2Diabetes,
    Asthma,
    Copd,
    Depression,
    AtrialFibrillation,
    Osteoarthritis,
}

impl Condition {
    pub(crate) const ALL: [Condition; 7] = [
        Condition::Hypertension,
        Condition::Type2Diabetes,
        Condition::Asthma,
        Condition::Copd,
        Condition::Depression,
        Condition::AtrialFibrillation,
        Condition::Osteoarthritis,
    ];

    pub(crate) fn code(self) -> Code {
        match self {
            Condition::Hypertension => code("38341003", "Hypertensive disorder"),
            Condition::Type2Diabetes => code("44054006", "Diabetes mellitus type 2"),
            Condition::Asthma => code("195967001", "Asthma"),
            Condition::Copd => code("13645005", "Chronic obstructive lung disease"),
            Condition::Depression => code("35489007", "Depressive disorder"),
            Condition::AtrialFibrillation => code("49436004", "Atrial fibrillation"),
            Condition::Osteoarthritis => code("396275006", "Osteoarthritis"),
        }
    }

    /// Prevalence in per mille by age, roughly the English QOF registers.
    pub(crate) fn per_mille(self, age: i64) -> u32 {
        match self {
            Condition::Hypertension if age >= 65 => 450,
            Condition::Hypertension if age >= 40 => 180,
            Condition::Hypertension if age >= 18 => 30,
            Condition::Type2Diabetes if age >= 65 => 180,
            Condition::Type2Diabetes if age >= 40 => 90,
            Condition::Type2Diabetes if age >= 18 => 15,
            Condition::Asthma if age >= 5 => 65,
            Condition::Copd if age >= 45 => 45,
            Condition::Depression if age >= 16 => 120,
            Condition::AtrialFibrillation if age >= 65 => 80,
            Condition::AtrialFibrillation if age >= 45 => 10,
            Condition::Osteoarthritis if age >= 50 => 100,
            _ => 0,
        }
    }

    /// The repeat medicine usually prescribed for it, if any.
    pub(crate) fn repeat_drugs(self) -> &'static [Drug] {
        match self {
            Condition::Hypertension => &[AMLODIPINE_5, RAMIPRIL_2_5],
            Condition::Type2Diabetes => &[METFORMIN_500, SIMVASTATIN_40],
            Condition::Asthma | Condition::Copd => &[SALBUTAMOL_INHALER],
            Condition::Depression => &[CITALOPRAM_20],
            Condition::AtrialFibrillation => &[SIMVASTATIN_40],
            Condition::Osteoarthritis => &[PARACETAMOL_500],
        }
    }
}

// ---- dm+d: virtual medicinal products (VMP ids) ---------------------------------------------

/// A medicine as dm+d names it, with a usual dose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drug {
    pub dmd: &'static str,
    pub name: &'static str,
    pub dosage: &'static str,
    /// Quantity of one issue.
    pub quantity: f64,
    pub unit: &'static str,
    /// HL7 `RXE-3` give amount, with `RXE-5` = `unit`.
    pub give_amount: &'static str,
}

pub(crate) const PARACETAMOL_500: Drug = Drug {
    dmd: "322236009",
    name: "Paracetamol 500mg tablets",
    dosage: "Two tablets up to four times a day when required",
    quantity: 100.0,
    unit: "tablet",
    give_amount: "2",
};
pub(crate) const METFORMIN_500: Drug = Drug {
    dmd: "325278007",
    name: "Metformin 500mg tablets",
    dosage: "One tablet twice a day with meals",
    quantity: 56.0,
    unit: "tablet",
    give_amount: "1",
};
pub(crate) const AMOXICILLIN_500: Drug = Drug {
    dmd: "323510009",
    name: "Amoxicillin 500mg capsules",
    dosage: "One capsule three times a day for 5 days",
    quantity: 15.0,
    unit: "capsule",
    give_amount: "1",
};
pub(crate) const AMOXICILLIN_250: Drug = Drug {
    dmd: "323509004",
    name: "Amoxicillin 250mg capsules",
    dosage: "One capsule three times a day for 7 days",
    quantity: 21.0,
    unit: "capsule",
    give_amount: "1",
};
pub(crate) const AMLODIPINE_5: Drug = Drug {
    dmd: "319283006",
    name: "Amlodipine 5mg tablets",
    dosage: "One tablet once a day",
    quantity: 28.0,
    unit: "tablet",
    give_amount: "1",
};
pub(crate) const RAMIPRIL_2_5: Drug = Drug {
    dmd: "318901006",
    name: "Ramipril 2.5mg capsules",
    dosage: "One capsule once a day",
    quantity: 28.0,
    unit: "capsule",
    give_amount: "1",
};
pub(crate) const SIMVASTATIN_40: Drug = Drug {
    dmd: "320000009",
    name: "Simvastatin 40mg tablets",
    dosage: "One tablet at night",
    quantity: 28.0,
    unit: "tablet",
    give_amount: "1",
};
pub(crate) const SALBUTAMOL_INHALER: Drug = Drug {
    dmd: "39113611000001102",
    name: "Salbutamol 100micrograms/dose inhaler CFC free",
    dosage: "Two puffs up to four times a day when required",
    quantity: 200.0,
    unit: "dose",
    give_amount: "2",
};
pub(crate) const CITALOPRAM_20: Drug = Drug {
    dmd: "321987003",
    name: "Citalopram 20mg tablets",
    dosage: "One tablet once a day",
    quantity: 28.0,
    unit: "tablet",
    give_amount: "1",
};

/// Short courses any patient may have had.
pub(crate) const ACUTE_DRUGS: [Drug; 3] = [AMOXICILLIN_500, AMOXICILLIN_250, PARACETAMOL_500];

// ---- Allergies (SNOMED CT) --------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub(crate) struct AllergyDef {
    pub concept: Code,
    pub substance: Code,
    /// `allergy.category`.
    pub category: &'static str,
    /// HL7 `AL1-2` allergen type.
    pub hl7_type: &'static str,
    /// True for the penicillins: such a patient is not given amoxicillin afterwards.
    pub penicillin: bool,
}

pub(crate) const PENICILLIN_ALLERGY: AllergyDef = AllergyDef {
    concept: code("91936005", "Allergy to penicillin"),
    substance: code("764146007", "Penicillin"),
    category: "medication",
    hl7_type: "DA",
    penicillin: true,
};
pub(crate) const AMOXICILLIN_ALLERGY: AllergyDef = AllergyDef {
    concept: code("294505008", "Allergy to amoxicillin"),
    substance: code("372687004", "Amoxicillin"),
    category: "medication",
    hl7_type: "DA",
    penicillin: true,
};
pub(crate) const PEANUT_ALLERGY: AllergyDef = AllergyDef {
    concept: code("91935009", "Allergy to peanuts"),
    substance: code("762952008", "Peanut"),
    category: "food",
    hl7_type: "FA",
    penicillin: false,
};
pub(crate) const ALLERGIES: [AllergyDef; 6] = [
    PENICILLIN_ALLERGY,
    AMOXICILLIN_ALLERGY,
    PEANUT_ALLERGY,
    AllergyDef {
        concept: code("300916003", "Latex allergy"),
        substance: code("111088007", "Latex"),
        category: "environment",
        hl7_type: "EA",
        penicillin: false,
    },
    AllergyDef {
        concept: code("418689008", "Allergy to grass pollen"),
        substance: code("256277009", "Grass pollen"),
        category: "environment",
        hl7_type: "EA",
        penicillin: false,
    },
    AllergyDef {
        concept: code("232350006", "House dust mite allergy"),
        substance: code("260147004", "House dust mite"),
        category: "environment",
        hl7_type: "EA",
        penicillin: false,
    },
];

pub(crate) const ANAPHYLAXIS: Code = code("39579001", "Anaphylaxis");
pub(crate) const REACTIONS: [Code; 6] = [
    ANAPHYLAXIS,
    code("271807003", "Eruption of skin"),
    code("126485001", "Urticaria"),
    code("267036007", "Dyspnoea"),
    code("41291007", "Angioedema"),
    code("422587007", "Nausea"),
];

// ---- LOINC: hospital laboratory results (HL7 ORU^R01) -------------------------------------

/// One analyte: LOINC code, name, unit, reference range and the plausible spread of values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Analyte {
    pub loinc: Code,
    pub unit: &'static str,
    pub low: f64,
    pub high: f64,
    pub min: f64,
    pub max: f64,
    pub decimals: i32,
}

const fn analyte(
    loinc: &'static str,
    name: &'static str,
    unit: &'static str,
    range: (f64, f64),
    spread: (f64, f64),
    decimals: i32,
) -> Analyte {
    Analyte {
        loinc: code(loinc, name),
        unit,
        low: range.0,
        high: range.1,
        min: spread.0,
        max: spread.1,
        decimals,
    }
}

pub(crate) const SODIUM: Analyte = analyte(
    "2951-2",
    "Sodium",
    "mmol/L",
    (133.0, 146.0),
    (128.0, 150.0),
    0,
);
pub(crate) const POTASSIUM: Analyte =
    analyte("2823-3", "Potassium", "mmol/L", (3.5, 5.3), (3.1, 6.0), 1);
/// UK laboratories report creatinine in umol/L, hence the moles/volume LOINC code.
pub(crate) const CREATININE: Analyte = analyte(
    "14682-9",
    "Creatinine",
    "umol/L",
    (45.0, 110.0),
    (40.0, 220.0),
    0,
);
pub(crate) const UREA: Analyte = analyte("22664-7", "Urea", "mmol/L", (2.5, 7.8), (2.0, 14.0), 1);
pub(crate) const HAEMOGLOBIN: Analyte = analyte(
    "718-7",
    "Haemoglobin",
    "g/L",
    (115.0, 165.0),
    (85.0, 175.0),
    0,
);
pub(crate) const WHITE_CELLS: Analyte = analyte(
    "6690-2",
    "White cell count",
    "10*9/L",
    (4.0, 11.0),
    (2.5, 18.0),
    1,
);
pub(crate) const PLATELETS: Analyte = analyte(
    "777-3",
    "Platelets",
    "10*9/L",
    (150.0, 400.0),
    (90.0, 520.0),
    0,
);
pub(crate) const CRP: Analyte = analyte(
    "1988-5",
    "C reactive protein",
    "mg/L",
    (0.0, 5.0),
    (0.0, 180.0),
    0,
);
pub(crate) const FSH: Analyte = analyte(
    "15067-2",
    "Follicle stimulating hormone",
    "IU/L",
    (1.5, 12.4),
    (1.0, 20.0),
    1,
);
pub(crate) const LH: Analyte = analyte(
    "10501-5",
    "Luteinising hormone",
    "IU/L",
    (1.7, 8.6),
    (1.0, 15.0),
    1,
);

/// A laboratory panel: `OBR-4` test code and name, `OBR-24` section, its analytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Panel {
    pub test: Code,
    pub section: &'static str,
    pub analytes: &'static [Analyte],
}

pub(crate) const UE: Panel = Panel {
    test: code("UE", "Urea and electrolytes"),
    section: "CH",
    analytes: &[SODIUM, POTASSIUM, UREA, CREATININE],
};
pub(crate) const FBC: Panel = Panel {
    test: code("FBC", "Full blood count"),
    section: "HM",
    analytes: &[HAEMOGLOBIN, WHITE_CELLS, PLATELETS],
};
pub(crate) const CRP_PANEL: Panel = Panel {
    test: code("CRP", "C reactive protein"),
    section: "CH",
    analytes: &[CRP],
};
pub(crate) const FERTILITY_PANEL: Panel = Panel {
    test: code("FSHLH", "FSH and LH"),
    section: "CH",
    analytes: &[FSH, LH],
};
pub(crate) const ROUTINE_PANELS: [Panel; 3] = [UE, FBC, CRP_PANEL];

/// Sexual health NAATs (coded values, `OBX-2` = `CE`).
pub(crate) const CHLAMYDIA_NAAT: Code = code(
    "43304-5",
    "Chlamydia trachomatis rRNA [Presence] in Specimen by NAA with probe detection",
);
pub(crate) const GONORRHOEA_NAAT: Code = code(
    "43305-2",
    "Neisseria gonorrhoeae rRNA [Presence] in Specimen by NAA with probe detection",
);
pub(crate) const NOT_DETECTED: Code = code("260415000", "Not detected");
pub(crate) const STI_SCREEN: Code = code("STI", "Chlamydia and gonorrhoea NAAT");

// ---- Places and people ----------------------------------------------------------------------

/// Postcode districts and their post towns.
pub(crate) const DISTRICTS: [(&str, &str); 10] = [
    ("B70", "West Bromwich"),
    ("B71", "West Bromwich"),
    ("B69", "Oldbury"),
    ("DY1", "Dudley"),
    ("DY2", "Dudley"),
    ("DY4", "Tipton"),
    ("WV1", "Wolverhampton"),
    ("WV2", "Wolverhampton"),
    ("WS1", "Walsall"),
    ("WS2", "Walsall"),
];

/// Letters allowed in the last two places of a postcode.
pub(crate) const POSTCODE_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

pub(crate) const STREETS: [&str; 24] = [
    "High Street",
    "Church Road",
    "Park Road",
    "Station Road",
    "Victoria Road",
    "Birmingham Road",
    "Wolverhampton Road",
    "Dudley Road",
    "Walsall Road",
    "Canal Street",
    "Oak Avenue",
    "Elm Grove",
    "Queen Street",
    "King Street",
    "New Road",
    "Stafford Street",
    "Lichfield Street",
    "Castle Street",
    "Tipton Road",
    "Hagley Road",
    "Bilston Street",
    "Holyhead Road",
    "Greets Green Road",
    "Oldbury Road",
];

pub(crate) const FEMALE_NAMES: [&str; 40] = [
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Emily",
    "Sophie",
    "Grace",
    "Lily",
    "Charlotte",
    "Chloe",
    "Jessica",
    "Sarah",
    "Emma",
    "Rebecca",
    "Hannah",
    "Laura",
    "Karen",
    "Susan",
    "Margaret",
    "Patricia",
    "Barbara",
    "Jean",
    "Sandra",
    "Julie",
    "Michelle",
    "Nicola",
    "Gemma",
    "Priya",
    "Aisha",
    "Fatima",
    "Ayesha",
    "Harpreet",
    "Simran",
    "Gurpreet",
    "Maryam",
    "Agnieszka",
    "Katarzyna",
    "Ioana",
    "Chidinma",
    "Siobhan",
];

pub(crate) const MALE_NAMES: [&str; 40] = [
    "Oliver",
    "George",
    "Harry",
    "Jack",
    "Jacob",
    "Noah",
    "Charlie",
    "Thomas",
    "James",
    "William",
    "Daniel",
    "Joshua",
    "Michael",
    "David",
    "John",
    "Robert",
    "Paul",
    "Mark",
    "Stephen",
    "Andrew",
    "Peter",
    "Christopher",
    "Gary",
    "Kevin",
    "Ian",
    "Brian",
    "Raymond",
    "Mohammed",
    "Ahmed",
    "Ali",
    "Imran",
    "Yusuf",
    "Harjit",
    "Gurdeep",
    "Sukhdev",
    "Arjun",
    "Piotr",
    "Tomasz",
    "Andrei",
    "Kwame",
];

pub(crate) const SURNAMES: [&str; 60] = [
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Baker",
    "Price",
    "Bennett",
    "Griffiths",
    "Khan",
    "Hussain",
    "Ali",
    "Ahmed",
    "Begum",
    "Akhtar",
    "Iqbal",
    "Singh",
    "Kaur",
    "Sandhu",
    "Gill",
    "Dhillon",
    "Sharma",
    "Mistry",
    "Nowak",
    "Kowalski",
    "Popescu",
    "O'Connor",
    "O'Brien",
    "D'Souza",
    "McDonald",
    "Campbell",
    "Okafor",
    "Mensah",
];

/// Main spoken languages (ISO 639-1, name) with their weight in the local population, per mille.
pub(crate) const LANGUAGES: [(u32, (&str, &str)); 10] = [
    (880, ("en", "English")),
    (30, ("pa", "Punjabi")),
    (20, ("ur", "Urdu")),
    (20, ("pl", "Polish")),
    (10, ("bn", "Bengali")),
    (10, ("ro", "Romanian")),
    (10, ("gu", "Gujarati")),
    (8, ("ar", "Arabic")),
    (6, ("ku", "Kurdish")),
    (6, ("ti", "Tigrinya")),
];

/// Usual GPs, assigned by practice.
pub(crate) const GP_NAMES: [&str; 12] = [
    "Dr A Patel",
    "Dr R Singh",
    "Dr E Walsh",
    "Dr K Okafor",
    "Dr S Hughes",
    "Dr M Iqbal",
    "Dr L Bennett",
    "Dr J Kowalska",
    "Dr P Sandhu",
    "Dr H Morris",
    "Dr C Mensah",
    "Dr T Griffiths",
];

/// Alerts a practice sets, besides interpreter needs: (SNOMED id if any, term, text).
pub(crate) const GP_ALERTS: [(Option<&str>, &str, &str); 5] = [
    (
        Some("304253006"),
        "Not for resuscitation",
        "DNACPR form completed with patient and family",
    ),
    (
        None,
        "Safeguarding concern - adult",
        "Discuss with safeguarding lead before sharing information",
    ),
    (
        None,
        "Hearing impaired - use written communication",
        "Prefers text messages and written information",
    ),
    (
        None,
        "Lasting power of attorney for health and welfare in place",
        "Attorney: daughter",
    ),
    (
        None,
        "Violent patient - see only with a chaperone",
        "Incident recorded by the practice",
    ),
];

/// Social care alerts: (category, title, detail, can concern the household).
pub(crate) const SC_ALERTS: [(&str, &str, &str, bool); 7] = [
    (
        "safeguarding",
        "Safeguarding concern",
        "Section 42 enquiry open",
        false,
    ),
    (
        "safeguarding",
        "Risk from household member",
        "Visit in pairs; do not discuss concerns in front of partner",
        true,
    ),
    (
        "risk-to-staff",
        "Aggressive dog at property",
        "Ask for the dog to be secured before entering",
        true,
    ),
    (
        "risk-to-staff",
        "Lone working risk",
        "Visit in pairs",
        false,
    ),
    (
        "communication",
        "Uses British Sign Language",
        "Book a BSL interpreter for visits",
        false,
    ),
    (
        "end-of-life",
        "Preferred place of death: home",
        "Advance care plan held by the district nursing team",
        false,
    ),
    (
        "other",
        "Key safe at property",
        "Code held by the care provider",
        false,
    ),
];

/// Hospital treatment functions (NHS Data Dictionary codes) for ordinary visits.
pub(crate) const ACUTE_SERVICES: [(&str, &str); 6] = [
    ("300", "WARD 4"),
    ("320", "CCU"),
    ("100", "WARD 7"),
    ("110", "WARD 9"),
    ("340", "WARD 12"),
    ("430", "WARD 15"),
];
