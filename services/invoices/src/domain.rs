//! Invoices domain logic: no gRPC, no SQL.

pub mod amounts;
pub mod invoice;
