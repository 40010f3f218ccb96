//! sandbox (skeleton).
