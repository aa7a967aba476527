-- The example/test schema: a users table with two kms keys (default and "phone"),
-- native-mode ciphertext columns (<attr>_enc) and Lockbox-mode ones (<attr>_ciphertext).
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    name TEXT,
    email_enc TEXT,
    phone_enc TEXT,
    address_enc BYTEA,
    encrypted_kms_key TEXT,
    encrypted_kms_key_phone TEXT,
    updated_at TIMESTAMP
);

CREATE TABLE lockbox_users (
    id SERIAL PRIMARY KEY,
    email_ciphertext TEXT,
    phone_ciphertext TEXT,
    encrypted_kms_key TEXT,
    encrypted_kms_key_phone TEXT
);
