//! CustomerBalanceService over gRPC, and the ledger's consistency under concurrent postings.

use std::collections::HashMap;

use settle_platform::auth::DEV_ACCOUNT;
use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::settle::invoices::v1 as pb;
use settle_testkit::{OTHER_API_KEY, authorized, idempotent, reason, violated_fields, with_key};
use tonic::Code;

use crate::helpers::{TestApp, payload, spawn};

fn adjustment(customer: &str, amount: i64, currency: &str) -> pb::CreateBalanceTransactionRequest {
    pb::CreateBalanceTransactionRequest {
        customer: customer.to_owned(),
        amount,
        currency: currency.to_owned(),
        ..Default::default()
    }
}

async fn balance_of(app: &TestApp, customer: &str, currency: Option<&str>) -> pb::CustomerBalance {
    app.balances
        .clone()
        .get_customer_balance(authorized(pb::GetCustomerBalanceRequest {
            customer: customer.to_owned(),
            currency: currency.map(str::to_owned),
        }))
        .await
        .unwrap()
        .into_inner()
}

/// The customer's usd ledger in posting order: (amount, ending_balance, sequence).
async fn ledger(app: &TestApp, customer: &str) -> Vec<(i64, i64, i64)> {
    let db = app.db().await;
    let rows = sqlx::query_as(
        "SELECT amount, ending_balance, sequence FROM customer_balance_transactions \
         WHERE account_id = $1 AND customer = $2 AND currency = 'usd' ORDER BY sequence",
    )
    .bind(DEV_ACCOUNT)
    .bind(customer)
    .fetch_all(db.pool())
    .await
    .unwrap();
    db.close().await;
    rows
}

/// Each transaction's `ending_balance` is the previous one's plus its amount, positions have no
/// gaps, and the ledger ends at `balance`.
fn assert_chain(rows: &[(i64, i64, i64)], balance: i64) {
    let mut running = 0;
    for (i, (amount, ending, sequence)) in rows.iter().enumerate() {
        running += amount;
        assert_eq!((*ending, *sequence), (running, i as i64 + 1), "transaction {i} of {rows:?}");
    }
    assert_eq!(running, balance);
}

