DROP TABLE flag_version;
DROP TABLE flag;
