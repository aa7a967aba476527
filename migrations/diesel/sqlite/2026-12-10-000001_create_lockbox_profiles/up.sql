-- Lockbox-mode typed attributes (see the postgres migration).
CREATE TABLE lockbox_profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    age_ciphertext TEXT,
    score_ciphertext TEXT,
    active_ciphertext TEXT,
    born_on_ciphertext TEXT,
    signed_at_ciphertext TEXT,
    opens_at_ciphertext TEXT,
    balance_ciphertext TEXT,
    data_ciphertext TEXT,
    ssn_ciphertext TEXT,
    motto_ciphertext TEXT,
    encrypted_kms_key TEXT
);
