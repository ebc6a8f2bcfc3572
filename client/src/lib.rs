//! The `postern` CLI as a library: saved login, the admin API client, and the
//! local listener that turns each accepted TCP connection into a session.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod cli;
pub mod config;
pub mod connect;
pub mod connections;
pub mod forward;
pub mod login;
pub mod loopback;
pub mod oauth;
pub mod policy;
pub mod when;
