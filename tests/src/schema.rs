//! Diesel schema of the example/test tables (migrations/diesel/*).

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Nullable<Text>,
        email_enc -> Nullable<Text>,
        phone_enc -> Nullable<Text>,
        address_enc -> Nullable<Binary>,
        encrypted_kms_key -> Nullable<Text>,
        encrypted_kms_key_phone -> Nullable<Text>,
    }
}

diesel::table! {
    lockbox_users (id) {
        id -> Integer,
        email_ciphertext -> Nullable<Text>,
        phone_ciphertext -> Nullable<Text>,
        encrypted_kms_key -> Nullable<Text>,
        encrypted_kms_key_phone -> Nullable<Text>,
    }
}

diesel::table! {
    people (id) {
        id -> Integer,
        email_enc -> Nullable<Text>,
        email_bidx -> Nullable<Text>,
        email_exact_bidx -> Nullable<Binary>,
        encrypted_kms_key -> Nullable<Text>,
    }
}

diesel::table! {
    lockbox_profiles (id) {
        id -> Integer,
        age_ciphertext -> Nullable<Text>,
        score_ciphertext -> Nullable<Text>,
        active_ciphertext -> Nullable<Text>,
        born_on_ciphertext -> Nullable<Text>,
        signed_at_ciphertext -> Nullable<Text>,
        opens_at_ciphertext -> Nullable<Text>,
        balance_ciphertext -> Nullable<Text>,
        data_ciphertext -> Nullable<Text>,
        ssn_ciphertext -> Nullable<Text>,
        motto_ciphertext -> Nullable<Text>,
        encrypted_kms_key -> Nullable<Text>,
    }
}
