-- The development replicas beside the store (docker/compose.yaml): a GP reporting replica and a
-- council social care replica, filled by `scr seed`. Production points scr at the real ones.
CREATE DATABASE scr_gp OWNER scr;
CREATE DATABASE scr_sc OWNER scr;
