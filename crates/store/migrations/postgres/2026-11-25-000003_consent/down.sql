DROP TABLE consent_statement;
