use std::collections::BTreeMap;

use super::*;

const SECRET: &str = "correct horse battery staple";

fn key(seed_byte: u8) -> PrivateKey {
    PrivateKey::from_ed25519_seed(&[seed_byte; 32]).unwrap()
}

fn namespaces(list: &[&str]) -> Vec<String> {
    list.iter().map(|ns| ns.to_string()).collect()
}

fn environ(variable: &str, alternatives: &[&str]) -> BTreeMap<String, Vec<String>> {
    let alternatives = alternatives.iter().map(|a| a.to_string()).collect();
    BTreeMap::from([(variable.to_string(), alternatives)])
}

/// Seals `plaintext` as is, so tests can build payloads `encrypt` never makes.
fn seal_raw(key: &PrivateKey, namespace: &str, secret: &str, plaintext: &[u8]) -> String {
    let payload = key
        .public_key()
        .montgomery()
        .seal(&mut crypto_box::aead::OsRng, plaintext)
        .unwrap();
    EncryptedValue {
        key_hash: key.public_key().hash(),
        namespace_hash: short_hash(namespace.as_bytes()),
        secret_hash: short_hash(secret.as_bytes()),
        payload,
    }
    .to_string()
}

#[test]
fn encrypt_decrypt_round_trip() {
    let key = key(1);
    for namespace in ["", "myapp", "project1.web"] {
        let value = encrypt(key.public_key(), namespace, SECRET.as_bytes()).unwrap();
        let (got_namespace, got_secret) = decrypt(std::slice::from_ref(&key), &value).unwrap();
        assert_eq!(got_namespace, namespace);
        assert_eq!(got_secret, SECRET.as_bytes());
    }
}

#[test]
fn encrypt_writes_hashes_in_clear() {
    let key = key(1);
    let value = encrypt(key.public_key(), "myapp", b"the_secret").unwrap();
    let fields: Vec<&str> = value.split(':').collect();
    assert_eq!(fields[0], "v2");
    assert_eq!(
        fields[1],
        encode_hash(&short_hash(key.public_key().as_bytes()))
    );
    assert_eq!(fields[2], "KqWSX0BY");
    assert_eq!(fields[3], "8MtOoWUX");
}

#[test]
fn encrypt_is_randomized() {
    let key = key(1);
    let first = encrypt(key.public_key(), "", SECRET.as_bytes()).unwrap();
    let second = encrypt(key.public_key(), "", SECRET.as_bytes()).unwrap();
    assert_ne!(first, second);
}

#[test]
fn encrypt_rejects_invalid_namespace() {
    let err = encrypt(key(1).public_key(), "my app", b"x").unwrap_err();
    assert!(
        matches!(err, SecretsError::InvalidNamespace { .. }),
        "{err}"
    );
}

#[test]
fn decrypt_picks_key_by_hash() {
    let keys = [key(1), key(2), key(3)];
    let value = encrypt(keys[2].public_key(), "", b"three").unwrap();
    assert_eq!(decrypt(&keys, &value).unwrap().1, b"three");
}

#[test]
fn decrypt_rejects_other_key() {
    let value = encrypt(key(1).public_key(), "", SECRET.as_bytes()).unwrap();
    let err = decrypt(&[key(2)], &value).unwrap_err();
    assert!(matches!(err, SecretsError::KeyHashMismatch { .. }), "{err}");
    let expected = encode_hash(&key(2).public_key().hash());
    assert!(err.to_string().contains(&expected), "{err}");
}

#[test]
fn decrypt_rejects_corrupted_payload() {
    let key = key(1);
    let value = encrypt(key.public_key(), "", SECRET.as_bytes()).unwrap();
    let mut parsed: EncryptedValue = value.parse().unwrap();
    let last = parsed.payload.len() - 1;
    parsed.payload[last] ^= 1;
    let err = decrypt(&[key], &parsed.to_string()).unwrap_err();
    assert!(matches!(err, SecretsError::OpenPayload { .. }), "{err}");
}

#[test]
fn decrypt_rejects_truncated_payload() {
    let key = key(1);
    let mut parsed: EncryptedValue = encrypt(key.public_key(), "", b"x")
        .unwrap()
        .parse()
        .unwrap();
    parsed.payload.truncate(20);
    let err = decrypt(&[key], &parsed.to_string()).unwrap_err();
    assert!(matches!(err, SecretsError::CorruptPayload { .. }), "{err}");
}

#[test]
fn decrypt_rejects_wrong_secret_hash() {
    let key = key(1);
    let value = seal_raw(&key, "", "other", format!(":{SECRET}").as_bytes());
    let err = decrypt(&[key], &value).unwrap_err();
    assert!(matches!(err, SecretsError::SecretHashMismatch), "{err}");
}

#[test]
fn decrypt_rejects_wrong_namespace_hash() {
    let key = key(1);
    let value = seal_raw(&key, "other", SECRET, format!("myapp:{SECRET}").as_bytes());
    let err = decrypt(&[key], &value).unwrap_err();
    assert!(matches!(err, SecretsError::NamespaceHashMismatch), "{err}");
}

#[test]
fn decrypt_rejects_payload_without_namespace() {
    let key = key(1);
    let value = seal_raw(&key, "", SECRET, SECRET.as_bytes());
    let err = decrypt(&[key], &value).unwrap_err();
    assert!(matches!(err, SecretsError::CorruptPayload { .. }), "{err}");
}

#[test]
fn decrypt_rejects_malformed_values() {
    let keys = [key(1)];
    let cases = [
        "plain-text-password",
        "v1:AAAAAAAA:AAAAAAAA:AAAAAAAA:AAAA",
        "v2:AAAAAAAA:AAAAAAAA:AAAAAAAA",
        "v2:AAAA:AAAAAAAA:AAAAAAAA:AAAA",
        "v2:AAAAAAAA:AAAAAAAA:AAAAAAAA:###",
    ];
    for value in cases {
        assert!(decrypt(&keys, value).is_err(), "{value}");
    }
}

