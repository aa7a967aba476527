use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
#[kms(model_name = "User", model_name = "Person")]
pub struct User {
    pub id: i32,
    #[kms(encrypted, encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, attr = "email")]
    pub mail: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
