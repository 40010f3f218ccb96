//! The `wms-bridge` daemon (placeholder while the core is built).