#[test]
fn check_key_compares_key_hash() {
    let value = encrypt(key(1).public_key(), "", b"x").unwrap();
    assert!(check_key(key(1).public_key(), &value));
    assert!(!check_key(key(2).public_key(), &value));
    assert!(!check_key(key(1).public_key(), "garbage"));
}

#[test]
fn environ_first_matching_alternative_wins() {
    let keys = [key(1)];
    let other_key = encrypt(key(2).public_key(), "", b"other key").unwrap();
    let wrong_namespace = encrypt(keys[0].public_key(), "foreign", b"foreign").unwrap();
    let good = encrypt(keys[0].public_key(), "myapp", b"good").unwrap();
    let also_good = encrypt(keys[0].public_key(), "", b"also good").unwrap();
    let secrets = environ(
        "PASSWORD",
        &[&other_key, &wrong_namespace, &good, &also_good],
    );

    let decrypted =
        decrypt_environ_with_keys(&secrets, &keys, &namespaces(&["", "myapp"])).unwrap();

    assert_eq!(decrypted["PASSWORD"], "good");
}

#[test]
fn environ_namespaces_match_exactly() {
    let keys = [key(1)];
    let value = encrypt(keys[0].public_key(), "myapp.web", b"x").unwrap();
    let secrets = environ("PASSWORD", &[&value]);
    for allowed in [&["myapp"][..], &["myapp.we"], &["myapp.web.x"], &[""]] {
        let err = decrypt_environ_with_keys(&secrets, &keys, &namespaces(allowed)).unwrap_err();
        let SecretsError::DecryptVariable { failures, .. } = &err else {
            panic!("unexpected error {err}");
        };
        assert!(
            matches!(failures[0], SecretsError::NamespaceNotAllowed { .. }),
            "{err}"
        );
    }
}

#[test]
fn environ_error_lists_every_alternative_without_secrets() {
    let keys = [key(1)];
    let other_key = encrypt(key(2).public_key(), "", SECRET.as_bytes()).unwrap();
    let wrong_namespace = encrypt(keys[0].public_key(), "foreign", SECRET.as_bytes()).unwrap();
    let wrong_hash = seal_raw(&keys[0], "", "other", format!(":{SECRET}").as_bytes());
    let no_prefix = seal_raw(&keys[0], "", SECRET, SECRET.as_bytes());
    let secrets = environ(
        "DB_PASSWORD",
        &[
            &other_key,
            &wrong_namespace,
            &wrong_hash,
            &no_prefix,
            "hunter2",
        ],
    );

    let err = decrypt_environ_with_keys(&secrets, &keys, &namespaces(&[""])).unwrap_err();
    let message = err.to_string();

    assert!(message.contains("DB_PASSWORD"), "{message}");
    assert!(
        message.contains("alternative 1: key hash differs"),
        "{message}"
    );
    assert!(
        message.contains("alternative 2: namespace not allowed"),
        "{message}"
    );
    assert!(message.contains("\"foreign\""), "{message}");
    assert!(
        message.contains("alternative 3: secret hash mismatch"),
        "{message}"
    );
    assert!(
        message.contains("alternative 4: corrupt payload"),
        "{message}"
    );
    assert!(
        message.contains("alternative 5: not an encrypted value"),
        "{message}"
    );
    assert!(!message.contains("correct horse"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!format!("{err:?}").contains("correct horse"));
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn environ_rejects_nul_and_non_utf8_secrets() {
    let keys = [key(1)];
    let nul = encrypt(keys[0].public_key(), "", b"a\0b").unwrap();
    let binary = encrypt(keys[0].public_key(), "", &[0xff, 0xfe]).unwrap();
    let allowed = namespaces(&[""]);

    let err = decrypt_environ_with_keys(&environ("A", &[&nul]), &keys, &allowed).unwrap_err();
    assert!(err.to_string().contains("NUL byte"), "{err}");
    let err = decrypt_environ_with_keys(&environ("A", &[&binary]), &keys, &allowed).unwrap_err();
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}

#[test]
fn environ_with_no_secrets_reads_no_key_file() {
    let missing = Path::new("/nonexistent/lithos/secret.key");
    let decrypted = decrypt_environ(&BTreeMap::new(), missing, &[]).unwrap();
    assert!(decrypted.is_empty());
}

#[test]
fn environ_variable_without_alternatives_fails() {
    let err = decrypt_environ_with_keys(&environ("EMPTY", &[]), &[key(1)], &namespaces(&[""]))
        .unwrap_err();
    assert!(err.to_string().contains("no alternatives"), "{err}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip_any_secret(
            namespace in "[a-zA-Z0-9_.-]{0,20}",
            secret in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let key = key(9);
            let value = encrypt(key.public_key(), &namespace, &secret).unwrap();
            let (got_namespace, got_secret) = decrypt(&[key], &value).unwrap();
            prop_assert_eq!(got_namespace, namespace);
            prop_assert_eq!(got_secret, secret);
        }

        #[test]
        fn flipped_payload_bit_never_decrypts(
            secret in "[ -~]{0,40}",
            position in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let key = key(9);
            let mut parsed: EncryptedValue = encrypt(key.public_key(), "", secret.as_bytes())
                .unwrap()
                .parse()
                .unwrap();
            let index = position.index(parsed.payload.len());
            parsed.payload[index] ^= 1 << bit;
            prop_assert!(decrypt(&[key], &parsed.to_string()).is_err());
        }
    }
}
