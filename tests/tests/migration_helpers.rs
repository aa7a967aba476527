//! The migration helpers' SQL runs on each backend and gives a table the model can use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use kms_fields::{Kms, KmsEncrypted};
use kms_fields_diesel::migration::{Column, add_columns, drop_columns, model_down, model_up};
use kms_fields_diesel::{BackendKind, KmsKey};
use kms_fields_tests::db::{MysqlDb, PgDb, SqliteDb};

diesel::table! {
    contacts (id) {
        id -> Integer,
        name -> Nullable<Text>,
        email_enc -> Nullable<Text>,
        photo_enc -> Nullable<Binary>,
        encrypted_kms_key -> Nullable<Text>,
    }
}

#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = contacts)]
#[kms(key(key_id = "insecure-test-key"))]
struct Person {
    #[diesel(deserialize_as = i32)]
    id: Option<i32>,
    name: Option<String>,
    #[kms(encrypted)]
    email_enc: Option<String>,
    #[kms(encrypted, binary)]
    photo_enc: Option<Vec<u8>>,
    encrypted_kms_key: KmsKey,
}

macro_rules! helper_suite {
    ($name:ident, $db:ty, $backend:expr, $create:expr) => {
        #[test]
        fn $name() {
            let (_db, mut conn) = <$db>::new();
            conn.batch_execute($create).unwrap();
            let up = model_up::<Person>($backend).unwrap();
            assert!(
                up.contains("encrypted_kms_key") && up.contains("photo_enc"),
                "{up}"
            );
            conn.batch_execute(&up).unwrap();
            let kms = Kms::new();
            let mut p = Person {
                name: Some("Ada".into()),
                ..Default::default()
            };
            p.set_email_blocking(&kms, Some("ada@example.org")).unwrap();
            p.set_photo_blocking(&kms, Some(&[0u8, 1, 2, 255])).unwrap();
            kms_fields_diesel::insert(&mut conn, &kms, contacts::table, &mut p).unwrap();
            let back: Person = contacts::table
                .find(p.id.unwrap())
                .select(Person::as_select())
                .first(&mut conn)
                .unwrap();
            assert_eq!(
                back.email_blocking(&kms).unwrap().as_deref(),
                Some("ada@example.org")
            );
            assert_eq!(back.photo_blocking(&kms).unwrap(), Some(vec![0, 1, 2, 255]));
            // a unique blind-index column refuses duplicates
            let bidx = [Column::blind_index("email_bidx", true)];
            conn.batch_execute(&add_columns($backend, "contacts", &bidx))
                .unwrap();
            conn.batch_execute("UPDATE contacts SET email_bidx = 'same'")
                .unwrap();
            let dup =
                conn.batch_execute("INSERT INTO contacts (name, email_bidx) VALUES ('x', 'same')");
            assert!(dup.is_err(), "unique index enforced");
            conn.batch_execute(&drop_columns($backend, "contacts", &bidx))
                .unwrap();
            conn.batch_execute(&model_down::<Person>($backend).unwrap())
                .unwrap();
        }
    };
}

helper_suite!(
    postgres_helpers,
    PgDb,
    BackendKind::Postgres,
    "CREATE TABLE contacts (id SERIAL PRIMARY KEY, name TEXT)"
);
helper_suite!(
    sqlite_helpers,
    SqliteDb,
    BackendKind::Sqlite,
    "CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)"
);
helper_suite!(
    mysql_helpers,
    MysqlDb,
    BackendKind::Mysql,
    "CREATE TABLE contacts (id INTEGER AUTO_INCREMENT PRIMARY KEY, name TEXT)"
);
