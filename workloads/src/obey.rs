//! The guest's side of the harness's orders (`protocol::Order`): verifying the
//! memory dirtier's pages, and the one fault a test may inject.

use crate::channel::Channel;
use crate::console::console;
use migbench_guest::orders::Orders;
use migbench_guest::protocol::{Message, Order};

/// Carries out one order line; anything else is reported on the console and ignored.
pub fn obey(line: &str, channel: &Channel, orders: &Orders) {
    if line.is_empty() {
        return;
    }
    match Order::parse(line) {
        Some(Order::Verify { id }) => {
            // Every failed self-check first: the harness reads this answer's lines in
            // order, so with the INTEGRITY line it has them all, whichever QEMU it
            // listened to when they happened.
            let tally = crate::work::verify_memory(orders.workload).unwrap_or_else(|e| {
                crate::work::failed(&e);
                None
            });
            for what in crate::work::FAILURES.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                channel.send(&Message::Failed(what.clone()));
            }
            channel.send(&Message::Integrity { id, tally });
        }
        Some(Order::TestCorrupt { page }) if orders.test_orders => {
            let said = match crate::work::corrupt_memory(orders.workload, page) {
                Ok(()) => format!("test order: flipped a bit of page {page} of the working set"),
                Err(e) => format!("test order: cannot corrupt page {page}: {e}"),
            };
            channel.send(&Message::Log(said));
        }
        Some(Order::TestCorrupt { page }) => {
            let said = format!("refusing test order to corrupt page {page}: this guest was not booted with migbench.test_orders=1");
            console(&format!("migbench-guest: {said}"));
            channel.send(&Message::Log(said));
        }
        None => console(&format!("migbench-guest: ignoring unknown order {line:?}")),
    }
}
