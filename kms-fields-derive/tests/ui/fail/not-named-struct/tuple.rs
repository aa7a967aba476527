use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
pub struct User(i32, Option<String>, KeyColumn);

fn main() {}
