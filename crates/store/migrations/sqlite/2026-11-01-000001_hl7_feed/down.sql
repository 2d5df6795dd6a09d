DROP TABLE hl7_medication;
DROP TABLE hl7_observation;
DROP TABLE hl7_allergy;
DROP TABLE hl7_visit;
DROP TABLE hl7_patient;
DROP TABLE hl7_message;
