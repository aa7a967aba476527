-- A second id sequence for `users` (Postgres only), for models that name their sequence
-- explicitly (`#[kms(sequence = "users_alt_id_seq")]`): it starts far from the serial's own
-- sequence, so an id taken from it is recognisable.
CREATE SEQUENCE users_alt_id_seq START 1000000;
