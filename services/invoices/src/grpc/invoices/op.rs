//! What every invoice RPC shares: `expand`, rendering an invoice as the API returns it (its first
//! lines, the draft's current balance, expansions), and [`InvoiceOp`], one change to one invoice —
//! a transaction with the idempotency key claimed and the invoice's row locked, committed with its
//! events and the idempotent response.

use prost::{Message, Name};
use settle_platform::ApiError;
use settle_platform::Scope;
use settle_platform::context::RequestContext;
use settle_platform::db::Tx;
use settle_platform::idempotency::{self, Claim, Pending};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::proto_json;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use sqlx::AnyConnection;

use crate::domain::invoice::InvoiceStatus;
use crate::grpc::AppState;
use crate::model::{self, lines::EMBEDDED_LINES};
use crate::store::{balance, invoice_lines, invoice_payments, invoices};

/// How many invoice payments the expanded `payments` list shows.
const EMBEDDED_PAYMENTS: i64 = 10;

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::Invoice, id, "id")
}

/// The expansions a request asked for (`payments`, `confirmation_secret`; `data.`-prefixed on lists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expand {
    pub payments: bool,
    pub confirmation_secret: bool,
}

impl Expand {
    /// Parses `expand`; `prefix` is `""` for one invoice and `"data."` for lists and searches.
    pub fn parse(values: &[String], prefix: &str) -> Result<Expand, ApiError> {
        let mut expand = Expand::default();
        for (i, value) in values.iter().enumerate() {
            match value.strip_prefix(prefix) {
                Some("payments") => expand.payments = true,
                Some("confirmation_secret") => expand.confirmation_secret = true,
                _ => {
                    return Err(ApiError::invalid_param(
                        &format!("expand[{i}]"),
                        ErrorReason::ParameterInvalid,
                        format!(
                            "This property cannot be expanded ({value}); expandable: {prefix}payments, {prefix}confirmation_secret."
                        ),
                    ));
                }
            }
        }
        Ok(expand)
    }
}

/// The invoice's embedded `lines` list: its first lines.
pub(crate) async fn embedded_lines(
    conn: &mut AnyConnection,
    scope: &Scope,
    invoice: &str,
) -> Result<pb::InvoiceLineItemList, ApiError> {
    let (data, has_more) = invoice_lines::first(&mut *conn, scope, invoice, EMBEDDED_LINES).await?;
    Ok(pb::InvoiceLineItemList {
        data,
        has_more,
        object: "list".to_owned(),
        url: format!("/v1/invoices/{invoice}/lines"),
    })
}

/// The invoice as events carry it: the stored document with its first lines, and for a draft the
/// customer's current balance as `starting_balance` (Stripe's definition while a draft).
pub(crate) async fn render(
    conn: &mut AnyConnection,
    scope: &Scope,
    mut doc: pb::Invoice,
) -> Result<pb::Invoice, ApiError> {
    if model::status(&doc)? == InvoiceStatus::Draft {
        doc.starting_balance = balance::current(&mut *conn, scope, &doc.customer, &doc.currency).await?;
        model::recompute(&mut doc)?;
    }
    doc.lines = Some(embedded_lines(conn, scope, &doc.id).await?);
    Ok(doc)
}

/// The invoice as the API returns it: [`render`] plus the requested expansions.
pub(crate) async fn respond(
    state: &AppState,
    ctx: &RequestContext,
    conn: &mut AnyConnection,
    doc: pb::Invoice,
    expand: Expand,
) -> Result<pb::Invoice, ApiError> {
    let doc = render(&mut *conn, ctx.scope(), doc).await?;
    expand_rendered(state, ctx, conn, doc, expand).await
}

