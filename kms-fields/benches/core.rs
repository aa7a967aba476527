//! Core benchmarks: attribute encrypt + decrypt (100 B, 10 KB), test-key and local-key
//! wrap/unwrap, and (with `KMS_FIELDS_MOTO_URL` set and feature `aws`) an AWS round trip
//! against moto over HTTP.
//!
//!     cargo bench -p kms-fields --features aws --bench core
//!     cargo bench -p kms-fields --features aws,aws-lc --bench core   # aws-lc-rs backend
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kms_fields::cipher::{self, AttributeOptions, Backend};
use kms_fields::provider::{LocalKey, Provider, TestKey};
use kms_fields::{DataKey, EncryptionContext, KeySpec, Kms};

fn attribute(c: &mut Criterion) {
    let key = DataKey::generate().unwrap();
    for size in [100usize, 10 * 1024] {
        let data = vec![0x5a; size];
        let mut g = c.benchmark_group(format!("attribute/{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        for backend in Backend::all() {
            g.bench_function(format!("encrypt+decrypt/{backend:?}"), |b| {
                b.iter(|| {
                    let nonce = [7u8; 12];
                    let ct = cipher::encrypt_with_nonce(
                        *backend,
                        &key,
                        &nonce,
                        black_box(&data),
                        AttributeOptions::native("email"),
                    )
                    .unwrap();
                    cipher::decrypt_with(*backend, &key, &ct, AttributeOptions::native("email"))
                        .unwrap()
                })
            });
        }
        // issue 14's per-operation figures, with the same work minus encryption beside them
        let ct = cipher::encrypt_to_base64(&key, &data, AttributeOptions::native("email")).unwrap();
        g.bench_function("encrypt/base64 text column", |b| {
            b.iter(|| {
                cipher::encrypt_to_base64(&key, black_box(&data), AttributeOptions::native("email"))
                    .unwrap()
            })
        });
        g.bench_function("decrypt/base64 text column", |b| {
            b.iter(|| {
                cipher::decrypt_base64(&key, black_box(&ct), AttributeOptions::native("email"))
                    .unwrap()
            })
        });
        g.bench_function("baseline: copy + base64 encode (no encryption)", |b| {
            b.iter(|| kms_fields::encoding::strict_encode(black_box(&data).to_vec().as_slice()))
        });
        g.bench_function("baseline: base64 decode + copy (no encryption)", |b| {
            b.iter(|| kms_fields::encoding::strict_decode(black_box(&ct)).unwrap())
        });
        g.bench_function(
            "encrypt/base64, first use of a data key (key schedule)",
            |b| {
                b.iter(|| {
                    let fresh = DataKey::from_slice(key.expose_secret()).unwrap();
                    cipher::encrypt_to_base64(
                        &fresh,
                        black_box(&data),
                        AttributeOptions::native("email"),
                    )
                    .unwrap()
                })
            },
        );
        g.bench_function("encrypt+decrypt/base64 text column", |b| {
            b.iter(|| {
                let ct = cipher::encrypt_to_base64(
                    &key,
                    black_box(&data),
                    AttributeOptions::native("email"),
                )
                .unwrap();
                cipher::decrypt_base64(&key, &ct, AttributeOptions::native("email")).unwrap()
            })
        });
        g.finish();
    }
}

fn providers(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = EncryptionContext::for_model("User", 42);
    let key = DataKey::generate().unwrap();
    let mut g = c.benchmark_group("wrap+unwrap");
    g.bench_function("test key", |b| {
        b.iter(|| {
            rt.block_on(async {
                let ct = TestKey
                    .wrap("insecure-test-key", key.expose_secret(), Some(&ctx))
                    .await
                    .unwrap();
                TestKey
                    .unwrap("insecure-test-key", &ct, Some(&ctx))
                    .await
                    .unwrap()
            })
        })
    });
    let local = LocalKey::new().with_key("bench", &[9u8; 32]).unwrap();
    g.bench_function("local key", |b| {
        b.iter(|| {
            rt.block_on(async {
                let ct = local
                    .wrap("local/bench", key.expose_secret(), Some(&ctx))
                    .await
                    .unwrap();
                local.unwrap("local/bench", &ct, Some(&ctx)).await.unwrap()
            })
        })
    });
    // through Kms (audit event + counters + key column encoding)
    let kms = Kms::new();
    let spec = KeySpec::new().key_id("insecure-test-key");
    g.bench_function(
        "test key via Kms, from synchronous code (blocking facade)",
        |b| {
            let kms = Kms::new();
            let spec = KeySpec::new().key_id("insecure-test-key");
            b.iter(|| {
                let stored =
                    kms_fields::blocking::run(
                        kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx.clone()))),
                    )
                    .unwrap();
                kms_fields::blocking::run(
                    kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx.clone()))),
                )
                .unwrap()
            })
        },
    );
    g.bench_function("test key via Kms (stored vN: value)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let c2 = ctx.clone();
                let stored = kms
                    .wrap_data_key(&spec, None, &key, &move |_| Ok(Some(c2.clone())))
                    .await
                    .unwrap();
                let c3 = ctx.clone();
                kms.unwrap_data_key(&spec, None, &stored, &move |_| Ok(Some(c3.clone())))
                    .await
                    .unwrap()
            })
        })
    });
    #[cfg(feature = "aws")]
    if let Ok(url) = std::env::var("KMS_FIELDS_MOTO_URL") {
        use kms_fields::provider::aws::AwsProvider;
        let (client, arn) = rt.block_on(async {
            let conf = AwsProvider::default_config()
                .endpoint_url(url)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_kms::config::Credentials::new(
                    "t", "t", None, None, "static",
                ))
                .load()
                .await;
            let client = aws_sdk_kms::Client::new(&conf);
            let arn = client
                .create_key()
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .arn
                .unwrap();
            (client, arn)
        });
        let aws = AwsProvider::new(client);
        g.bench_function("aws on moto (HTTP)", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let ct = aws
                        .wrap(&arn, key.expose_secret(), Some(&ctx))
                        .await
                        .unwrap();
                    aws.unwrap(&arn, &ct, Some(&ctx)).await.unwrap()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, attribute, providers);
criterion_main!(benches);
