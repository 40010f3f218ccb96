//! The jobs between Taobao and the store: order intake, stock push, shipment push.
//!
//! Not built yet: these arrive with later issues.
