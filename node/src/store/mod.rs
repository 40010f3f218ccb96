//! The one redb file: tables, schema version, group commit, quarantine.
