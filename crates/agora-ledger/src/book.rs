//! The order-book index: open orders per class, kept sorted by price, carrying the fields
//! clearing reads. It is derived from the orders table (rebuilt on load, never stored), and
//! lets clearing touch only the part of each book that can cross.

use crate::market::Order;
use agora_core::tx::{JobId, OrderId};
use agora_core::{AccountId, Amount, ResourceClass};
use imbl::{OrdMap, OrdSet};
use std::cmp::Reverse;

/// A bid as clearing sees it; sorted by price (highest first), then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BidEntry {
    pub price: Reverse<Amount>,
    pub id: OrderId,
    pub quantity: u64,
    pub requester: AccountId,
    pub job: JobId,
    pub shard: u32,
}

/// An ask as clearing sees it; sorted by price (lowest first), then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AskEntry {
    pub price: Amount,
    pub id: OrderId,
    pub quantity: u64,
    pub provider: AccountId,
}

/// One class's side-sorted orders.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClassBook {
    pub bids: OrdSet<BidEntry>,
    pub asks: OrdSet<AskEntry>,
    /// Device-seconds offered by all asks (the base of the per-account cap).
    pub offered: u64,
}

/// Sorted open orders of every class.
#[derive(Debug, Clone, Default)]
pub(crate) struct OrderBook {
    classes: OrdMap<ResourceClass, ClassBook>,
}

impl OrderBook {
    /// Indexes an order.
    pub fn insert(&mut self, id: OrderId, order: &Order) {
        let book = self.classes.entry(order.class().clone()).or_default();
        match order {
            Order::Bid(b) => {
                book.bids.insert(BidEntry {
                    price: Reverse(b.max_unit_price),
                    id,
                    quantity: b.quantity,
                    requester: b.requester,
                    job: b.job,
                    shard: b.shard,
                });
            }
            Order::Ask(a) => {
                book.offered = book.offered.saturating_add(a.quantity);
                book.asks.insert(AskEntry {
                    price: a.min_unit_price,
                    id,
                    quantity: a.quantity,
                    provider: a.provider,
                });
            }
        }
    }

    /// Removes an order (as it was when indexed).
    pub fn remove(&mut self, id: OrderId, order: &Order) {
        let class = order.class();
        let Some(book) = self.classes.get_mut(class) else { return };
        match order {
            Order::Bid(b) => {
                book.bids.remove(&BidEntry {
                    price: Reverse(b.max_unit_price),
                    id,
                    quantity: b.quantity,
                    requester: b.requester,
                    job: b.job,
                    shard: b.shard,
                });
            }
            Order::Ask(a) => {
                if book
                    .asks
                    .remove(&AskEntry {
                        price: a.min_unit_price,
                        id,
                        quantity: a.quantity,
                        provider: a.provider,
                    })
                    .is_some()
                {
                    book.offered -= a.quantity;
                }
            }
        }
        if book.bids.is_empty() && book.asks.is_empty() {
            self.classes.remove(class);
        }
    }

    /// Classes with open orders.
    pub fn classes(&self) -> impl Iterator<Item = &ResourceClass> {
        self.classes.keys()
    }

    /// One class's orders.
    pub fn class(&self, class: &ResourceClass) -> Option<&ClassBook> {
        self.classes.get(class)
    }
}
