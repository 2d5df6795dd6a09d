DROP TABLE client_assertion_jti;
