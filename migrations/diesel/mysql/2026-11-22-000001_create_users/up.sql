-- The example/test schema (see the postgres migration).
CREATE TABLE users (
    id INTEGER AUTO_INCREMENT PRIMARY KEY,
    name TEXT,
    email_enc LONGTEXT,
    phone_enc LONGTEXT,
    address_enc LONGBLOB,
    encrypted_kms_key TEXT,
    encrypted_kms_key_phone TEXT,
    updated_at TIMESTAMP NULL
);

CREATE TABLE lockbox_users (
    id INTEGER AUTO_INCREMENT PRIMARY KEY,
    email_ciphertext LONGTEXT,
    phone_ciphertext LONGTEXT,
    encrypted_kms_key TEXT,
    encrypted_kms_key_phone TEXT
);
