//! RefundClaimService: the payments side of the credit-notes issue and void sagas.

use std::collections::BTreeMap;

use settle_payments::store::refund_claims::{self as claims_store, AddClaimed, RefundKey};
use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::db::{Db, PoolSettings};
use settle_platform::ids::IdPrefix;
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1 as ev;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::payment_attachment_service_client::PaymentAttachmentServiceClient;
use settle_proto::settle::payments::v1::payment_record_service_client::PaymentRecordServiceClient;
use settle_proto::settle::payments::v1::refund_claim_service_client::RefundClaimServiceClient;
use settle_proto::settle::payments::v1::refund_service_client::RefundServiceClient;
use settle_testkit::{OTHER_ACCOUNT, authorized, internal, reason, violated_fields};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, confirmed, spawn};
use crate::payment_records::{guaranteed, refund as report_refund};

const INVOICE: &str = "in_0000000000000000000001";
const OTHER_INVOICE: &str = "in_0000000000000000000002";
const CREDIT_NOTE: &str = "cn_0000000000000000000001";

fn claims(app: &TestApp) -> RefundClaimServiceClient<Channel> {
    RefundClaimServiceClient::new(app.server.channel())
}

fn saga() -> String {
    IdPrefix::Saga.generate()
}

// === arrange ===

/// Attaches `payment` to `invoice` the way the attach saga does: reserve, then confirm.
async fn attach(app: &TestApp, payment: &str, invoice: &str) {
    let mut client = PaymentAttachmentServiceClient::new(app.server.channel());
    let saga_id = saga();
    let reserve = pb::ReserveAttachmentRequest {
        payment: payment.to_owned(),
        invoice: invoice.to_owned(),
        customer: "cus_test".to_owned(),
        currency: "usd".to_owned(),
        saga_id: saga_id.clone(),
    };
    client.reserve_attachment(internal(reserve, DEV_ACCOUNT)).await.unwrap();
    let confirm = pb::ConfirmAttachmentRequest { payment: payment.to_owned(), saga_id };
    client.confirm_attachment(internal(confirm, DEV_ACCOUNT)).await.unwrap();
}

/// A succeeded intent of `amount`, attached to `invoice` when one is given.
async fn paid_intent(app: &TestApp, amount: i64, invoice: Option<&str>) -> String {
    let intent = app.create(confirmed(amount, "pm_card_visa")).await;
    if let Some(invoice) = invoice {
        attach(app, &intent.id, invoice).await;
    }
    intent.id
}

async fn refund_of(app: &TestApp, payment_intent: &str, amount: i64) -> pb::Refund {
    let request = pb::CreateRefundRequest {
        payment_intent: Some(payment_intent.to_owned()),
        amount: Some(amount),
        ..Default::default()
    };
    RefundServiceClient::new(app.server.channel())
        .create_refund(authorized(request))
        .await
        .unwrap()
        .into_inner()
}

async fn refunds_of(app: &TestApp, payment_intent: &str) -> Vec<pb::Refund> {
    let request = pb::ListRefundsRequest {
        payment_intent: Some(payment_intent.to_owned()),
        limit: Some(100),
        ..Default::default()
    };
    RefundServiceClient::new(app.server.channel())
        .list_refunds(authorized(request))
        .await
        .unwrap()
        .into_inner()
        .data
}

/// A guaranteed record of `amount` attached to `invoice`, with a reported refund of
/// `refunded` under `refund_group`. Returns the record's id.
async fn refunded_record(app: &TestApp, amount: i64, refunded: i64, refund_group: &str) -> String {
    let mut records = PaymentRecordServiceClient::new(app.server.channel());
    let record = records.report_payment(authorized(guaranteed(amount))).await.unwrap().into_inner();
    attach(app, &record.id, INVOICE).await;
    records.report_refund(authorized(report_refund(&record.id, refund_group, Some(refunded)))).await.unwrap();
    record.id
}

// === act ===

fn request(saga_id: &str, claims: Vec<pb::RefundClaimParams>) -> pb::ClaimRefundsRequest {
    pb::ClaimRefundsRequest {
        saga_id: saga_id.to_owned(),
        credit_note: CREDIT_NOTE.to_owned(),
        invoice: INVOICE.to_owned(),
        currency: "usd".to_owned(),
        claims,
        new_refund: None,
    }
}

