//! Token validation with a warm key cache (issue: authentication). Run with
//! `cargo bench --bench identity`. The issuer is the demo's development issuer on loopback
//! (ES256); the measured path is the one every request takes: size check, issuer choice,
//! key lookup, signature and claim validation, principal mapping.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use passerelle::config::IdentityConfig;
use passerelle::identity::{Authenticator, OidcAuthenticator};

fn token_validation(c: &mut Criterion) {
    passerelle::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (issuer, auth, token) = rt.block_on(async {
        let issuer = passerelle::demo::DevIssuer::start().await.unwrap();
        let config = IdentityConfig {
            issuers: vec![issuer.issuer_config()],
            ..IdentityConfig::default()
        };
        let auth = OidcAuthenticator::start(&config).unwrap();
        assert!(auth.wait_ready(Duration::from_secs(10)).await);
        let persona = passerelle::demo::personas::persona("chercheuse-diabete").unwrap();
        let token = issuer.token_for(persona).unwrap();
        (issuer, auth, token)
    });
    c.bench_function("validate ES256 access token (warm keys)", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(&token, None).await.unwrap() });
    });
    let garbage = "eyJhbGciOiJFUzI1NiJ9.e30.AAAA";
    c.bench_function("refuse a malformed token", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(garbage, None).await.unwrap_err() });
    });
    drop(issuer);
}

criterion_group!(benches, token_validation);
criterion_main!(benches);
