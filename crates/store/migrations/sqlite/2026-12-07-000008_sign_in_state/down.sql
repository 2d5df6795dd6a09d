DROP TABLE sign_in_state;