fn of_refund(id: &str, amount: Option<i64>) -> pb::RefundClaimParams {
    pb::RefundClaimParams {
        r#type: pb::RefundClaimType::Refund as i32,
        refund: Some(id.to_owned()),
        payment_record_refund: None,
        amount_refunded: amount,
    }
}

fn of_record(payment_record: &str, refund_group: &str, amount: Option<i64>) -> pb::RefundClaimParams {
    pb::RefundClaimParams {
        r#type: pb::RefundClaimType::PaymentRecordRefund as i32,
        refund: None,
        payment_record_refund: Some(pb::PaymentRecordRefundReference {
            payment_record: payment_record.to_owned(),
            refund_group: refund_group.to_owned(),
        }),
        amount_refunded: amount,
    }
}

fn new_refund(payment: &str, amount: i64) -> Option<pb::NewRefundParams> {
    Some(pb::NewRefundParams {
        payment: payment.to_owned(),
        amount,
        reason: Some(pb::RefundReason::RequestedByCustomer as i32),
        metadata: [("credit_note".to_owned(), CREDIT_NOTE.to_owned())].into(),
    })
}

async fn claim(app: &TestApp, request: pb::ClaimRefundsRequest) -> Result<pb::RefundClaims, Status> {
    claims(app).claim_refunds(internal(request, DEV_ACCOUNT)).await.map(|r| r.into_inner())
}

async fn release(app: &TestApp, saga_id: &str) -> pb::RefundClaims {
    let request = pb::ReleaseRefundClaimsRequest { saga_id: saga_id.to_owned() };
    claims(app).release_refund_claims(internal(request, DEV_ACCOUNT)).await.unwrap().into_inner()
}

async fn get(app: &TestApp, saga_id: &str) -> Result<pb::RefundClaims, Status> {
    let request = pb::GetRefundClaimsRequest { saga_id: saga_id.to_owned() };
    claims(app).get_refund_claims(internal(request, DEV_ACCOUNT)).await.map(|r| r.into_inner())
}

// === assert ===

/// A refund's `amount_claimed`, read straight from the database.
async fn amount_claimed(app: &TestApp, key: &RefundKey) -> i64 {
    let db = Db::connect(app.database.url(), &PoolSettings::default()).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let locked = claims_store::lock(&mut tx, db.backend(), &settle_platform::Scope::test(DEV_ACCOUNT), key)
        .await
        .unwrap()
        .unwrap();
    tx.rollback().await.unwrap();
    db.close().await;
    locked.amount_claimed
}

/// The refunds of the first `n` `refund.created` events, from `StreamEvents`.
async fn refund_created_events(app: &TestApp, n: usize) -> Vec<String> {
    let request = ev::StreamEventsRequest {
        cursor: None,
        types: vec!["refund.created".to_owned()],
        ..Default::default()
    };
    let mut stream = app.events.clone().stream_events(authorized(request)).await.unwrap().into_inner();
    let mut refunds = Vec::with_capacity(n);
    while refunds.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("events arrive within 10 s")
            .unwrap()
            .unwrap();
        let refund: pb::Refund = next.event.unwrap().data.unwrap().object.unwrap().to_msg().unwrap();
        refunds.push(refund.id);
    }
    refunds
}

fn re(id: &str) -> RefundKey {
    RefundKey::Refund(id.to_owned())
}

fn status(claims: &pb::RefundClaims) -> pb::RefundClaimsStatus {
    pb::RefundClaimsStatus::try_from(claims.status).unwrap()
}

/// (gRPC code, reason, violated fields) of a refusal.
type Refusal = (Code, String, Vec<String>);

fn refusal(status: &Status) -> Refusal {
    (status.code(), reason(status), violated_fields(status))
}

fn refused(code: Code, reason: &str, field: &str) -> Refusal {
    (code, reason.to_owned(), vec![field.to_owned()])
}

