//! Blind indexes through Diesel (Postgres, SQLite, MariaDB) and SeaORM (Postgres, SQLite): the
//! setter writes the index columns, lookups by email (case-insensitive through the expression,
//! exact, `IN` lists), a unique index on the bidx column, NULL → NULL, a second master key, and
//! a resumable backfill of 1,000 existing rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::prelude::*;
use kms_fields::blind_index::MasterKey;
use kms_fields::{ErrorKind, Kms, KmsEncrypted, blocking};
use kms_fields_diesel::KmsKey;
use kms_fields_diesel::rotation::{self, TableOptions};
use kms_fields_tests::db::{MysqlDb, PgDb, SqliteDb};
use kms_fields_tests::models::Person;
use kms_fields_tests::schema::people;

fn kms() -> Kms {
    Kms::builder()
        .insecure_test_key()
        .blind_index_key(MasterKey::from_hex(&"0".repeat(64)).unwrap())
        .blind_index_key_named("v2", MasterKey::from_hex(&"1".repeat(64)).unwrap())
        .build()
}

/// The same table without the indexes: rows written before the indexes existed.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = people)]
#[kms(model_name = "Person", key(key_id = "insecure-test-key"))]
struct UnindexedPerson {
    #[diesel(deserialize_as = i32)]
    id: Option<i32>,
    #[kms(encrypted)]
    email_enc: Option<String>,
    encrypted_kms_key: KmsKey,
}

macro_rules! diesel_blind_index {
    ($backend:ident, $db:ty) => {
        mod $backend {
            use super::*;

            fn save<C: kms_fields_diesel::KmsConnection>(
                conn: &mut C,
                kms: &Kms,
                email: Option<&str>,
            ) -> kms_fields::Result<Person>
            where
                diesel::query_builder::InsertStatement<
                    people::table,
                    <Person as diesel::Insertable<people::table>>::Values,
                >: diesel::query_dsl::methods::ExecuteDsl<C>,
            {
                let mut p = Person::default();
                p.set_email_blocking(kms, email)?;
                kms_fields_diesel::insert(conn, kms, people::table, &mut p)?;
                Ok(p)
            }

            #[test]
            fn find_by_email_through_the_indexes() {
                let (_g, mut conn) = <$db>::new();
                let kms = kms();
                for e in ["Ada@Example.org", "grace@example.org", "linus@example.org"] {
                    save(&mut conn, &kms, Some(e)).unwrap();
                }
                // case-insensitive: the expression trims and lowercases on write and on query
                let wanted = Person::email_bidx(&kms, "  ada@EXAMPLE.org ").unwrap();
                let found: Person = people::table
                    .filter(people::email_bidx.eq(&wanted))
                    .select(Person::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    found.email_blocking(&Kms::new()).unwrap().as_deref(),
                    Some("Ada@Example.org")
                );
                // exact: raw 16 bytes under the second master key
                let exact = Person::email_exact_bidx(&kms, "Ada@Example.org").unwrap();
                assert_eq!(exact.len(), 16);
                assert_eq!(found.email_exact_bidx.as_deref(), Some(&exact[..]));
                let miss = Person::email_exact_bidx(&kms, "ada@example.org").unwrap();
                let n: i64 = people::table
                    .filter(people::email_exact_bidx.eq(&miss))
                    .count()
                    .get_result(&mut conn)
                    .unwrap();
                assert_eq!(n, 0, "the exact index sees case");
                // IN list
                let many = blocking::run(Person::email_bidx_in(
                    &kms,
                    &[
                        "GRACE@example.org",
                        "linus@example.org",
                        "nobody@example.org",
                    ],
                ))
                .unwrap();
                let n: i64 = people::table
                    .filter(people::email_bidx.eq_any(&many))
                    .count()
                    .get_result(&mut conn)
                    .unwrap();
                assert_eq!(n, 2);
                // the stored value is the index of the normalised plaintext
                assert_eq!(found.email_bidx.as_deref(), Some(wanted.as_str()));
            }

            #[test]
            fn unique_index_rejects_a_duplicate_email() {
                let (_g, mut conn) = <$db>::new();
                let kms = kms();
                save(&mut conn, &kms, Some("ada@example.org")).unwrap();
                let e = save(&mut conn, &kms, Some(" ADA@example.org")).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Database, "{e}");
                let n: i64 = people::table.count().get_result(&mut conn).unwrap();
                assert_eq!(n, 1, "nothing half-written");
            }

            #[test]
            fn null_attribute_null_index() {
                let (_g, mut conn) = <$db>::new();
                let kms = kms();
                let mut p = save(&mut conn, &kms, Some("ada@example.org")).unwrap();
                assert!(p.email_bidx.is_some() && p.email_exact_bidx.is_some());
                p.set_email_blocking(&kms, None).unwrap();
                assert_eq!(
                    (p.email_bidx.as_deref(), p.email_exact_bidx.as_deref()),
                    (None, None)
                );
                kms_fields_diesel::update_encrypted(&mut conn, &kms, &mut p).unwrap();
                diesel::update(people::table.find(p.id.unwrap()))
                    .set((
                        people::email_bidx.eq(&p.email_bidx),
                        people::email_exact_bidx.eq(&p.email_exact_bidx),
                    ))
                    .execute(&mut conn)
                    .unwrap();
                let row: Person = people::table
                    .find(p.id.unwrap())
                    .select(Person::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    (row.email_enc, row.email_bidx, row.email_exact_bidx),
                    (None, None, None)
                );
            }
        }
    };
}

