use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
pub struct User {
    pub id: i32,
    #[kms(encrypted)]
    pub age_enc: Option<i32>,
    #[kms(encrypted)]
    pub email_enc: String,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
