//! Configuration: the TOML file, `WMS_NODE__SECTION__KEY` overrides, validation.