backend_tests! {
    adjustments_move_the_balance_and_record_the_ending_balance => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = adjustment("cus_a", -500, "usd");
        request.description = Some("Welcome credit".into());
        request.metadata.insert("campaign".into(), "spring".into());
        let credit = app.balances.clone().create_balance_transaction(authorized(request)).await.unwrap().into_inner();
        assert!(credit.id.starts_with("cbtxn_"));
        assert_eq!((credit.object.as_str(), credit.amount, credit.ending_balance), ("customer_balance_transaction", -500, -500));
        assert_eq!(credit.r#type, pb::CustomerBalanceTransactionType::Adjustment as i32);
        assert_eq!((credit.customer.as_str(), credit.currency.as_str(), credit.description.as_deref()), ("cus_a", "usd", Some("Welcome credit")));
        assert_eq!((credit.invoice.clone(), credit.credit_note.clone(), credit.metadata["campaign"].as_str()), (None, None, "spring"));
        let debit = app.adjust("cus_a", 200).await;
        assert_eq!(debit.ending_balance, -300);

        let fetched = app.balances.clone().get_balance_transaction(authorized(pb::GetBalanceTransactionRequest { customer: "cus_a".into(), id: credit.id.clone() })).await.unwrap().into_inner();
        assert_eq!(fetched, credit);
        assert_eq!(app.transactions("cus_a").await, [debit.clone(), credit.clone()]);
        let events = app.events_of_type("customer_balance_transaction.created", 2).await;
        assert_eq!(events.iter().map(payload::<pb::CustomerBalanceTransaction>).collect::<Vec<_>>(), [credit, debit]);

        let usd = balance_of(&app, "cus_a", None).await;
        assert_eq!((usd.object.as_str(), usd.currency.as_deref(), usd.balance), ("customer_balance", Some("usd"), -300));
        assert_eq!(usd.invoice_credit_balance, HashMap::from([("usd".to_owned(), 300)]).into_iter().collect());
        app.balances.clone().create_balance_transaction(authorized(adjustment("cus_a", 100, "eur"))).await.unwrap();
        let both = balance_of(&app, "cus_a", None).await;
        assert_eq!((both.currency.clone(), both.balance, both.invoice_credit_balance.len()), (None, 0, 2));
        assert_eq!(both.invoice_credit_balance["eur"], -100);
        assert_eq!(balance_of(&app, "cus_a", Some("eur")).await.balance, 100);
        let stranger = balance_of(&app, "cus_new", None).await;
        assert_eq!((stranger.currency, stranger.balance, stranger.invoice_credit_balance.len()), (None, 0, 0));
        assert_eq!(balance_of(&app, "cus_new", Some("usd")).await.currency.as_deref(), Some("usd"));
    };

    update_changes_only_description_and_metadata => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut request = adjustment("cus_a", -500, "usd");
        request.description = Some("Old".into());
        let original = app.balances.clone().create_balance_transaction(authorized(request)).await.unwrap().into_inner();
        let mut change = pb::UpdateBalanceTransactionRequest { customer: "cus_a".into(), id: original.id.clone(), description: Some(String::new()), ..Default::default() };
        change.metadata.insert("note".into(), "checked".into());
        let updated = app.balances.clone().update_balance_transaction(authorized(change)).await.unwrap().into_inner();
        assert_eq!((updated.description.clone(), updated.metadata["note"].as_str()), (None, "checked"));
        let mut expected = original.clone();
        expected.description = None;
        expected.metadata.insert("note".into(), "checked".into());
        assert_eq!(updated, expected);
        assert_eq!(app.balance("cus_a").await, -500);
        let long = app.balances.clone().update_balance_transaction(authorized(pb::UpdateBalanceTransactionRequest {
            customer: "cus_a".into(), id: original.id.clone(), description: Some("d".repeat(351)), ..Default::default()
        })).await.unwrap_err();
        assert_eq!(violated_fields(&long), ["description"]);
    };

    list_filters_by_invoice_and_pages_newest_first => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut made = Vec::new();
        for amount in [-100, -200, -300] {
            made.push(app.adjust("cus_a", amount).await);
        }
        let invoice = app.finalize(&app.draft_with("cus_a", &[250]).await.id).await;
        let list = |request: pb::ListBalanceTransactionsRequest| {
            let mut client = app.balances.clone();
            async move { client.list_balance_transactions(authorized(request)).await.map(tonic::Response::into_inner) }
        };
        let page = list(pb::ListBalanceTransactionsRequest { customer: "cus_a".into(), limit: Some(2), ..Default::default() }).await.unwrap();
        assert_eq!((page.data.len(), page.has_more), (2, true));
        assert_eq!(page.data[0].r#type, pb::CustomerBalanceTransactionType::AppliedToInvoice as i32);
        assert_eq!((page.data[0].amount, page.data[0].ending_balance), (250, -350));
        assert_eq!(page.data[1], made[2]);
        let rest = list(pb::ListBalanceTransactionsRequest { customer: "cus_a".into(), limit: Some(2), starting_after: Some(made[2].id.clone()), ..Default::default() }).await.unwrap();
        assert_eq!((rest.data, rest.has_more), (vec![made[1].clone(), made[0].clone()], false));
        let for_invoice = list(pb::ListBalanceTransactionsRequest { customer: "cus_a".into(), invoice: Some(invoice.id.clone()), ..Default::default() }).await.unwrap();
        assert_eq!(for_invoice.data.len(), 1);
        assert_eq!(for_invoice.data[0].invoice.as_deref(), Some(invoice.id.as_str()));
        let future = list(pb::ListBalanceTransactionsRequest {
            customer: "cus_a".into(),
            created: Some(settle_proto::common::v1::RangeFilter { gt: Some(made[0].created + 3_600), ..Default::default() }),
            ..Default::default()
        }).await.unwrap();
        assert!(future.data.is_empty());
        assert!(list(pb::ListBalanceTransactionsRequest { customer: "cus_b".into(), ..Default::default() }).await.unwrap().data.is_empty());
        let bad = list(pb::ListBalanceTransactionsRequest { customer: "cus_a".into(), invoice: Some("cbtxn_1".into()), ..Default::default() }).await.unwrap_err();
        assert_eq!(violated_fields(&bad), ["invoice"]);
    };

    bad_input_names_the_field_and_posts_nothing => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let cases = [
            (adjustment("cus_a", 0, "usd"), "amount", "parameter_invalid_integer"),
            (adjustment("cus_a", 1_000_000_000_000, "usd"), "amount", "amount_too_large"),
            (adjustment("cus_a", 100, ""), "currency", "parameter_missing"),
            (adjustment("cus_a", 100, "xx"), "currency", "invalid_currency"),
            (adjustment("bob", 100, "usd"), "customer", "parameter_invalid"),
            (pb::CreateBalanceTransactionRequest { description: Some("d".repeat(351)), ..adjustment("cus_a", 100, "usd") }, "description", "parameter_invalid"),
        ];
        for (request, field, why) in cases {
            let error = app.balances.clone().create_balance_transaction(authorized(request)).await.unwrap_err();
            assert_eq!((error.code(), violated_fields(&error), reason(&error)), (Code::InvalidArgument, vec![field.to_owned()], why.to_owned()));
        }
        assert!(app.transactions("cus_a").await.is_empty());
        assert_eq!(app.balance("cus_a").await, 0);
    };

    another_customers_or_accounts_transactions_are_not_found => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mine = app.adjust("cus_a", -100).await;
        let mut client = app.balances.clone();
        let errors = [
            client.get_balance_transaction(authorized(pb::GetBalanceTransactionRequest { customer: "cus_b".into(), id: mine.id.clone() })).await.unwrap_err(),
            client.get_balance_transaction(with_key(pb::GetBalanceTransactionRequest { customer: "cus_a".into(), id: mine.id.clone() }, OTHER_API_KEY)).await.unwrap_err(),
            client.get_balance_transaction(authorized(pb::GetBalanceTransactionRequest { customer: "cus_a".into(), id: "in_123".into() })).await.unwrap_err(),
            client.update_balance_transaction(with_key(pb::UpdateBalanceTransactionRequest { customer: "cus_a".into(), id: mine.id.clone(), description: Some("x".into()), ..Default::default() }, OTHER_API_KEY)).await.unwrap_err(),
        ];
        for error in errors {
            assert_eq!((error.code(), reason(&error).as_str()), (Code::NotFound, "resource_missing"));
        }
        let theirs = client.get_customer_balance(with_key(pb::GetCustomerBalanceRequest { customer: "cus_a".into(), currency: None }, OTHER_API_KEY)).await.unwrap().into_inner();
        assert_eq!((theirs.balance, theirs.invoice_credit_balance.len()), (0, 0));
        assert_eq!(app.transactions("cus_a").await, [mine]);
    };

    adjustments_replay_under_an_idempotency_key => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let mut client = app.balances.clone();
        let first = client.create_balance_transaction(idempotent(adjustment("cus_a", -700, "usd"), "credit-1")).await.unwrap().into_inner();
        let again = client.create_balance_transaction(idempotent(adjustment("cus_a", -700, "usd"), "credit-1")).await.unwrap().into_inner();
        assert_eq!(first, again);
        assert_eq!(app.balance("cus_a").await, -700, "posted once");
        let other = client.create_balance_transaction(idempotent(adjustment("cus_a", -701, "usd"), "credit-1")).await.unwrap_err();
        assert_eq!(reason(&other), "idempotency_error");
        assert_eq!(app.count_events("customer_balance_transaction.created").await, 1);
    };

    concurrent_postings_keep_the_ledger_consistent => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        let calls = (0..32).map(|i| {
            let mut client = app.balances.clone();
            let amount = if i % 3 == 0 { 250 } else { -(i as i64 + 1) * 10 };
            tokio::spawn(async move { client.create_balance_transaction(authorized(adjustment("cus_a", amount, "usd"))).await })
        });
        let mut expected = 0;
        for result in futures::future::join_all(calls).await {
            expected += result.unwrap().expect("every posting succeeds").into_inner().amount;
        }
        let rows = ledger(&app, "cus_a").await;
        println!("{backend}: 32 concurrent adjustments → {} ledger rows, balance {} (expected {expected})", rows.len(), app.balance("cus_a").await);
        assert_eq!(rows.len(), 32);
        assert_chain(&rows, expected);
        assert_eq!(app.balance("cus_a").await, expected);
    };

    concurrent_finalizations_apply_a_credit_once => |database: TestDatabase| async move {
        let app = spawn(database).await;
        let backend = app.database.backend().name();
        app.adjust("cus_a", -1_000).await;
        let mut drafts = Vec::new();
        for _ in 0..8 {
            drafts.push(app.draft_with("cus_a", &[300]).await);
        }
        let calls = drafts.iter().map(|invoice| {
            let mut client = app.invoices.clone();
            let request = pb::FinalizeInvoiceRequest { id: invoice.id.clone(), ..Default::default() };
            tokio::spawn(async move { client.finalize_invoice(authorized(request)).await })
        });
        let mut due = Vec::new();
        let mut applied = 0;
        for result in futures::future::join_all(calls).await {
            let invoice = result.unwrap().expect("every finalization succeeds").into_inner();
            applied += invoice.starting_balance - invoice.ending_balance.unwrap();
            due.push(invoice.amount_due);
        }
        due.sort_unstable();
        println!("{backend}: 8 concurrent finalizations of 300 against a credit of 1000 → amounts due {due:?}, credit applied {applied}");
        assert_eq!(applied, -1_000, "the credit is used exactly once");
        assert_eq!(due, [0, 0, 0, 200, 300, 300, 300, 300]);
        assert_eq!(app.balance("cus_a").await, 0);
        assert_chain(&ledger(&app, "cus_a").await, 0);
    };
}
