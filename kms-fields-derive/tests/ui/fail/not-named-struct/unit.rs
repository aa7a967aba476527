use kms_fields::KmsEncrypted;

#[derive(KmsEncrypted)]
pub struct User;

fn main() {}
