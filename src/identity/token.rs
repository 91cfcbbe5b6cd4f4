//! Validation of one access token against one trusted issuer, and claim mapping to a
//! [`Principal`].

use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::JwksKeyStore;
use super::verified::{self, VerifiedTokens};
use super::{AuthError, ClientCertificate, IdentityError, Principal};
use crate::config::{IdentityConfig, IssuerConfig};

/// `typ` values compare as media types: case-insensitive, `application/` optional (RFC 7515
/// 4.1.9, RFC 9068 2.1).
fn same_type(typ: &str, wanted: &str) -> bool {
    let bare = |t: &str| {
        let t = t.trim().to_ascii_lowercase();
        t.strip_prefix("application/")
            .map(str::to_string)
            .unwrap_or(t)
    };
    bare(typ) == bare(wanted)
}

/// Validates tokens of one issuer.
pub struct TokenValidator {
    config: IssuerConfig,
    store: Arc<JwksKeyStore>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    verified: VerifiedTokens,
}

impl TokenValidator {
    pub fn new(
        config: IssuerConfig,
        store: Arc<JwksKeyStore>,
        identity: &IdentityConfig,
    ) -> Result<Self, IdentityError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| match a.as_str() {
                "RS256" => Ok(Algorithm::RS256),
                "PS256" => Ok(Algorithm::PS256),
                "ES256" => Ok(Algorithm::ES256),
                "EdDSA" => Ok(Algorithm::EdDSA),
                other => Err(IdentityError::Issuer(
                    config.issuer.clone(),
                    format!("algorithm `{other}` is not allowed"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            store,
            algorithms,
            leeway: identity.leeway_secs,
            verified: VerifiedTokens::default(),
        })
    }

    pub fn store(&self) -> &JwksKeyStore {
        &self.store
    }

    pub async fn validate(
        &self,
        token: &str,
        client_certificate: Option<&ClientCertificate>,
    ) -> Result<Principal, AuthError> {
        // SECURITY: a token already verified (same bytes, same client certificate) is taken
        // from the cache only before its `exp` and while its signing key is still published;
        // see `verified.rs`.
        let digest = verified::digest(token, client_certificate);
        let now = chrono::Utc::now().timestamp();
        if let Some(principal) = self
            .verified
            .get(&digest, now, |kid| self.store.has_key(kid))
        {
            return Ok(principal);
        }
        let (principal, kid) = self.verify(token, client_certificate).await?;
        self.verified.insert(digest, &principal, &kid, now);
        Ok(principal)
    }

    /// Full validation: signature, algorithm, claims. Returns the principal and the `kid`.
    async fn verify(
        &self,
        token: &str,
        client_certificate: Option<&ClientCertificate>,
    ) -> Result<(Principal, String), AuthError> {
        // SECURITY: only `alg` and `kid` are read from the header; `jwk`, `jku`, `x5u` and
        // `x5c` are ignored: keys come from the issuer's published JWKS and nowhere else.
        // `alg: none` and HMAC algorithms are not in any allow-list.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        // SECURITY: with `require_typ`, only access tokens of that type (RFC 9068 `at+jwt`):
        // an ID token or another JWT signed by the same issuer is not an access token.
        if let Some(wanted) = &self.config.require_typ
            && !header
                .typ
                .as_deref()
                .is_some_and(|typ| same_type(typ, wanted))
        {
            return Err(AuthError::WrongType);
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        let key = match self.store.key(&kid) {
            Some(key) => key,
            None => {
                self.store.refresh_for_unknown_kid().await;
                // SECURITY: keys past `max_key_age_secs` are as good as none (the refresh
                // above is the issuer's chance to confirm them).
                self.store.key(&kid).ok_or_else(|| {
                    if self.store.keys_too_old() {
                        AuthError::KeysTooOld
                    } else {
                        AuthError::UnknownKey
                    }
                })?
            }
        };
        // SECURITY: the key's own algorithm must match (no RSA key used as an HMAC secret, no
        // PS256 token verified by a key published for RS256).
        if !key.algorithms.contains(&header.alg) {
            return Err(AuthError::KeyAlgorithmMismatch);
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "iat"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| map_jwt_error(&e))?;
        let claims = data.claims;
        self.check_issued_at(&claims)?;
        Ok((self.principal(&claims, client_certificate)?, kid))
    }

    fn check_issued_at(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let iat = claims
            .get("iat")
            .and_then(Value::as_f64)
            .ok_or(AuthError::BadClaim("iat"))?;
        let now = chrono::Utc::now().timestamp() as f64;
        if iat > now + self.leeway as f64 {
            return Err(AuthError::IssuedInFuture);
        }
        Ok(())
    }

    fn principal(
        &self,
        claims: &Map<String, Value>,
        client_certificate: Option<&ClientCertificate>,
    ) -> Result<Principal, AuthError> {
        let c = &self.config;
        let subject = optional_string(claims, &c.subject_claim, "sub")?
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingClaim("sub"))?;
        // SECURITY: an attribute counts only from an issuer trusted to assert it (`claims`);
        // from any other it is ignored, as if absent (rules that need it deny).
        let trusted = |attribute: &str| c.asserts(attribute);
        let organisation_siret = if trusted("organisation") {
            optional_string(claims, &c.organisation_claim, "siret")?.filter(|s| {
                let ok = s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit());
                if !ok {
                    // A malformed organisation stays missing: rules that need it deny.
                    tracing::warn!("organisation claim is not a 14-digit SIRET; ignored");
                }
                ok
            })
        } else {
            None
        };
        let certificate_bound = check_binding(claims, client_certificate)?;
        Ok(Principal {
            issuer: c.issuer.clone(),
            issuer_name: c.policy_name().to_string(),
            idp_id: if trusted("idp") {
                optional_string(claims, &c.idp_claim, "idp_id")?
            } else {
                None
            },
            subject,
            organisation_siret,
            groups: if trusted("groups") {
                string_list(claims, &c.groups_claim, "groups")?
            } else {
                Vec::new()
            },
            roles: if trusted("roles") {
                string_list(claims, &c.roles_claim, "roles")?
            } else {
                Vec::new()
            },
            email: if trusted("email") {
                optional_string(claims, &c.email_claim, "email")?
            } else {
                None
            },
            client_id: match optional_string(claims, "client_id", "client_id")? {
                Some(id) => Some(id),
                None => optional_string(claims, "azp", "azp")?,
            },
            client_certificate: client_certificate.map(|c| c.thumbprint.clone()),
            certificate_bound,
            expires_at: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
        })
    }
}

