//! A tenant's invoices, rebuilt from its billing events alone: replaying them always gives the
//! same list (the events hold every number, amount and date).

use eventstore::Body;
use proto::v1 as pb;

/// Folds billing events (in order) into invoices, oldest first.
pub fn invoices<'a>(events: impl IntoIterator<Item = (&'a Body, i64)>) -> Vec<pb::InvoiceView> {
    let mut out: Vec<pb::InvoiceView> = Vec::new();
    for (body, occurred_at) in events {
        match body {
            Body::InvoiceIssued(e) => {
                if out.iter().any(|i| i.invoice_id == e.invoice_id) {
                    continue;
                }
                out.push(pb::InvoiceView {
                    invoice_id: e.invoice_id.clone(),
                    number: e.number.clone(),
                    amount_minor: e.amount_minor,
                    currency: e.currency.clone(),
                    status: "open".into(),
                    issued_at: Some(prost_types::Timestamp {
                        seconds: occurred_at,
                        nanos: 0,
                    }),
                    due_at: e.due_at,
                    period_start: e.period_start,
                    period_end: e.period_end,
                    ..Default::default()
                });
            }
            Body::PaymentFailed(e) => {
                if let Some(i) = out.iter_mut().find(|i| i.invoice_id == e.invoice_id) {
                    i.failed_attempts = i.failed_attempts.max(e.attempt);
                    if i.grace_ends_at.is_none() {
                        i.grace_ends_at = e.grace_ends_at;
                    }
                }
            }
            Body::InvoicePaid(e) => {
                if let Some(i) = out.iter_mut().find(|i| i.invoice_id == e.invoice_id)
                    && i.status == "open"
                {
                    i.status = "paid".into();
                    e.payment_reference.clone_into(&mut i.payment_reference);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_rebuilds_the_same_invoices() {
        let issued = |id: &str| {
            Body::InvoiceIssued(pb::InvoiceIssued {
                invoice_id: id.into(),
                number: id.into(),
                amount_minor: 1900,
                currency: "EUR".into(),
                ..Default::default()
            })
        };
        let events = [
            (issued("INV-1"), 10),
            (
                Body::PaymentFailed(pb::PaymentFailed {
                    invoice_id: "INV-1".into(),
                    attempt: 1,
                    ..Default::default()
                }),
                11,
            ),
            (
                Body::InvoicePaid(pb::InvoicePaid {
                    invoice_id: "INV-1".into(),
                    payment_reference: "bank-42".into(),
                    ..Default::default()
                }),
                12,
            ),
            (issued("INV-2"), 20),
            (issued("INV-2"), 21),
        ];
        let once = invoices(events.iter().map(|(b, t)| (b, *t)));
        let again = invoices(events.iter().map(|(b, t)| (b, *t)));
        assert_eq!(once, again);
        assert_eq!(once.len(), 2, "an invoice recorded twice is one invoice");
        assert_eq!(
            (
                once[0].status.as_str(),
                once[0].failed_attempts,
                once[0].payment_reference.as_str()
            ),
            ("paid", 1, "bank-42")
        );
        assert_eq!(once[1].status, "open");
    }
}
