-- People found by email through blind indexes: case-insensitive (unique) and exact.
CREATE TABLE people (
    id SERIAL PRIMARY KEY,
    email_enc TEXT,
    email_bidx TEXT,
    email_exact_bidx BYTEA,
    encrypted_kms_key TEXT
);
CREATE UNIQUE INDEX index_people_on_email_bidx ON people (email_bidx);
CREATE INDEX index_people_on_email_exact_bidx ON people (email_exact_bidx);