diesel_blind_index!(postgres, PgDb);
diesel_blind_index!(sqlite_db, SqliteDb);
diesel_blind_index!(mysql_db, MysqlDb);

#[test]
fn a_missing_master_key_is_a_clear_error_and_changes_nothing() {
    let only_default = Kms::builder()
        .insecure_test_key()
        .blind_index_key(MasterKey::from_hex(&"0".repeat(64)).unwrap())
        .build();
    let mut p = Person::default();
    let e = p
        .set_email_blocking(&only_default, Some("ada@example.org"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("blind_index_key_named(\"v2\""),
        "{e}"
    );
    assert!(
        p.email_enc.is_none() && p.email_bidx.is_none(),
        "the attribute is left as it was"
    );
    let e = Person::email_bidx(&Kms::new(), "x").unwrap_err();
    assert!(e.to_string().contains("BLIND_INDEX_MASTER_KEY"), "{e}");
    assert!(!e.to_string().contains("x@"), "no value in errors");
}

macro_rules! backfill_1000 {
    ($name:ident, $db:ty) => {
        #[test]
        fn $name() {
            let (_g, mut conn) = <$db>::new();
            let kms = kms();
            let mut rows: Vec<UnindexedPerson> = (0..1000)
                .map(|i| {
                    let mut p = UnindexedPerson::default();
                    p.set_email_blocking(&kms, Some(&format!("Person{i}@Example.org")))
                        .unwrap();
                    p
                })
                .collect();
            kms_fields_diesel::insert_many(&mut conn, &kms, people::table, &mut rows, 64).unwrap();
            let first = rotation::backfill_blind_index::<Person, _>(
                &mut conn,
                &kms,
                Person::EMAIL_BIDX,
                TableOptions {
                    batch_size: 300,
                    max_batches: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(first.done, 300);
            let mut seen = 0;
            let mut report = |_: &rotation::Progress| seen += 1;
            let rest = rotation::backfill_blind_index::<Person, _>(
                &mut conn,
                &kms,
                Person::EMAIL_BIDX,
                TableOptions {
                    batch_size: 300,
                    progress: Some(&mut report),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!((rest.done, rest.errors.len()), (700, 0));
            assert_eq!(seen, 3);
            let exact = rotation::backfill_blind_index::<Person, _>(
                &mut conn,
                &kms,
                Person::EMAIL_EXACT_BIDX,
                TableOptions::default(),
            )
            .unwrap();
            assert_eq!(exact.done, 1000);
            for i in [0, 417, 999] {
                let wanted = Person::email_bidx(&kms, &format!("person{i}@example.org")).unwrap();
                let p: Person = people::table
                    .filter(people::email_bidx.eq(wanted))
                    .select(Person::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    p.email_blocking(&Kms::new()).unwrap(),
                    Some(format!("Person{i}@Example.org"))
                );
                let exact =
                    Person::email_exact_bidx(&kms, &format!("Person{i}@Example.org")).unwrap();
                assert_eq!(p.email_exact_bidx, Some(exact));
            }
            let again = rotation::backfill_blind_index::<Person, _>(
                &mut conn,
                &kms,
                Person::EMAIL_BIDX,
                TableOptions::default(),
            )
            .unwrap();
            assert_eq!(again.done, 0, "nothing left");
        }
    };
}

backfill_1000!(postgres_backfill_1000_rows, PgDb);
backfill_1000!(sqlite_backfill_1000_rows, SqliteDb);

/// The same through SeaORM (async): the setter computes the indexes on the blocking pool.
mod seaorm {
    use super::*;
    use kms_fields_tests::sea::{person, pg, sqlite};
    use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

    async fn save(
        db: &DatabaseConnection,
        kms: &Kms,
        email: &str,
    ) -> kms_fields::Result<person::Model> {
        let mut p = person::Model::default();
        p.set_email(kms, Some(email)).await?;
        kms_fields_seaorm::insert(db, kms, &mut p).await?;
        Ok(p)
    }

    macro_rules! seaorm_blind_index {
        ($name:ident, $connect:ident) => {
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                let (_g, db) = $connect().await;
                let kms = kms();
                for e in ["Ada@Example.org", "grace@example.org"] {
                    save(&db, &kms, e).await.unwrap();
                }
                let wanted = person::Model::email_bidx_async(&kms, "ADA@example.org ")
                    .await
                    .unwrap();
                let found = person::Entity::find()
                    .filter(person::Column::EmailBidx.eq(wanted))
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    found.email(&Kms::new()).await.unwrap().as_deref(),
                    Some("Ada@Example.org")
                );
                let many =
                    person::Model::email_bidx_in(&kms, &["grace@example.org", "ada@example.org"])
                        .await
                        .unwrap();
                let n = person::Entity::find()
                    .filter(person::Column::EmailBidx.is_in(many))
                    .count(&db)
                    .await
                    .unwrap();
                assert_eq!(n, 2);
                let e = save(&db, &kms, "grace@EXAMPLE.org").await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Database, "unique: {e}");
                // rows written before the index: backfilled
                db_reset_bidx(&db).await;
                let s = kms_fields_seaorm::rotation::backfill_blind_index::<person::Model, _>(
                    &db,
                    &kms,
                    person::Model::EMAIL_BIDX,
                    Default::default(),
                )
                .await
                .unwrap();
                assert_eq!(s.done, 2);
                let n = person::Entity::find()
                    .filter(person::Column::EmailBidx.is_not_null())
                    .count(&db)
                    .await
                    .unwrap();
                assert_eq!(n, 2);

                // update_encrypted writes the new index: the new address finds the record,
                // the old one finds nothing and is free again
                let mut ada = found;
                ada.set_email(&kms, Some("ada@new.example.org"))
                    .await
                    .unwrap();
                kms_fields_seaorm::update_encrypted(&db, &kms, &mut ada)
                    .await
                    .unwrap();
                let by = |email: &'static str| {
                    let (kms, db) = (&kms, &db);
                    async move {
                        let b = person::Model::email_bidx_async(kms, email).await.unwrap();
                        person::Entity::find()
                            .filter(person::Column::EmailBidx.eq(b))
                            .count(db)
                            .await
                            .unwrap()
                    }
                };
                assert_eq!(by("ADA@new.example.org").await, 1);
                assert_eq!(by("ada@example.org").await, 0, "no stale index");
                save(&db, &kms, "ada@example.org").await.unwrap();
            }
        };
    }

    async fn db_reset_bidx(db: &DatabaseConnection) {
        use sea_orm::ConnectionTrait;
        db.execute_unprepared("UPDATE people SET email_bidx = NULL")
            .await
            .unwrap();
    }

    seaorm_blind_index!(seaorm_on_postgres, pg);
    seaorm_blind_index!(seaorm_on_sqlite, sqlite);
}
