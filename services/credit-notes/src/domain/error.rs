//! Why a credit note was refused. Each variant names what the client sent wrong; the mapping to a
//! gRPC status and reason lives in `grpc::error`.

use settle_money::Amount;

/// A credit note that cannot be issued as asked. Nothing changed anywhere when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("lines[{index}]: {line} is not a line of this invoice.")]
    LineNotOnInvoice { index: usize, line: String },
    #[error("lines[{index}]: {line} has no positive amount to credit.")]
    LineNotCreditable { index: usize, line: String },
    #[error("lines[{index}]: the line would credit nothing; its amount must be positive.")]
    LineAmountNotPositive { index: usize },
    #[error("lines[{index}]: the line's amount is too large.")]
    LineAmountTooLarge { index: usize },
    #[error("lines[{index}]: {line} has a fixed amount; credit it whole (its quantity) or give an amount.")]
    QuantityOfFixedLine { index: usize, line: String },
    #[error("lines[{index}]: {line} has {available} units; {requested} cannot be credited.")]
    QuantityExceedsLine { index: usize, line: String, requested: i64, available: String },
    #[error(
        "lines[{index}]: {line} can only be credited for {remaining} more (other credit notes already credit the rest); {requested} was asked."
    )]
    LineOverCredited { index: usize, line: String, by_quantity: bool, requested: Amount, remaining: Amount },
    #[error("The credit note's total must be positive.")]
    TotalNotPositive,
    #[error("amount ({amount}) must equal the total of the lines, their taxes and shipping ({total}).")]
    AmountMismatch { amount: Amount, total: Amount },
    #[error(
        "The credit note's total ({total}) exceeds what the invoice can still be credited ({available} of its total {invoice_total}; {already_credited} is already credited)."
    )]
    ExceedsInvoice { total: Amount, already_credited: Amount, invoice_total: Amount, available: Amount },
    #[error(
        "The post-payment amount ({post_payment} = total {total} − pre-payment {pre_payment}) must equal refund_amount + refunds + credit_amount + out_of_band_amount ({covered})."
    )]
    PostPaymentMismatch { total: Amount, pre_payment: Amount, post_payment: Amount, covered: Amount },
    #[error("refunds[{index}]: the refund is already linked to other credit notes for all it refunded.")]
    RefundFullyLinked { index: usize },
    #[error("refunds[{index}]: {requested} exceeds what the refund can still be linked for ({available}).")]
    RefundExceedsRefundable { index: usize, requested: Amount, available: Amount },
    #[error(
        "refund_amount ({amount}) exceeds what any one payment of the invoice can still refund (at most {largest})."
    )]
    NoRefundablePayment { amount: Amount, largest: Amount },
    #[error("shipping_cost: the invoice's shipping is already credited by another credit note.")]
    ShippingAlreadyCredited,
    #[error("An amount overflowed.")]
    Overflow,
}

/// Why a credit note cannot be voided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoidRefusal {
    #[error("The credit note is already void.")]
    AlreadyVoid,
    #[error("The credit note is not issued.")]
    NotIssued,
    #[error("The credit note is being voided; repeat the request with its idempotency key for the outcome.")]
    InProgress,
    #[error(
        "The credit note cannot be voided: its refunds ({refunds}) already moved money, and a refund cannot be taken back."
    )]
    RefundsMovedMoney { refunds: usize },
}