/// A [`render`]ed invoice with the requested expansions: the response, when the invoice was just
/// rendered for its events in the same transaction (no second read of its lines and balance).
async fn expand_rendered(
    state: &AppState,
    ctx: &RequestContext,
    conn: &mut AnyConnection,
    doc: pb::Invoice,
    expand: Expand,
) -> Result<pb::Invoice, ApiError> {
    let mut doc = expand_local(ctx, conn, doc, expand).await?;
    if expand.confirmation_secret {
        doc.confirmation_secret = crate::grpc::applications::confirmation_secret(state, ctx, &doc).await?;
    }
    Ok(doc)
}

/// The expansions read from the invoices database alone (`payments`): what a transaction may add
/// before it commits.
async fn expand_local(
    ctx: &RequestContext,
    conn: &mut AnyConnection,
    mut doc: pb::Invoice,
    expand: Expand,
) -> Result<pb::Invoice, ApiError> {
    if expand.payments {
        let (data, has_more) =
            invoice_payments::for_invoice(&mut *conn, ctx.scope(), &doc.id, EMBEDDED_PAYMENTS).await?;
        doc.payments = Some(pb::InvoicePaymentList {
            data,
            has_more,
            object: "list".to_owned(),
            url: format!("/v1/invoice_payments?invoice={}", doc.id),
        });
    }
    Ok(doc)
}

/// Adds the expanded `confirmation_secret` to an answer whose change is committed (or replayed).
/// The secret comes from payments, so it is fetched only now, never while the invoice's row lock
/// (on SQLite the database's writer lock) is held. If payments does not answer, the committed
/// change is still the answer, without the secret (GetInvoice expands it later), rather than an
/// error a client might retry into a second change.
pub(crate) async fn with_confirmation_secret(
    state: &AppState,
    ctx: &RequestContext,
    mut doc: pb::Invoice,
    expand: Expand,
) -> pb::Invoice {
    if !expand.confirmation_secret {
        return doc;
    }
    match crate::grpc::applications::confirmation_secret(state, ctx, &doc).await {
        Ok(secret) => doc.confirmation_secret = secret,
        Err(error) => {
            tracing::warn!(invoice = %doc.id, %error, "answered without the confirmation secret");
            doc.confirmation_secret = None;
        }
    }
    doc
}

/// An invoice event to write at commit, carrying the invoice as it is then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvoiceEvent {
    Created,
    /// `invoice.updated`, with `previous_attributes` of what changed since the invoice was read.
    Updated,
    Finalized,
    Paid,
    Voided,
    MarkedUncollectible,
    /// `invoice.overpaid` (a credit note's pre-payment part landing on an invoice paid meanwhile).
    Overpaid,
}

impl InvoiceEvent {
    fn event_type(self) -> &'static str {
        match self {
            InvoiceEvent::Created => "invoice.created",
            InvoiceEvent::Updated => "invoice.updated",
            InvoiceEvent::Finalized => "invoice.finalized",
            InvoiceEvent::Paid => "invoice.paid",
            InvoiceEvent::Voided => "invoice.voided",
            InvoiceEvent::MarkedUncollectible => "invoice.marked_uncollectible",
            InvoiceEvent::Overpaid => "invoice.overpaid",
        }
    }
}

/// How a change to an invoice starts: a replay of the idempotency key's stored response (`T`: what the
/// RPC returns), or a fresh operation.
pub(crate) enum Begun<T> {
    Replay(T),
    Fresh(Box<InvoiceOp>),
}

/// One change to one invoice, inside one transaction.
pub(crate) struct InvoiceOp {
    pub tx: Tx,
    pending: Option<Pending>,
    /// The invoice being changed (its stored form, without lists).
    pub doc: pb::Invoice,
    /// The invoice as read (`None` for a new one), for `previous_attributes`.
    before: Option<pb::Invoice>,
    lines_before: Option<pb::InvoiceLineItemList>,
    events: Vec<InvoiceEvent>,
    /// Whether events of other objects (items, balance transactions) were written.
    other_events: bool,
}

