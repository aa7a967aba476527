use kms_fields::KmsEncrypted;

/// A text column type that is not a key column (a local type: the message names it the same
/// way whatever else is in the dependency graph).
pub struct PlainText(pub Option<String>);

#[derive(KmsEncrypted)]
pub struct User {
    pub id: i32,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    pub encrypted_kms_key: PlainText,
}

fn main() {}
