//! A credit note's life and its number.
//!
//! ```text
//! pending ──(issue saga applied it)──▶ issued ──(void saga reversed it)──▶ void
//!    └──(issue saga refused and compensated)──▶ failed
//! ```
//!
//! `pending` and `failed` notes are not visible through the API: a note exists for clients once it
//! is issued. While pending (and once issued, until void) a note counts toward the invoice's
//! credit-note limits, so a concurrent note cannot take what it may yet take.

use settle_money::Amount;

use super::error::VoidRefusal;

/// Where a credit note stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteStatus {
    /// Its issue saga is running.
    Pending,
    Issued,
    Void,
    /// Its issue saga was refused; it never existed for clients.
    Failed,
}

impl NoteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteStatus::Pending => "pending",
            NoteStatus::Issued => "issued",
            NoteStatus::Void => "void",
            NoteStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(NoteStatus::Pending),
            "issued" => Some(NoteStatus::Issued),
            "void" => Some(NoteStatus::Void),
            "failed" => Some(NoteStatus::Failed),
            _ => None,
        }
    }

    /// Whether clients can see it.
    pub fn is_visible(self) -> bool {
        matches!(self, NoteStatus::Issued | NoteStatus::Void)
    }

    /// Whether it counts toward the invoice's limits (total, lines, shipping, linked refunds).
    pub fn counts(self) -> bool {
        matches!(self, NoteStatus::Pending | NoteStatus::Issued)
    }
}

/// What voiding needs to know about a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidCheck<'a> {
    pub status: NoteStatus,
    /// A void saga is already working on it.
    pub voiding: bool,
    /// The amounts of its `refunds[]` (created and linked).
    pub refunds: &'a [Amount],
}

/// Whether a note can be voided. settle's decision where Stripe is silent (design, "The saga"):
/// voiding reverses what issuing did, and a refund cannot be taken back, so a note whose refunds
/// moved money cannot be voided.
pub fn check_voidable(check: &VoidCheck<'_>) -> Result<(), VoidRefusal> {
    match check.status {
        NoteStatus::Void => return Err(VoidRefusal::AlreadyVoid),
        NoteStatus::Pending | NoteStatus::Failed => return Err(VoidRefusal::NotIssued),
        NoteStatus::Issued => {}
    }
    if check.voiding {
        return Err(VoidRefusal::InProgress);
    }
    let refunded = check.refunds.iter().filter(|a| a.is_positive()).count();
    if refunded > 0 {
        return Err(VoidRefusal::RefundsMovedMoney { refunds: refunded });
    }
    Ok(())
}

/// Stripe's numbering: the invoice's number, `-CN-`, and the note's 1-based position among the
/// invoice's notes, two digits at least (`ABCD-1234-CN-01`). An invoice without a number (none is
/// finalized without one) lends its id.
pub fn number(invoice_number: Option<&str>, invoice_id: &str, position: i64) -> String {
    let base = invoice_number.filter(|n| !n.is_empty()).unwrap_or(invoice_id);
    format!("{base}-CN-{position:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_invoice() {
        assert_eq!(number(Some("C9E0C52C-0036"), "in_1", 1), "C9E0C52C-0036-CN-01");
        assert_eq!(number(Some("A-1"), "in_1", 12), "A-1-CN-12");
        assert_eq!(number(Some("A-1"), "in_1", 123), "A-1-CN-123");
        assert_eq!(number(None, "in_1", 2), "in_1-CN-02");
    }

    #[test]
    fn only_issued_notes_without_refunds_can_be_voided() {
        let none: &[Amount] = &[];
        let issued = VoidCheck { status: NoteStatus::Issued, voiding: false, refunds: none };
        assert_eq!(check_voidable(&issued), Ok(()));
        assert_eq!(
            check_voidable(&VoidCheck { status: NoteStatus::Void, ..issued.clone() }),
            Err(VoidRefusal::AlreadyVoid)
        );
        assert_eq!(
            check_voidable(&VoidCheck { voiding: true, ..issued.clone() }),
            Err(VoidRefusal::InProgress)
        );
        assert_eq!(
            check_voidable(&VoidCheck { status: NoteStatus::Pending, ..issued.clone() }),
            Err(VoidRefusal::NotIssued)
        );
        let refunds = [Amount::new(100)];
        assert_eq!(
            check_voidable(&VoidCheck { refunds: &refunds, ..issued }),
            Err(VoidRefusal::RefundsMovedMoney { refunds: 1 })
        );
    }

    #[test]
    fn statuses_round_trip() {
        for status in [NoteStatus::Pending, NoteStatus::Issued, NoteStatus::Void, NoteStatus::Failed] {
            assert_eq!(NoteStatus::parse(status.as_str()), Some(status));
        }
        assert!(NoteStatus::Issued.counts() && NoteStatus::Pending.counts() && !NoteStatus::Void.counts());
        assert!(NoteStatus::Void.is_visible() && !NoteStatus::Pending.is_visible());
    }
}
