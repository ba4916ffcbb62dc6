//! Invoices domain logic: no gRPC, no SQL.

pub mod amounts;
