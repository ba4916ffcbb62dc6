//! SQL for the invoices tables. Every function takes the account and the caller's executor or
//! transaction, so one use case composes several writes and commits once.

pub mod balance;
pub mod invoice_credits;
pub mod invoice_items;
pub mod invoice_lines;
pub mod invoice_lists;
pub mod invoice_numbers;
pub mod invoice_payments;
pub mod invoices;
pub mod quarantined_events;
pub mod tax_rates;

use settle_platform::ApiError;

/// A failed read or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("a stored document could not be decoded")]
    Decode(#[from] prost::DecodeError),
    #[error("a stored amount would overflow")]
    Overflow(#[from] settle_money::AmountError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => ApiError::from(error),
            StoreError::Decode(error) => ApiError::internal("A stored object could not be read", &error),
            StoreError::Overflow(error) => ApiError::invalid_param(
                "amount",
                settle_proto::common::v1::ErrorReason::AmountTooLarge,
                format!("The amount would take a stored total beyond what settle can hold ({error})."),
            ),
        }
    }
}