backend_tests! {
    claims_a_refund_and_a_payment_record_refund_of_the_invoice => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_500).await;
        let record = refunded_record(&app, 3_000, 1_000, "rg-1").await;

        let first = saga();
        let claimed = claim(&app, request(&first, vec![of_refund(&refund.id, Some(500)), of_record(&record, "rg-1", None)])).await.unwrap();
        assert_eq!((claimed.saga_id.as_str(), claimed.credit_note.as_str()), (first.as_str(), CREDIT_NOTE));
        assert_eq!(status(&claimed), pb::RefundClaimsStatus::Claimed);
        assert_eq!(claimed.claims, [
            pb::RefundClaim {
                r#type: pb::RefundClaimType::Refund as i32,
                refund: refund.id.clone(),
                payment_record_refund: None,
                amount_refunded: 500,
                currency: "usd".into(),
                payment: intent.clone(),
                created_by_claim: false,
            },
            pb::RefundClaim {
                r#type: pb::RefundClaimType::PaymentRecordRefund as i32,
                refund: record.clone(),
                payment_record_refund: Some(pb::PaymentRecordRefundReference { payment_record: record.clone(), refund_group: "rg-1".into() }),
                amount_refunded: 1_000,
                currency: "usd".into(),
                payment: record.clone(),
                created_by_claim: false,
            },
        ]);
        assert_eq!(get(&app, &first).await.unwrap(), claimed);
        let record_key = RefundKey::RecordRefund { payment_record: record.clone(), refund_group: "rg-1".into() };
        assert_eq!((amount_claimed(&app, &re(&refund.id)).await, amount_claimed(&app, &record_key).await), (500, 1_000));

        // Another credit note links what is left; nothing is left after that.
        let second = claim(&app, request(&saga(), vec![of_refund(&refund.id, None)])).await.unwrap();
        assert_eq!(second.claims[0].amount_refunded, 1_000);
        let e = claim(&app, request(&saga(), vec![of_refund(&refund.id, None)])).await.unwrap_err();
        assert_eq!(refusal(&e), refused(Code::FailedPrecondition, "refund_exceeds_refundable", "claims[0][amount_refunded]"));
        let e = claim(&app, request(&saga(), vec![of_record(&record, "rg-1", Some(1))])).await.unwrap_err();
        assert_eq!(reason(&e), "refund_exceeds_refundable");
        assert_eq!(amount_claimed(&app, &re(&refund.id)).await, 1_500);
    };

    a_new_refund_is_created_and_claimed_whole => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let earlier = refund_of(&app, &intent, 300).await;
        let saga_id = saga();
        let claimed = claim(&app, pb::ClaimRefundsRequest {
            new_refund: new_refund(&intent, 700),
            ..request(&saga_id, vec![of_refund(&earlier.id, None)])
        }).await.unwrap();
        assert_eq!(claimed.claims.len(), 2, "the existing refunds, then the new one");
        let created = &claimed.claims[1];
        assert!(created.refund.starts_with("re_") && created.refund != earlier.id, "{}", created.refund);
        assert_eq!((created.amount_refunded, created.payment.as_str(), created.created_by_claim), (700, intent.as_str(), true));
        assert_eq!(created.r#type, pb::RefundClaimType::Refund as i32);

        let refunds = refunds_of(&app, &intent).await;
        let made = refunds.iter().find(|r| r.id == created.refund).unwrap();
        assert_eq!((made.amount, made.status), (700, Some(pb::RefundStatus::Succeeded as i32)));
        assert_eq!(made.reason, Some(pb::RefundReason::RequestedByCustomer as i32));
        assert_eq!(made.metadata.get("credit_note").map(String::as_str), Some(CREDIT_NOTE));
        assert_eq!(amount_claimed(&app, &re(&created.refund)).await, 700);
        assert_eq!(refund_created_events(&app, 2).await, [earlier.id.clone(), created.refund.clone()]);

        // At most what is left to refund (2000 − 300 − 700 = 1000), else nothing is created.
        let e = claim(&app, pb::ClaimRefundsRequest { new_refund: new_refund(&intent, 1_001), ..request(&saga(), vec![]) }).await.unwrap_err();
        assert_eq!(refusal(&e), refused(Code::InvalidArgument, "amount_too_large", "new_refund[amount]"));
        // All or nothing: a refused claim beside a valid new refund creates no refund.
        let e = claim(&app, pb::ClaimRefundsRequest {
            new_refund: new_refund(&intent, 100),
            ..request(&saga(), vec![of_refund(&earlier.id, Some(1))])
        }).await.unwrap_err();
        assert_eq!(reason(&e), "refund_exceeds_refundable");
        assert_eq!(refunds_of(&app, &intent).await.len(), 2);
    };

    a_repeated_claim_returns_the_claims_as_they_are_and_claims_nothing_again => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_000).await;
        let saga_id = saga();
        let call = pb::ClaimRefundsRequest {
            new_refund: new_refund(&intent, 400),
            ..request(&saga_id, vec![of_refund(&refund.id, Some(600))])
        };
        let first = claim(&app, call.clone()).await.unwrap();
        let again = claim(&app, call.clone()).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(refunds_of(&app, &intent).await.len(), 2, "the repeat created no second refund");
        assert_eq!(amount_claimed(&app, &re(&refund.id)).await, 600);
        // The saga id decides: different parameters are not checked, only answered.
        let different = claim(&app, pb::ClaimRefundsRequest { new_refund: None, ..request(&saga_id, vec![of_refund(&refund.id, Some(1))]) }).await.unwrap();
        assert_eq!(different, first);
        assert_eq!(amount_claimed(&app, &re(&refund.id)).await, 600);

        let released = release(&app, &saga_id).await;
        let after_release = claim(&app, call).await.unwrap();
        assert_eq!(status(&after_release), pb::RefundClaimsStatus::Released);
        assert_eq!(after_release, released);
        assert_eq!(amount_claimed(&app, &re(&refund.id)).await, 0, "the repeat after the release claimed nothing");
    };

    a_release_gives_the_amounts_back_for_another_credit_note => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_000).await;
        let record = refunded_record(&app, 3_000, 800, "rg-2").await;
        let record_key = RefundKey::RecordRefund { payment_record: record.clone(), refund_group: "rg-2".into() };
        let first = saga();
        let claimed = claim(&app, pb::ClaimRefundsRequest {
            new_refund: new_refund(&intent, 500),
            ..request(&first, vec![of_refund(&refund.id, None), of_record(&record, "rg-2", None)])
        }).await.unwrap();
        let created = claimed.claims[2].refund.clone();
        let e = claim(&app, request(&saga(), vec![of_refund(&refund.id, Some(1))])).await.unwrap_err();
        assert_eq!(reason(&e), "refund_exceeds_refundable");

        let released = release(&app, &first).await;
        assert_eq!(status(&released), pb::RefundClaimsStatus::Released);
        assert_eq!(released.claims, claimed.claims, "a released saga still shows what it had claimed");
        assert_eq!(release(&app, &first).await, released, "releasing twice changes nothing");
        assert_eq!(get(&app, &first).await.unwrap(), released);
        for key in [re(&refund.id), record_key.clone(), re(&created)] {
            assert_eq!(amount_claimed(&app, &key).await, 0, "{key:?}");
        }
        assert!(refunds_of(&app, &intent).await.iter().any(|r| r.id == created), "the created refund stays");

        let second = saga();
        let reclaimed = claim(&app, request(&second, vec![of_refund(&refund.id, None), of_record(&record, "rg-2", Some(800)), of_refund(&created, None)])).await.unwrap();
        let amounts: Vec<i64> = reclaimed.claims.iter().map(|c| c.amount_refunded).collect();
        assert_eq!(amounts, [1_000, 800, 500]);
        assert!(reclaimed.claims.iter().all(|c| !c.created_by_claim));
        assert_eq!(amount_claimed(&app, &record_key).await, 800);
    };

    a_release_before_the_claim_leaves_a_placeholder => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_000).await;
        let late = saga();
        let placeholder = release(&app, &late).await;
        assert_eq!(status(&placeholder), pb::RefundClaimsStatus::Released);
        assert_eq!((placeholder.saga_id.as_str(), placeholder.credit_note.as_str()), (late.as_str(), ""));
        assert!(placeholder.claims.is_empty());
        let late_claim = claim(&app, pb::ClaimRefundsRequest { new_refund: new_refund(&intent, 100), ..request(&late, vec![of_refund(&refund.id, None)]) }).await.unwrap();
        assert_eq!(late_claim, placeholder, "the late claim claims nothing");
        assert_eq!(amount_claimed(&app, &re(&refund.id)).await, 0);
        assert_eq!(refunds_of(&app, &intent).await.len(), 1, "and creates no refund");
        assert_eq!(get(&app, &late).await.unwrap(), placeholder);

        let e = get(&app, &saga()).await.unwrap_err();
        assert_eq!(refusal(&e), refused(Code::NotFound, "resource_missing", "saga_id"));
    };

    every_refusal_names_its_reason_and_changes_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_500).await;
        let record = refunded_record(&app, 3_000, 1_000, "rg-3").await;
        let loose = paid_intent(&app, 2_000, None).await;
        let loose_refund = refund_of(&app, &loose, 500).await;
        let elsewhere = paid_intent(&app, 2_000, Some(OTHER_INVOICE)).await;
        let elsewhere_refund = refund_of(&app, &elsewhere, 500).await;
        let reserved = paid_intent(&app, 2_000, None).await;
        PaymentAttachmentServiceClient::new(app.server.channel()).reserve_attachment(internal(pb::ReserveAttachmentRequest {
            payment: reserved.clone(), invoice: INVOICE.into(), customer: "cus_test".into(), currency: "usd".into(), saga_id: saga(),
        }, DEV_ACCOUNT)).await.unwrap();
        let reserved_refund = refund_of(&app, &reserved, 500).await;

        let with_new = |payment: &str, amount: i64| pb::ClaimRefundsRequest { new_refund: new_refund(payment, amount), ..request(&saga(), vec![]) };
        let cases: Vec<(&str, pb::ClaimRefundsRequest, Refusal)> = vec![
            ("not attached", request(&saga(), vec![of_refund(&loose_refund.id, None)]), refused(Code::FailedPrecondition, "payment_not_attached", "claims[0]")),
            ("attached elsewhere", request(&saga(), vec![of_refund(&refund.id, Some(1)), of_refund(&elsewhere_refund.id, None)]), refused(Code::FailedPrecondition, "payment_not_attached", "claims[1]")),
            ("only reserved", request(&saga(), vec![of_refund(&reserved_refund.id, None)]), refused(Code::FailedPrecondition, "payment_not_attached", "claims[0]")),
            ("wrong currency", pb::ClaimRefundsRequest { currency: "eur".into(), ..request(&saga(), vec![of_refund(&refund.id, None)]) }, refused(Code::FailedPrecondition, "currency_mismatch", "claims[0]")),
            ("record in the wrong currency", pb::ClaimRefundsRequest { currency: "eur".into(), ..request(&saga(), vec![of_record(&record, "rg-3", None)]) }, refused(Code::FailedPrecondition, "currency_mismatch", "claims[0]")),
            ("over-claim", request(&saga(), vec![of_refund(&refund.id, Some(1_501))]), refused(Code::FailedPrecondition, "refund_exceeds_refundable", "claims[0][amount_refunded]")),
            ("over-claim of a record refund", request(&saga(), vec![of_record(&record, "rg-3", Some(1_001))]), refused(Code::FailedPrecondition, "refund_exceeds_refundable", "claims[0][amount_refunded]")),
            ("over-claim in two entries", request(&saga(), vec![of_refund(&refund.id, Some(1_000)), of_refund(&refund.id, Some(501))]), refused(Code::FailedPrecondition, "refund_exceeds_refundable", "claims[1][amount_refunded]")),
            ("zero amount", request(&saga(), vec![of_refund(&refund.id, Some(0))]), refused(Code::InvalidArgument, "parameter_invalid_integer", "claims[0][amount_refunded]")),
            ("new refund of a record", with_new(&record, 100), refused(Code::InvalidArgument, "parameter_invalid", "new_refund[payment]")),
            ("new refund of a loose payment", with_new(&loose, 100), refused(Code::FailedPrecondition, "payment_not_attached", "new_refund[payment]")),
            ("new refund in the wrong currency", pb::ClaimRefundsRequest { currency: "eur".into(), ..with_new(&intent, 100) }, refused(Code::FailedPrecondition, "currency_mismatch", "new_refund[payment]")),
            ("unknown refund", request(&saga(), vec![of_refund("re_0000000000000000000000", None)]), refused(Code::NotFound, "resource_missing", "claims[0][refund]")),
            ("unknown refund group", request(&saga(), vec![of_record(&record, "rg-nope", None)]), refused(Code::NotFound, "resource_missing", "claims[0][payment_record_refund]")),
            ("unknown record", request(&saga(), vec![of_record("pr_0000000000000000000000", "rg-3", None)]), refused(Code::NotFound, "resource_missing", "claims[0][payment_record_refund]")),
            ("unknown intent", with_new("pi_0000000000000000000000", 100), refused(Code::NotFound, "resource_missing", "new_refund[payment]")),
            ("malformed refund id", request(&saga(), vec![of_refund("ch_123", None)]), refused(Code::InvalidArgument, "parameter_invalid", "claims[0][refund]")),
            ("malformed saga id", request("nope", vec![of_refund(&refund.id, None)]), refused(Code::InvalidArgument, "parameter_invalid", "saga_id")),
        ];
        for (case, call, expected) in cases {
            let saga_id = call.saga_id.clone();
            let e = claim(&app, call).await.unwrap_err();
            assert_eq!(refusal(&e), expected, "{case}: {e:?}");
            if IdPrefix::Saga.matches(&saga_id) {
                assert_eq!(get(&app, &saga_id).await.unwrap_err().code(), Code::NotFound, "{case}: the saga recorded nothing");
            }
        }
        let record_key = RefundKey::RecordRefund { payment_record: record.clone(), refund_group: "rg-3".into() };
        for key in [re(&refund.id), record_key, re(&loose_refund.id), re(&elsewhere_refund.id)] {
            assert_eq!(amount_claimed(&app, &key).await, 0, "{key:?}");
        }
        assert_eq!(refunds_of(&app, &intent).await.len(), 1, "no refused call created a refund");
        assert_eq!(refunds_of(&app, &loose).await.len(), 1);

        // Another account's refund does not exist for this one.
        let theirs = claims(&app).claim_refunds(internal(request(&saga(), vec![of_refund(&refund.id, None)]), OTHER_ACCOUNT)).await.unwrap_err();
        assert_eq!(refusal(&theirs), refused(Code::NotFound, "resource_missing", "claims[0][refund]"));

        // Only settle's own services (the internal key) may call the service at all.
        let mut client = claims(&app);
        let denied = [
            client.claim_refunds(authorized(request(&saga(), vec![of_refund(&refund.id, None)]))).await.unwrap_err(),
            client.release_refund_claims(authorized(pb::ReleaseRefundClaimsRequest { saga_id: saga() })).await.unwrap_err(),
            client.get_refund_claims(authorized(pb::GetRefundClaimsRequest { saga_id: saga() })).await.unwrap_err(),
        ];
        for e in denied {
            assert_eq!((e.code(), reason(&e).as_str()), (Code::PermissionDenied, "permission_denied"));
        }
        assert_eq!(amount_claimed(&app, &re(&refund.id)).await, 0);
    };

    the_database_refuses_a_claimed_amount_outside_the_refund => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_000).await;
        let record = refunded_record(&app, 3_000, 700, "rg-4").await;
        let record_key = RefundKey::RecordRefund { payment_record: record, refund_group: "rg-4".into() };
        let db = Db::connect(app.database.url(), &PoolSettings::default()).await.unwrap();
        for (key, delta, expected) in [
            (re(&refund.id), 1_001, AddClaimed::OutOfRange),
            (re(&refund.id), -1, AddClaimed::OutOfRange),
            (record_key.clone(), 701, AddClaimed::OutOfRange),
            (record_key.clone(), -1, AddClaimed::OutOfRange),
            (re("re_0000000000000000000000"), 1, AddClaimed::NoSuchRefund),
            (re(&refund.id), 1_000, AddClaimed::Added),
            (record_key.clone(), 700, AddClaimed::Added),
        ] {
            let mut tx = db.begin().await.unwrap();
            assert_eq!(claims_store::add_claimed(&mut tx, &settle_platform::Scope::test(DEV_ACCOUNT), &key, delta).await.unwrap(), expected, "{key:?} {delta}");
            tx.rollback().await.unwrap();
        }
        db.close().await;
    };

    concurrent_claims_never_link_a_refund_for_more_than_it_refunded => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_000).await;
        let calls = (0..32).map(|_| {
            let mut client = claims(&app);
            let call = request(&saga(), vec![of_refund(&refund.id, Some(100))]);
            tokio::spawn(async move { client.claim_refunds(internal(call, DEV_ACCOUNT)).await })
        });
        let mut outcomes = BTreeMap::<String, usize>::new();
        for result in futures::future::join_all(calls).await {
            let outcome = match result.unwrap() {
                Ok(_) => "claimed".to_owned(),
                Err(status) => format!("{:?} {}", status.code(), reason(&status)),
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
        let claimed = amount_claimed(&app, &re(&refund.id)).await;
        println!("{backend}: 32 concurrent ClaimRefunds of 100 on one refund of 1000 → {outcomes:?}, amount_claimed {claimed}");
        assert_eq!(outcomes.get("claimed"), Some(&10), "exactly ten claims fit");
        assert_eq!(outcomes.get("FailedPrecondition refund_exceeds_refundable"), Some(&22));
        assert_eq!(claimed, 1_000);
    };

    concurrent_repeats_of_one_saga_claim_and_refund_once => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let intent = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let refund = refund_of(&app, &intent, 1_000).await;
        let saga_id = saga();
        let call = pb::ClaimRefundsRequest { new_refund: new_refund(&intent, 300), ..request(&saga_id, vec![of_refund(&refund.id, Some(400))]) };
        let calls = (0..16).map(|_| {
            let mut client = claims(&app);
            let call = call.clone();
            tokio::spawn(async move { client.claim_refunds(internal(call, DEV_ACCOUNT)).await.map(|r| r.into_inner()) })
        });
        let answers: Vec<pb::RefundClaims> = futures::future::join_all(calls).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
        let distinct: std::collections::BTreeSet<&str> = answers.iter().map(|a| a.claims[1].refund.as_str()).collect();
        let claimed = amount_claimed(&app, &re(&refund.id)).await;
        let refunds = refunds_of(&app, &intent).await.len();
        println!("{backend}: 16 concurrent repeats of one ClaimRefunds → new refunds answered {distinct:?}, {refunds} refunds of the intent, amount_claimed {claimed}");
        assert!(answers.iter().all(|a| *a == answers[0]), "every repeat answers with the same claims");
        assert_eq!((claimed, refunds), (400, 2), "claimed once, one refund created");
    };

    claims_naming_refunds_in_opposite_orders_all_succeed => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let a = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let b = paid_intent(&app, 2_000, Some(INVOICE)).await;
        let (ra, rb) = (refund_of(&app, &a, 1_000).await, refund_of(&app, &b, 1_000).await);
        let calls = (0..20).map(|i| {
            let mut client = claims(&app);
            let pair = [of_refund(&ra.id, Some(50)), of_refund(&rb.id, Some(50))];
            let order = if i % 2 == 0 { pair.to_vec() } else { pair.into_iter().rev().collect() };
            let call = request(&saga(), order);
            tokio::spawn(async move { client.claim_refunds(internal(call, DEV_ACCOUNT)).await })
        });
        let mut outcomes = BTreeMap::<String, usize>::new();
        for result in futures::future::join_all(calls).await {
            let outcome = match result.unwrap() {
                Ok(_) => "claimed".to_owned(),
                Err(status) => format!("{:?} {}", status.code(), reason(&status)),
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
        let claimed = (amount_claimed(&app, &re(&ra.id)).await, amount_claimed(&app, &re(&rb.id)).await);
        println!("{backend}: 20 concurrent ClaimRefunds of two refunds in alternating order → {outcomes:?}, amount_claimed {claimed:?}");
        assert_eq!(outcomes.get("claimed"), Some(&20), "no deadlock, no refusal");
        assert_eq!(claimed, (1_000, 1_000));
    };
}
