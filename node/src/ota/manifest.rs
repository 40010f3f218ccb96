//! The update manifest and its detached signature.
//!
//! ```json
//! {"version":"0.2.0","url":"https://updates.example/wms-node-0.2.0-aarch64",
//!  "size":11534336,"sha256":"<64 hex>","key_id":"<16 hex>"}
//! ```
//!
//! The signature is ed25519 over the manifest file's **exact bytes** (detached, as minisign
//! and signify do), so no canonical JSON form is needed: whatever bytes were signed are the
//! bytes verified, and only then parsed. It travels as base64 text: in `MANIFEST.sig` beside
//! the file, at `URL.sig` beside a manifest URL, or in the `signature` field of the MQTT
//! `ota_update` message (whose `manifest` field carries the exact bytes in base64).
//! Unknown fields are ignored (they are signed all the same), so later releases can add some.

use super::OtaError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// The largest manifest accepted (a real one is ~250 bytes).
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;

/// The largest artifact accepted: a node binary is ~10 MB; this stops a typo from filling
/// the disk.
pub const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;

/// An update: which version, where to get it, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The version of the build (semver), which its gate must report as its own.
    pub version: String,
    /// Where the artifact (the `wms-node` binary) is downloaded from: `http://` or `https://`.
    pub url: String,
    /// The artifact's size in bytes.
    pub size: u64,
    /// The artifact's SHA-256, lower-case hex.
    pub sha256: String,
    /// The id of the key that signed this manifest ([`super::PublicKey::key_id`]).
    pub key_id: String,
}

impl Manifest {
    /// Parses and checks a manifest's bytes (call only after its signature verified).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, OtaError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(OtaError::BadManifest(format!(
                "{} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| OtaError::BadManifest(format!("not a manifest: {e}")))?;
        m.check()?;
        Ok(m)
    }

    /// The fields' own rules.
    pub fn check(&self) -> Result<(), OtaError> {
        let bad = |s: String| Err(OtaError::BadManifest(s));
        if let Err(e) = semver::Version::parse(&self.version) {
            return bad(format!("version `{}` is not semver: {e}", self.version));
        }
        match reqwest::Url::parse(&self.url) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
            _ => {
                return bad(format!(
                    "url `{}` is not an http:// or https:// URL",
                    super::error::display_url(&self.url)
                ));
            }
        }
        if self.size == 0 || self.size > MAX_ARTIFACT_BYTES {
            return bad(format!(
                "size {} is not between 1 and {MAX_ARTIFACT_BYTES} bytes",
                self.size
            ));
        }
        if !is_hex(&self.sha256, 64) {
            return bad("sha256 is not 64 lower-case hex digits".into());
        }
        if !is_hex(&self.key_id, 16) {
            return bad("key_id is not 16 lower-case hex digits".into());
        }
        Ok(())
    }

    /// The version, parsed (checked by [`Manifest::check`]).
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }

    /// The manifest as it is signed: compact JSON, one line, trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A manifest's exact bytes and its detached signature, as they arrived. This is what every
/// update source (CLI, MQTT, a hawkBit or Mender client) hands to the installer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    /// The manifest's exact bytes (what the signature covers).
    pub manifest: Vec<u8>,
    /// The raw 64-byte ed25519 signature; empty when none came with it (then refused).
    pub signature: Vec<u8>,
}

impl SignedManifest {
    /// From the bytes and the signature's base64 text (a `.sig` file's content; surrounding
    /// whitespace ignored). A signature that is not base64 is kept empty, which fails closed.
    pub fn from_parts(manifest: Vec<u8>, signature_text: &str) -> SignedManifest {
        SignedManifest {
            manifest,
            signature: decode_signature(signature_text).unwrap_or_default(),
        }
    }
}

/// The base64 text of a signature, as `.sig` files and the MQTT message carry it.
pub fn encode_signature(sig: &[u8]) -> String {
    BASE64.encode(sig)
}

/// Decodes a signature's base64 text (whitespace around it ignored).
pub fn decode_signature(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Manifest {
        Manifest {
            version: "0.2.0".into(),
            url: "https://updates.example/wms-node".into(),
            size: 10,
            sha256: "a".repeat(64),
            key_id: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn a_manifest_round_trips_through_its_bytes() {
        let m = good();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(Manifest, &str)> = vec![
            (
                Manifest {
                    version: "two".into(),
                    ..good()
                },
                "version",
            ),
            (
                Manifest {
                    url: "ftp://x/y".into(),
                    ..good()
                },
                "url",
            ),
            (Manifest { size: 0, ..good() }, "size"),
            (
                Manifest {
                    sha256: "A".repeat(64),
                    ..good()
                },
                "sha256",
            ),
            (
                Manifest {
                    key_id: "xyz".into(),
                    ..good()
                },
                "key_id",
            ),
        ];
        for (m, field) in cases {
            let e = Manifest::parse(&m.to_bytes()).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn garbage_is_a_bad_manifest_not_a_panic() {
        for bytes in [&b""[..], b"[]", b"{\"version\":1}", &[0xff; 40]] {
            assert!(matches!(
                Manifest::parse(bytes),
                Err(OtaError::BadManifest(_))
            ));
        }
        assert!(Manifest::parse(&vec![b' '; MAX_MANIFEST_BYTES + 1]).is_err());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = serde_json::to_value(good()).unwrap();
        v["channel"] = "stable".into();
        assert_eq!(
            Manifest::parse(&serde_json::to_vec(&v).unwrap()).unwrap(),
            good()
        );
    }

    #[test]
    fn a_signature_that_is_not_base64_is_empty() {
        assert!(
            SignedManifest::from_parts(vec![], "%%%")
                .signature
                .is_empty()
        );
        assert_eq!(
            SignedManifest::from_parts(vec![], &format!(" {}\n", encode_signature(&[1, 2, 3])))
                .signature,
            vec![1, 2, 3]
        );
    }
}
