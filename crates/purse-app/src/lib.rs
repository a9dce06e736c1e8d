//! Purse's application layer: between the ledger (`purse-core`, `purse-engine`,
//! `purse-store`) and its edges (the HTTP API, the portal, the command line).
//!
//! [`policy`] is the one authorization policy: every route of the API and every page and
//! form of the portal is an [`policy::Action`], and the policy alone says who may take it,
//! on whose objects, and which fields each role may set. The edges ask; they never decide.
//!
//! This crate knows no HTTP, no HTML and no SQL.

#![forbid(unsafe_code)]

pub mod policy;
