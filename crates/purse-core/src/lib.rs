//! Purse's domain core: currencies and exact amounts ([`money`]), the nouns of the ledger
//! ([`model`]: parties, accounts, transfers, holds, events), what callers ask and what they
//! are told ([`command`], [`rejection`]), and the state machine that applies batches of
//! commands ([`ledger::Ledger`]).
//!
//! This crate does no IO and never reads the clock: every operation is given `now` and
//! returns its outcome plus everything to be written. It depends on nothing but `std`, so
//! the engine, the simulation tests and (later) the HTTP layer all share one truth.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod command;
pub mod invoice;
pub mod ledger;
pub mod model;
pub mod money;
pub mod rating;
pub mod recharge;
pub mod rejection;
pub mod text;
pub mod time;

pub use command::{
    AdjustCategory, AdjustDirection, ChangeNote, Command, CommandResult, Item, Money, NewAccountKind, NewCharge,
    Outcome, PaymentMethod,
};
pub use ledger::{BatchOutput, ClientKey, Ledger, Lookups, Missing, MoneyNote, Need, NextIds, Prior};
pub use model::*;
pub use money::{Amount, AmountError, Currency, CurrencyCode};
pub use rejection::Rejection;
