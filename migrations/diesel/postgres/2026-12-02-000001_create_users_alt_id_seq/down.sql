DROP SEQUENCE users_alt_id_seq;
