//! The HTTP routes. Handlers are thin: parse, authorize, call the store or the domain, answer.

pub mod admin;
pub mod alerts;
pub mod auth;
pub mod federation;
pub mod health;
pub mod ingest;
pub mod latest;
pub mod ml;
pub mod oauth;
pub mod readings;
pub mod reports;
pub mod stations;
pub mod well_known;