impl InvoiceOp {
    /// Opens the transaction, claims the idempotency key, and reads and locks invoice `id` (NOT_FOUND
    /// naming `field` when the account has no such invoice).
    pub async fn begin<T: Message + Default, M: Message>(
        state: &AppState,
        ctx: &RequestContext,
        method: &'static str,
        request: &M,
        id: &str,
        field: &str,
    ) -> Result<Begun<T>, ApiError> {
        let not_found = || ApiError::not_found(IdPrefix::Invoice, id, field);
        if !IdPrefix::Invoice.matches(id) {
            return Err(not_found());
        }
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, method, request).await? {
            Claim::Replay(stored) => return Ok(Begun::Replay(stored)),
            Claim::Fresh(pending) => pending,
        };
        let doc = invoices::find_for_update(&mut tx, state.db.backend(), ctx.scope(), id)
            .await?
            .ok_or_else(not_found)?;
        let lines_before = Some(embedded_lines(&mut tx, ctx.scope(), id).await?);
        Ok(Begun::Fresh(Box::new(InvoiceOp {
            tx,
            pending: Some(pending),
            before: Some(doc.clone()),
            doc,
            lines_before,
            events: Vec::new(),
            other_events: false,
        })))
    }

    /// An operation creating invoice `doc` (inserted at commit), in a transaction whose key is claimed.
    pub fn creating(tx: Tx, pending: Pending, doc: pb::Invoice) -> InvoiceOp {
        InvoiceOp {
            tx,
            pending: Some(pending),
            doc,
            before: None,
            lines_before: None,
            events: vec![InvoiceEvent::Created],
            other_events: false,
        }
    }

    /// An operation on invoice `doc`, already locked in `tx`, as the first part of a bigger one that
    /// owns the idempotency key (PayInvoice finalizing a draft before it starts its saga).
    pub fn within(tx: Tx, doc: pb::Invoice) -> InvoiceOp {
        InvoiceOp {
            tx,
            pending: None,
            before: Some(doc.clone()),
            doc,
            lines_before: None,
            events: Vec::new(),
            other_events: false,
        }
    }

    /// Stores the invoice and writes its events, and hands back the transaction (uncommitted), the
    /// invoice and whether events were written.
    pub async fn into_tx(
        mut self,
        state: &AppState,
        ctx: &RequestContext,
    ) -> Result<(Tx, pb::Invoice, bool), ApiError> {
        self.write(state, ctx).await?;
        Ok((self.tx, self.doc, self.other_events))
    }

    /// The invoice's status.
    pub fn status(&self) -> Result<InvoiceStatus, ApiError> {
        Ok(model::status(&self.doc)?)
    }

    /// Writes `event` at commit.
    pub fn emit(&mut self, event: InvoiceEvent) {
        self.events.push(event);
    }

    /// Appends an event of another object (an invoice item, a balance transaction) now.
    pub async fn append<N: Message + Name>(
        &mut self,
        state: &AppState,
        ctx: &RequestContext,
        event_type: &str,
        id: &str,
        object: &N,
    ) -> Result<(), ApiError> {
        outbox::append(
            &mut self.tx,
            state.db.backend(),
            &EventOrigin::from(ctx),
            event_type,
            id,
            object,
            None,
        )
        .await?;
        self.other_events = true;
        Ok(())
    }

    /// Stores the invoice, writes its events, records the invoice as the response under the idempotency
    /// key and commits. An `Updated` event is written only if something changed.
    pub async fn commit(
        mut self,
        state: &AppState,
        ctx: &RequestContext,
        expand: Expand,
    ) -> Result<pb::Invoice, ApiError> {
        let response = match self.write(state, ctx).await? {
            Some(rendered) => expand_local(ctx, &mut self.tx, rendered, expand).await?,
            None => {
                let rendered = render(&mut self.tx, ctx.scope(), self.doc.clone()).await?;
                expand_local(ctx, &mut self.tx, rendered, expand).await?
            }
        };
        // Recorded without the secret: a replay fetches it anew, as the first answer does here.
        self.close(state, &response).await?;
        Ok(with_confirmation_secret(state, ctx, response, expand).await)
    }

    /// Like [`Self::commit`], with another object as the response (an invoice item).
    pub async fn commit_with<R: Message>(
        mut self,
        state: &AppState,
        ctx: &RequestContext,
        response: &R,
    ) -> Result<(), ApiError> {
        self.write(state, ctx).await?;
        self.close(state, response).await
    }

    /// Deletes the draft with its lines (its items are the caller's), writes `invoice.deleted`
    /// carrying the invoice as it was, and commits with the `deleted_invoice` response.
    pub async fn commit_deleted(
        mut self,
        state: &AppState,
        ctx: &RequestContext,
    ) -> Result<pb::DeletedInvoice, ApiError> {
        let scope = ctx.scope();
        let rendered = render(&mut self.tx, scope, self.doc.clone()).await?;
        invoice_lines::delete_for_invoice(&mut self.tx, scope, &self.doc.id).await?;
        invoices::delete(&mut self.tx, scope, &self.doc.id).await?;
        outbox::append(
            &mut self.tx,
            state.db.backend(),
            &EventOrigin::from(ctx),
            "invoice.deleted",
            &rendered.id,
            &rendered,
            None,
        )
        .await?;
        self.other_events = true;
        let response = pb::DeletedInvoice { deleted: true, id: rendered.id, object: "invoice".to_owned() };
        self.close(state, &response).await?;
        Ok(response)
    }

    /// Stores the invoice and writes its events; returns the invoice as they carry it (rendered), if
    /// there were any.
    async fn write(
        &mut self,
        state: &AppState,
        ctx: &RequestContext,
    ) -> Result<Option<pb::Invoice>, ApiError> {
        let scope = ctx.scope();
        match &self.before {
            None => invoices::insert(&mut self.tx, scope, &self.doc).await?,
            Some(before) if *before != self.doc => invoices::update(&mut self.tx, scope, &self.doc).await?,
            Some(_) => {}
        }
        if self.events.is_empty() {
            return Ok(None);
        }
        let rendered = render(&mut self.tx, scope, self.doc.clone()).await?;
        let origin = EventOrigin::from(ctx);
        for event in std::mem::take(&mut self.events) {
            let previous = match (event, &self.before) {
                (InvoiceEvent::Updated, Some(before)) => {
                    let mut changed = proto_json::previous_attributes(before, &self.doc);
                    if self.lines_before != rendered.lines
                        && let Some(lines) = &self.lines_before
                    {
                        let object = changed.get_or_insert_with(|| serde_json::json!({}));
                        object["lines"] = proto_json::to_json(lines);
                    }
                    match changed {
                        Some(changed) => Some(changed),
                        // Like Stripe, an update that changes nothing is no event.
                        None => continue,
                    }
                }
                _ => None,
            };
            outbox::append(
                &mut self.tx,
                state.db.backend(),
                &origin,
                event.event_type(),
                &rendered.id,
                &rendered,
                previous.as_ref(),
            )
            .await?;
            self.other_events = true;
        }
        Ok(Some(rendered))
    }

    /// Records `response` under the idempotency key and commits.
    async fn close<R: Message>(mut self, state: &AppState, response: &R) -> Result<(), ApiError> {
        if let Some(pending) = self.pending.take() {
            pending.record(&mut self.tx, response).await?;
        }
        self.tx.commit().await?;
        if self.other_events {
            state.hub.committed();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_accepts_the_two_expansions_and_names_a_bad_one() {
        let parsed = Expand::parse(&["payments".into(), "confirmation_secret".into()], "").unwrap();
        assert_eq!(parsed, Expand { payments: true, confirmation_secret: true });
        assert!(Expand::parse(&["data.payments".into()], "data.").unwrap().payments);
        let error = Expand::parse(&["payments".into(), "customer".into()], "").unwrap_err();
        assert_eq!(error.field_violations[0].0, "expand[1]");
        assert!(Expand::parse(&["payments".into()], "data.").is_err());
    }
}
