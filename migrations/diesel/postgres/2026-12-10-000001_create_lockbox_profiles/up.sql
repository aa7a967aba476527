-- A Lockbox-mode table with typed attributes, as a Rails model with
--   has_encrypted :age, type: :integer        (and :float, :boolean, :date, :datetime, :time,
--   has_encrypted :ssn, padding: true          :decimal, :json; padding: 32 for motto)
-- would have: <attr>_ciphertext text columns and one kms_key.
CREATE TABLE lockbox_profiles (
    id SERIAL PRIMARY KEY,
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
