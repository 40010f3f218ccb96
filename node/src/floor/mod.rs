//! The warehouse floor over MQTT: scanners, printers, gateway topics, the embedded broker.
//!
//! Not built yet: floor flows arrive with a later issue.
