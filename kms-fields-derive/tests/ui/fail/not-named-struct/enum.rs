use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
pub enum User {
    A { email_enc: Option<String> },
}

fn main() {}
