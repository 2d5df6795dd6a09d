DROP TABLE break_glass_claim;
DROP TABLE audit_event;
