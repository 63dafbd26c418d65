//! The HTTP routes. Handlers are thin: parse, authorize, call the store or the domain, answer.

pub mod health;
pub mod ingest;
pub mod latest;
pub mod readings;
pub mod stations;
