//! Payments domain logic: no gRPC, no SQL.

pub mod attachment;
pub mod payment_intent;
pub mod payment_method;
pub mod payment_record;
pub mod refund;
pub mod refund_claim;
