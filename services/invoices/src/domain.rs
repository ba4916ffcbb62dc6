//! Invoices domain logic: no gRPC, no SQL.

pub mod amounts;
pub mod balance;
pub mod charge;
pub mod credit;
pub mod invoice;
pub mod numbering;
