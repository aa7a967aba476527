//! Unit tests of the macro logic over proc_macro2 tokens, and expansion snapshots.

use quote::quote;

use crate::derive_kms_encrypted_inner;

fn expand(input: proc_macro2::TokenStream) -> String {
    let out = derive_kms_encrypted_inner(input);
    let file: syn::File = syn::parse2(out).expect("expansion parses as a file");
    prettyplease::unparse(&file)
}

fn error_of(input: proc_macro2::TokenStream) -> String {
    let out = derive_kms_encrypted_inner(input).to_string();
    assert!(
        out.contains("compile_error"),
        "expected an error, got {out}"
    );
    out
}

#[test]
fn expansion_of_a_two_key_model() {
    let out = expand(quote! {
        #[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
        #[kms(key(key_id = "insecure-test-key"), key(name = "phone", key_id_env = "PHONE_KEY", version = 2, previous(1 = "alias/old")))]
        pub struct User {
            #[diesel(deserialize_as = i32)]
            pub id: Option<i32>,
            #[kms(encrypted)]
            pub email_enc: Option<String>,
            #[kms(encrypted, key = "phone", padding)]
            pub phone_enc: Option<String>,
            #[kms(encrypted, binary)]
            pub photo_enc: Option<Vec<u8>>,
            pub encrypted_kms_key: KmsKey,
            pub encrypted_kms_key_phone: KmsKey,
            pub updated_at: Option<String>,
        }
    });
    insta::assert_snapshot!(out);
}

#[test]
fn lockbox_mode_uses_ciphertext_columns_and_no_associated_data() {
    let out = expand(quote! {
        #[kms(lockbox, model_name = "User", table = "users")]
        pub struct LegacyUser {
            pub id: i64,
            #[kms(encrypted)]
            pub email_ciphertext: Option<String>,
            pub encrypted_kms_key: KmsKey,
        }
    });
    assert!(out.contains(r#"name: "email""#), "{out}");
    assert!(out.contains(r#"associated_data: b"""#), "{out}");
    let compact: String = out.split_whitespace().collect();
    assert!(
        compact.contains(
            r#"TABLE:::core::option::Option<&'staticstr>=::core::option::Option::Some("users",)"#
        ),
        "{out}"
    );
}

#[test]
fn custom_context_and_per_record_key_id() {
    let out = expand(quote! {
        #[kms(key(key_id_fn = tenant_key, context = ctx))]
        pub struct Doc {
            pub id: uuid::Uuid,
            #[kms(encrypted, serde = Body)]
            pub body_enc: Option<Vec<u8>>,
            pub encrypted_kms_key: KmsKey,
        }
    });
    assert!(out.contains("key_id_per_record()"), "{out}");
    assert!(out.contains("0usize => ctx(self, version)"), "{out}");
    assert!(
        out.contains("fn context_needs_id(key: usize) -> bool"),
        "{out}"
    );
    assert!(out.contains("IdKind::Other"), "{out}");
}

#[test]
fn errors_are_accumulated() {
    let out = error_of(quote! {
        #[kms(colour = "red")]
        pub struct User {
            pub id: i32,
            #[kms(encrypted, key = "ssn")]
            pub email_enc: Option<String>,
            #[kms(encrypted)]
            pub age_enc: Option<i32>,
            pub encrypted_kms_key: KmsKey,
        }
    });
    assert!(out.contains("unknown kms attribute `colour`"), "{out}");
    assert!(out.contains("which this model does not declare"), "{out}");
    assert!(out.contains("holds the ciphertext"), "{out}");
}

#[test]
fn model_struct_needs_a_model_name() {
    let out = error_of(quote! {
        #[sea_orm(table_name = "users")]
        pub struct Model {
            pub id: i32,
            #[kms(encrypted)]
            pub email_enc: Option<String>,
            pub encrypted_kms_key: KmsKey,
        }
    });
    assert!(out.contains("needs an explicit model name"), "{out}");
}

#[test]
fn expansion_of_blind_indexes() {
    let out = expand(quote! {
        #[diesel(table_name = people)]
        #[kms(key(key_id = "insecure-test-key"))]
        pub struct Person {
            pub id: Option<i32>,
            #[kms(encrypted, blind_index(expression = normalize::trim_lowercase, unique), blind_index(column = "email_exact_bidx", algorithm = "pbkdf2_sha256", iterations = 1000, size = 16, master_key = "v2"))]
            pub email_enc: Option<String>,
            pub email_bidx: Option<String>,
            pub email_exact_bidx: Option<Vec<u8>>,
            pub encrypted_kms_key: KmsKey,
        }
    });
    // the derived index key depends on the table and column names: both are in the builder
    assert!(
        out.contains(r#"BlindIndex::builder("people", "email_bidx")"#),
        "{out}"
    );
    assert!(out.contains("Algorithm::pbkdf2_sha256(1000u32)"), "{out}");
    assert!(out.contains("Encoding::Raw"), "{out}");
    // the setter computes every index before it encrypts, then stores them
    let setter = &out[out.find("pub async fn set_email").unwrap()..];
    let setter = &setter[..setter.find("pub fn set_email_blocking").unwrap()];
    let write = setter.find("write_attribute").unwrap();
    assert!(setter.find("blind_index_value_async").unwrap() < write);
    assert!(setter.rfind("self.email_exact_bidx = ").unwrap() > write);
    for helper in [
        "pub fn email_bidx(",
        "pub async fn email_bidx_async(",
        "pub async fn email_exact_bidx_in<",
    ] {
        assert!(out.contains(helper), "{helper}");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn blind_index_errors_are_accumulated() {
    let out = error_of(quote! {
        #[kms(table = "t")]
        pub struct P {
            pub id: i32,
            #[kms(encrypted, blind_index(size = 40, cost(t = 1)), blind_index(algorithm = "x"))]
            pub email_enc: Option<String>,
            pub email_bidx: Option<String>,
            pub encrypted_kms_key: KmsKey,
        }
    });
    assert!(out.contains("argon2id t must be from 3 to 10"), "{out}");
    assert!(out.contains("size (bytes) must be from 4 to 32"), "{out}");
    assert!(out.contains("unknown blind index algorithm"), "{out}");
}
