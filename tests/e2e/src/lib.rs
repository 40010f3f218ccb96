//! e2e helpers (skeleton).
