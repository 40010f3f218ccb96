//! Why an update was refused or failed. Every variant says what the operator can do; none
//! carries a secret (download URLs are shown without their query string, which may hold a
//! pre-signed token).

use std::path::PathBuf;

/// What the caller should do about an [`OtaError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The update itself is refused (signature, hash, size, downgrade): sending the same
    /// manifest again changes nothing; nothing was installed.
    Refused,
    /// A transient failure (network, a busy installer): applying the same manifest again
    /// later may work; a partial download is kept and resumed.
    Retry,
    /// A local fault (disk, permissions, a damaged state file): fix the box, then retry.
    Local,
}

/// Why an update was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtaError {
    /// The manifest is not the JSON object it must be. Refused.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// No signature came with the manifest (`MANIFEST.sig`, `URL.sig`, or the message's
    /// `signature`). Refused: unsigned updates are never installed.
    #[error("the manifest has no signature ({0}); unsigned updates are never installed")]
    MissingSignature(String),
    /// `[ota] public_keys` is empty. Refused: configure the fleet's public key first.
    #[error(
        "no trusted keys: set [ota] public_keys to the fleet's public key (`wms-node ota keygen` prints it)"
    )]
    NoTrustedKeys,
    /// The manifest names a key that is not configured. Refused.
    #[error("the manifest is signed with key {key_id}, which is not in [ota] public_keys")]
    UnknownKey {
        /// The manifest's `key_id`.
        key_id: String,
    },
    /// The signature does not verify over the manifest's exact bytes. Refused.
    #[error("bad signature: the manifest was not signed by key {key_id}, or was changed after")]
    BadSignature {
        /// The key it claims.
        key_id: String,
    },
    /// The manifest's version is older than the running one. Refused unless forced.
    #[error("{to} is older than the running {from}: refused (use --force to downgrade)")]
    Downgrade {
        /// The running version.
        from: String,
        /// The manifest's.
        to: String,
    },
    /// The manifest's version is the one running. Refused unless forced.
    #[error("{version} is already running (use --force to install it again)")]
    SameVersion {
        /// The version.
        version: String,
    },
    /// An installed update still waits for its trial boot. Restart the node (or wait for
    /// it to restart) before applying another one.
    #[error("{version} is installed and waits for its trial boot: restart the node first")]
    TrialPending {
        /// The pending version.
        version: String,
    },
    /// Another installer (the CLI or the running node) is applying an update. Retry later.
    #[error("another update is being applied (lock {})", lock.display())]
    Busy {
        /// The lock file.
        lock: PathBuf,
    },
    /// One download attempt failed (connection, HTTP status, stall). Retried internally;
    /// surfaces only through [`OtaError::GaveUp`] or when the server refuses outright.
    #[error("download from {url}: {reason}")]
    Download {
        /// The URL without its query string.
        url: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again may help (a 404 will not).
        retryable: bool,
    },
    /// The download made no progress through every retry. Reported as a failure; the
    /// partial file is kept, so applying again resumes.
    #[error(
        "download gave up after {attempts} attempts without progress at {done} of {total} bytes: {last}"
    )]
    GaveUp {
        /// Attempts in a row without a new byte.
        attempts: u32,
        /// Bytes on disk.
        done: u64,
        /// The manifest's size.
        total: u64,
        /// The last attempt's error.
        last: String,
    },
    /// The artifact's size differs from the manifest's. Refused; the file is deleted.
    #[error("wrong size: the manifest says {expected} bytes, the server sent {got}")]
    WrongSize {
        /// The manifest's size.
        expected: u64,
        /// What arrived (at least).
        got: u64,
    },
    /// The artifact's SHA-256 differs from the manifest's. Refused; the file is deleted.
    #[error("wrong SHA-256: the manifest says {expected}, the download is {got}")]
    WrongHash {
        /// The manifest's.
        expected: String,
        /// The file's.
        got: String,
    },
    /// A file under `<data_dir>/ota` could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `ota/state.json` is unreadable. The launcher then runs the package's binary.
    #[error("OTA state {}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl OtaError {
    /// What the caller should do.
    pub fn disposition(&self) -> Disposition {
        match self {
            OtaError::BadManifest(_)
            | OtaError::MissingSignature(_)
            | OtaError::NoTrustedKeys
            | OtaError::UnknownKey { .. }
            | OtaError::BadSignature { .. }
            | OtaError::Downgrade { .. }
            | OtaError::SameVersion { .. }
            | OtaError::WrongSize { .. }
            | OtaError::WrongHash { .. } => Disposition::Refused,
            OtaError::TrialPending { .. } | OtaError::Busy { .. } | OtaError::GaveUp { .. } => {
                Disposition::Retry
            }
            OtaError::Download { retryable, .. } => {
                if *retryable {
                    Disposition::Retry
                } else {
                    Disposition::Refused
                }
            }
            OtaError::Io { .. } | OtaError::State { .. } => Disposition::Local,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OtaError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// A URL as it may be shown: scheme, host, port and path, never the query (pre-signed
/// download URLs carry their token there) or credentials.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_lose_their_query_and_credentials() {
        assert_eq!(
            display_url("https://user:pw@cdn.example/x/wms-node?X-Amz-Signature=abc#f"),
            "https://cdn.example/x/wms-node"
        );
        assert_eq!(display_url("not a url"), "<not a URL>");
    }

    #[test]
    fn refusals_are_not_retried() {
        assert_eq!(
            OtaError::BadSignature { key_id: "k".into() }.disposition(),
            Disposition::Refused
        );
        assert_eq!(
            OtaError::GaveUp {
                attempts: 3,
                done: 1,
                total: 2,
                last: "x".into()
            }
            .disposition(),
            Disposition::Retry
        );
    }
}
