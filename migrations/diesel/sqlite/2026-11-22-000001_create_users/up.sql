-- The example/test schema (see the postgres migration).
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    email_enc TEXT,
    phone_enc TEXT,
    address_enc BLOB,
    encrypted_kms_key TEXT,
    encrypted_kms_key_phone TEXT,
    updated_at TIMESTAMP
);

CREATE TABLE lockbox_users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email_ciphertext TEXT,
    phone_ciphertext TEXT,
    encrypted_kms_key TEXT,
    encrypted_kms_key_phone TEXT
);
