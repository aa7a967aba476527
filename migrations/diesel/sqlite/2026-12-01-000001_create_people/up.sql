-- People found by email through blind indexes (see the postgres migration).
CREATE TABLE people (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email_enc TEXT,
    email_bidx TEXT,
    email_exact_bidx BLOB,
    encrypted_kms_key TEXT
);
CREATE UNIQUE INDEX index_people_on_email_bidx ON people (email_bidx);
CREATE INDEX index_people_on_email_exact_bidx ON people (email_exact_bidx);
