//! ed25519 keys and signatures over manifests (ring, which rustls already brings in; none of
//! the cryptography is written here).
//!
//! Verification fails closed: no configured key, no signature, a signature that is not 64
//! bytes, a key that is not trusted, or a signature that does not verify over the exact
//! bytes are all refusals, and the manifest is parsed only after its signature verified.
//!
//! Formats (text, so they fit TOML and e-mail):
//! - public key: the 32 raw bytes in base64, e.g. `[ota] public_keys = ["0cZ…="]`;
//! - key id: the first 8 bytes of the public key's SHA-256, hex (`1a2b3c4d5e6f7081`);
//! - signing key file (`wms-node ota keygen`): `#` comment lines and one line of base64 of
//!   the PKCS#8 v2 document ring generates; mode 0600.

use super::OtaError;
use super::manifest::{Manifest, SignedManifest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// An ed25519 public key trusted to sign manifests.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses the base64 form; the error says what is wrong.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| format!("not base64 ({e})"))?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|v: Vec<u8>| format!("{} bytes, an ed25519 public key has 32", v.len()))?;
        Ok(PublicKey(raw))
    }

    /// The raw key.
    pub fn from_bytes(raw: [u8; 32]) -> PublicKey {
        PublicKey(raw)
    }

    /// The id manifests name it by: hex of the first 8 bytes of its SHA-256.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    /// Whether `signature` is this key's signature over exactly `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

/// The keys whose signatures are accepted (`[ota] public_keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(pub Vec<PublicKey>);

impl TrustedKeys {
    /// Checks `signed` and returns its manifest: fails closed on every doubt.
    pub fn verify(&self, signed: &SignedManifest) -> Result<Manifest, OtaError> {
        if self.0.is_empty() {
            return Err(OtaError::NoTrustedKeys);
        }
        if signed.signature.is_empty() {
            return Err(OtaError::MissingSignature("empty or not base64".into()));
        }
        let Some(key) = self
            .0
            .iter()
            .find(|k| k.verifies(&signed.manifest, &signed.signature))
        else {
            // Only to name the problem: the bytes are not trusted and nothing else is read.
            #[derive(serde::Deserialize)]
            struct Peek {
                key_id: String,
            }
            let claimed = serde_json::from_slice::<Peek>(&signed.manifest)
                .map(|p| p.key_id.chars().take(32).collect::<String>())
                .unwrap_or_else(|_| "(none)".into());
            return Err(if self.0.iter().any(|k| k.key_id() == claimed) {
                OtaError::BadSignature { key_id: claimed }
            } else {
                OtaError::UnknownKey { key_id: claimed }
            });
        };
        let manifest = Manifest::parse(&signed.manifest)?;
        if manifest.key_id != key.key_id() {
            // Signed by a trusted key, but naming another: a mistake in the signing tool or
            // a confused fleet server; refuse rather than guess which was meant.
            return Err(OtaError::BadManifest(format!(
                "key_id {} is not the key that signed it ({})",
                manifest.key_id,
                key.key_id()
            )));
        }
        Ok(manifest)
    }

    /// The key ids, for status output.
    pub fn ids(&self) -> Vec<String> {
        self.0.iter().map(PublicKey::key_id).collect()
    }
}

/// A private signing key (the fleet operator's; never on a gateway).
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key().key_id())
    }
}

impl SigningKey {
    /// A new random key and the text of its key file.
    pub fn generate() -> Result<(SigningKey, String), String> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "the system's random number generator failed".to_string())?;
        let key = SigningKey::from_pkcs8(doc.as_ref())?;
        let text = format!(
            "# wms-node OTA signing key (ed25519, PKCS#8), key id {}. Keep it secret.\n{}\n",
            key.public_key().key_id(),
            BASE64.encode(doc.as_ref())
        );
        Ok((key, text))
    }

    /// Reads a key file's text.
    pub fn from_text(text: &str) -> Result<SigningKey, String> {
        let b64: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let der = BASE64
            .decode(b64)
            .map_err(|e| format!("not a wms-node signing key (base64: {e})"))?;
        SigningKey::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(|pair| SigningKey { pair })
            .map_err(|e| format!("not an ed25519 PKCS#8 key ({e})"))
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// Signs `message` (the manifest's exact bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(key: &SigningKey) -> Vec<u8> {
        Manifest {
            version: "1.2.3".into(),
            url: "https://u.example/a".into(),
            size: 3,
            sha256: "0".repeat(64),
            key_id: key.public_key().key_id(),
        }
        .to_bytes()
    }

    #[test]
    fn a_signed_manifest_verifies_and_parses() {
        let (key, text) = SigningKey::generate().unwrap();
        let again = SigningKey::from_text(&text).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let bytes = manifest_for(&key);
        let signed = SignedManifest {
            signature: key.sign(&bytes),
            manifest: bytes,
        };
        let trusted = TrustedKeys(vec![key.public_key()]);
        assert_eq!(trusted.verify(&signed).unwrap().version, "1.2.3");
        // The public key's text form round-trips.
        let pk = PublicKey::parse(&key.public_key().to_string()).unwrap();
        assert_eq!(pk, key.public_key());
    }

    #[test]
    fn every_doubt_is_a_refusal() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let bytes = manifest_for(&key);
        let sig = key.sign(&bytes);
        let trusted = TrustedKeys(vec![key.public_key()]);

        let no_keys = TrustedKeys::default().verify(&SignedManifest {
            manifest: bytes.clone(),
            signature: sig.clone(),
        });
        assert!(matches!(no_keys, Err(OtaError::NoTrustedKeys)));

        let unsigned = trusted.verify(&SignedManifest {
            manifest: bytes.clone(),
            signature: vec![],
        });
        assert!(matches!(unsigned, Err(OtaError::MissingSignature(_))));

        // One byte changed after signing: a space added at the end.
        let mut changed = bytes.clone();
        changed.insert(changed.len() - 1, b' ');
        let tampered = trusted.verify(&SignedManifest {
            manifest: changed,
            signature: sig.clone(),
        });
        assert!(matches!(tampered, Err(OtaError::BadSignature { .. })));

        let short = trusted.verify(&SignedManifest {
            manifest: bytes.clone(),
            signature: sig[..63].to_vec(),
        });
        assert!(matches!(short, Err(OtaError::BadSignature { .. })));

        // Signed by a key the node does not trust.
        let foreign = manifest_for(&other);
        let untrusted = trusted.verify(&SignedManifest {
            signature: other.sign(&foreign),
            manifest: foreign,
        });
        assert!(matches!(untrusted, Err(OtaError::UnknownKey { .. })));
    }

    #[test]
    fn a_rotated_key_set_accepts_either_key() {
        let (old, _) = SigningKey::generate().unwrap();
        let (new, _) = SigningKey::generate().unwrap();
        let trusted = TrustedKeys(vec![old.public_key(), new.public_key()]);
        for key in [&old, &new] {
            let bytes = manifest_for(key);
            let signed = SignedManifest {
                signature: key.sign(&bytes),
                manifest: bytes,
            };
            assert!(trusted.verify(&signed).is_ok());
        }
    }

    #[test]
    fn public_keys_of_the_wrong_length_are_named() {
        assert!(PublicKey::parse("AAAA").unwrap_err().contains("3 bytes"));
        assert!(PublicKey::parse("%%").unwrap_err().contains("base64"));
    }
}