/// RFC 8705: a token carrying `cnf.x5t#S256` is usable only over a TLS connection that
/// presented that very certificate. Returns whether the token is certificate-bound.
fn check_binding(
    claims: &Map<String, Value>,
    client_certificate: Option<&ClientCertificate>,
) -> Result<bool, AuthError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(false);
    };
    let Some(expected) = cnf.get("x5t#S256") else {
        return Ok(false);
    };
    let expected = expected.as_str().ok_or(AuthError::BadClaim("cnf"))?;
    // SECURITY: a bound token without the matching certificate is refused.
    match client_certificate {
        Some(cert) if constant_time_eq(cert.thumbprint.as_bytes(), expected.as_bytes()) => Ok(true),
        _ => Err(AuthError::CertificateBindingMismatch),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Looks a claim up by its exact name, then as a dotted path (`realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

pub(super) fn optional_string(
    claims: &Map<String, Value>,
    name: &str,
    label: &'static str,
) -> Result<Option<String>, AuthError> {
    match claim(claims, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // SECURITY: a claim of an unexpected type is a doubt: refuse the token.
        Some(_) => Err(AuthError::BadClaim(label)),
    }
}

pub(super) fn string_list(
    claims: &Map<String, Value>,
    name: &str,
    label: &'static str,
) -> Result<Vec<String>, AuthError> {
    match claim(claims, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(AuthError::BadClaim(label))
            })
            .collect(),
        Some(_) => Err(AuthError::BadClaim(label)),
    }
}

fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm => AuthError::KeyAlgorithmMismatch,
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "aud" => AuthError::MissingClaim("aud"),
            "exp" => AuthError::MissingClaim("exp"),
            "iss" => AuthError::MissingClaim("iss"),
            "iat" => AuthError::MissingClaim("iat"),
            _ => AuthError::Invalid,
        },
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        _ => AuthError::Invalid,
    }
}

/// Reads `iss` from the payload *without verifying anything*, only to choose which trusted
/// issuer's keys to verify with. Nothing else from an unverified token is used.
pub fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    match claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(AuthError::BadClaim("iss")),
        None => Err(AuthError::MissingClaim("iss")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn dotted_claim_paths_reach_nested_roles() {
        let claims = map(json!({"realm_access": {"roles": ["operateur"]}}));
        assert_eq!(
            string_list(&claims, "realm_access.roles", "roles").unwrap(),
            vec!["operateur"]
        );
    }

    #[test]
    fn claims_of_the_wrong_type_refuse_the_token() {
        let claims = map(json!({"groups": [1, 2], "sub": 42}));
        assert_eq!(
            string_list(&claims, "groups", "groups"),
            Err(AuthError::BadClaim("groups"))
        );
        assert_eq!(
            optional_string(&claims, "sub", "sub"),
            Err(AuthError::BadClaim("sub"))
        );
    }

    #[test]
    fn a_bound_token_needs_the_very_certificate() {
        let claims = map(json!({"cnf": {"x5t#S256": "abc"}}));
        let right = ClientCertificate {
            thumbprint: "abc".into(),
        };
        let wrong = ClientCertificate {
            thumbprint: "abd".into(),
        };
        assert_eq!(check_binding(&claims, Some(&right)), Ok(true));
        assert_eq!(
            check_binding(&claims, Some(&wrong)),
            Err(AuthError::CertificateBindingMismatch)
        );
        assert_eq!(
            check_binding(&claims, None),
            Err(AuthError::CertificateBindingMismatch)
        );
        assert_eq!(check_binding(&map(json!({})), None), Ok(false));
    }

    #[test]
    fn unverified_issuer_needs_three_segments() {
        assert_eq!(unverified_issuer("a.b"), Err(AuthError::Malformed));
        assert_eq!(unverified_issuer("a.b.c.d"), Err(AuthError::Malformed));
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#);
        assert_eq!(unverified_issuer(&format!("h.{payload}.s")), Ok("x".into()));
    }
}
