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
