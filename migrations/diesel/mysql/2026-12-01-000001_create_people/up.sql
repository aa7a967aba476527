-- People found by email through blind indexes (see the postgres migration).
CREATE TABLE people (
    id INTEGER AUTO_INCREMENT PRIMARY KEY,
    email_enc LONGTEXT,
    email_bidx VARCHAR(64),
    email_exact_bidx VARBINARY(32),
    encrypted_kms_key TEXT
);
CREATE UNIQUE INDEX index_people_on_email_bidx ON people (email_bidx);
CREATE INDEX index_people_on_email_exact_bidx ON people (email_exact_bidx);
