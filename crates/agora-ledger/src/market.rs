//! The order book and per-block clearing.
//!
//! Every block clears each resource class as a sealed-bid, uniform-price double auction with
//! McAfee trade reduction (`mechanisms.md` §F.2): no time priority, ties broken by the block
//! seed, a per-account cap. Asks are divisible capacity; bids are shards, filled all-or-none
//! by one provider.
//!
//! **Price.** Unit curves are formed from the sorted orders (bids by price descending, asks
//! ascending). `k` is the number of units where the `k`-th bid price is at least the `k`-th
//! ask price. With both `(k+1)`-th prices present, McAfee applies: `p₀ = ⌊(b_{k+1} +
//! s_{k+1}) / 2⌋` is the price for all `k` units if `s_k ≤ p₀ ≤ b_k`; otherwise `k − 1` units
//! trade, buyers paying `b_k` and sellers receiving `s_k` (the spread is burned). When one
//! side is exhausted (no `(k+1)`-th order on it), McAfee has no reference price; the best
//! losing order on the other side sets it, as in a `(k+1)`-th price auction: `min(b_k,
//! s_{k+1})` with spare supply, `max(s_k, b_{k+1})` with spare demand, `⌊(b_k + s_k)/2⌋` when
//! both sides are used up exactly. Every rule is individually rational and never pays out
//! more than it takes in.
//!
//! **Allocation.** Bids at or above the buyer price take, in priority order, the first ask at
//! or below the seller price that satisfies their constraints (region, carbon, latency, job
//! kind, providers excluded after failing the shard) and has room for the whole shard, until
//! the traded volume is reached, preferring a provider that holds no other shard of the same
//! job (so one job spreads over several providers). Cluster jobs place all their shards at
//! once on distinct, mutually close providers (F.3), or none.

use crate::error::TxError;
use crate::events::Event;
use crate::params::Params;
use crate::state::{Bucket, Ctx, State, Timer};
use agora_core::codec::{Decode, DecodeError, DecodeErrorKind, Encode, Reader};
use agora_core::manifest::{Constraints, JobKind};
use agora_core::tx::{JobId, OrderId};
use agora_core::{AccountId, Amount, Coord, Hash, ResourceClass, codec_struct};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Capacity offered by a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// Seller.
    pub provider: AccountId,
    /// Class sold.
    pub class: ResourceClass,
    /// Device-seconds still offered.
    pub quantity: u64,
    /// Lowest acceptable price per device-second.
    pub min_unit_price: Amount,
    /// Unix ms at which it is withdrawn.
    pub expiry_ms: u64,
}
codec_struct!(Ask { provider, class, quantity, min_unit_price, expiry_ms });

/// Demand for one shard of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// Job.
    pub job: JobId,
    /// Shard index.
    pub shard: u32,
    /// Buyer.
    pub requester: AccountId,
    /// Class bought.
    pub class: ResourceClass,
    /// Device-seconds (filled all-or-none).
    pub quantity: u64,
    /// Highest acceptable price per device-second.
    pub max_unit_price: Amount,
    /// Funds locked for it: max price × quantity.
    pub escrow: Amount,
}
codec_struct!(Bid { job, shard, requester, class, quantity, max_unit_price, escrow });

/// An open order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "side")]
pub enum Order {
    /// Supply.
    Ask(Ask),
    /// Demand.
    Bid(Bid),
}

impl Order {
    /// The class traded.
    pub fn class(&self) -> &ResourceClass {
        match self {
            Order::Ask(a) => &a.class,
            Order::Bid(b) => &b.class,
        }
    }
}

impl Encode for Order {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Order::Ask(a) => {
                out.push(0);
                a.encode_to(out);
            }
            Order::Bid(b) => {
                out.push(1);
                b.encode_to(out);
            }
        }
    }
}

impl Decode for Order {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.tag("Order")? {
            0 => Ok(Order::Ask(Ask::decode_from(r)?)),
            1 => Ok(Order::Bid(Bid::decode_from(r)?)),
            t => Err(DecodeError::new("Order", DecodeErrorKind::UnknownTag(t))),
        }
    }
}

/// Most recent clearings kept per class.
pub const PRICE_HISTORY: usize = 64;

/// One clearing of a class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearing {
    /// Block height.
    pub height: u64,
    /// Price paid by buyers.
    pub buyer_price: Amount,
    /// Price received by sellers.
    pub seller_price: Amount,
    /// Device-seconds traded.
    pub volume: u64,
}
codec_struct!(Clearing { height, buyer_price, seller_price, volume });

/// Market history of a class, for automatic pricing, quotes and charts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Most recent clearings, oldest first.
    pub recent: Vec<Clearing>,
    /// Device-seconds ever traded.
    pub total_volume: u64,
}
codec_struct!(ClassStats { recent: vec(PRICE_HISTORY), total_volume });

impl ClassStats {
    /// The last buyer price, if the class ever cleared.
    pub fn last_price(&self) -> Option<Amount> {
        self.recent.last().map(|c| c.buyer_price)
    }
}

/// Adds an order to the table and the book index.
pub(crate) fn insert_order(state: &mut State, id: OrderId, order: Order) {
    state.book.insert(id, &order);
    state.orders.insert(id, order);
}

/// Removes an order from the table and the book index.
pub(crate) fn remove_order(state: &mut State, id: OrderId) -> Option<Order> {
    let order = state.orders.remove(&id)?;
    state.book.remove(id, &order);
    Some(order)
}

/// Takes `quantity` from an ask (filled by a lease), removing it when used up. Returns the
/// ask as it was.
pub(crate) fn fill_ask(state: &mut State, id: OrderId, quantity: u64) -> Ask {
    let Some(Order::Ask(ask)) = remove_order(state, id) else { unreachable!("filling a live ask") };
    if ask.quantity > quantity {
        let rest = Ask { quantity: ask.quantity - quantity, ..ask.clone() };
        insert_order(state, id, Order::Ask(rest));
    } else {
        state.unschedule(ask.expiry_ms, Timer::OrderExpiry(id));
    }
    ask
}

/// Removes an order from the book, refunding a bid's escrow to its requester.
pub(crate) fn close_order(state: &mut State, cx: &mut Ctx, id: OrderId) {
    let Some(order) = remove_order(state, id) else { return };
    let refunded = match order {
        Order::Ask(a) => {
            state.unschedule(a.expiry_ms, Timer::OrderExpiry(id));
            Amount::ZERO
        }
        Order::Bid(b) => {
            state.pay_out(Bucket::Escrow, &b.requester, b.escrow);
            b.escrow
        }
    };
    cx.emit(Event::OrderClosed { order: id, refunded });
}

/// Posts an ask for a registered, working provider.
pub(crate) fn post_ask(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    ask: Ask,
) -> Result<OrderId, TxError> {
    let p = state.providers.get(&who).ok_or_else(|| TxError::not_found("provider", who))?;
    if !p.can_work(cx.height) {
        return Err(TxError::InvalidState("provider is inactive or ejected".into()));
    }
    if !p.profile.classes.contains(&ask.class) {
        return Err(TxError::Invalid(format!(
            "class {} is not in the provider's registered classes",
            ask.class
        )));
    }
    if ask.quantity == 0 {
        return Err(TxError::Invalid("ask quantity must be positive".into()));
    }
    let lifetime = Params::u64(state.params().max_order_lifetime_ms);
    if ask.expiry_ms <= cx.time_ms || ask.expiry_ms - cx.time_ms > lifetime {
        return Err(TxError::Invalid(format!("expiry must be in the future and at most {lifetime} ms away")));
    }
    let id = state.next_id();
    state.schedule(ask.expiry_ms, Timer::OrderExpiry(id));
    cx.emit(Event::AskPosted {
        order: id,
        provider: who,
        class: ask.class.clone(),
        quantity: ask.quantity,
        min_unit_price: ask.min_unit_price,
    });
    insert_order(state, id, Order::Ask(ask));
    Ok(id)
}

/// Cancels the sender's ask. Bids belong to jobs and are cancelled with the job.
pub(crate) fn cancel_order(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: OrderId,
) -> Result<(), TxError> {
    match state.orders.get(&id) {
        None => Err(TxError::not_found("order", id)),
        Some(Order::Bid(_)) => Err(TxError::Invalid("bids belong to jobs: cancel the job instead".into())),
        Some(Order::Ask(a)) if a.provider != who => Err(TxError::Unauthorized("not your ask".into())),
        Some(Order::Ask(_)) => {
            close_order(state, cx, id);
            Ok(())
        }
    }
}

/// Closes every ask of a provider (it went inactive or was ejected).
pub(crate) fn close_asks_of(state: &mut State, cx: &mut Ctx, provider: AccountId) {
    let ids: Vec<OrderId> = state
        .orders
        .iter()
        .filter(|(_, o)| matches!(o, Order::Ask(a) if a.provider == provider))
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        close_order(state, cx, id);
    }
}

/// Runs from the `OrderExpiry` timer.
pub(crate) fn expire(state: &mut State, cx: &mut Ctx, id: OrderId) {
    close_order(state, cx, id);
}

// ----- clearing ------------------------------------------------------------------------------

/// Price and volume of one class's clearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Price per unit paid by buyers.
    pub buyer_price: Amount,
    /// Price per unit received by sellers.
    pub seller_price: Amount,
    /// Most units that may trade.
    pub volume: u64,
}

/// Finds the uniform prices and volume for sorted unit curves, each given as
/// `(price, quantity)` runs: bids by price descending, asks ascending. `None` if nothing
/// crosses. See the module documentation for the rule.
pub fn discover_price(bids: &[(Amount, u64)], asks: &[(Amount, u64)]) -> Option<Quote> {
    let (mut i, mut j) = (0, 0);
    let (mut bi, mut aj) = (bids.first()?.1, asks.first()?.1);
    let mut k: u64 = 0;
    let (mut b_k, mut s_k) = (Amount::ZERO, Amount::ZERO);
    while i < bids.len() && j < asks.len() && bids[i].0 >= asks[j].0 {
        let step = bi.min(aj);
        k += step;
        b_k = bids[i].0;
        s_k = asks[j].0;
        bi -= step;
        aj -= step;
        if bi == 0 {
            i += 1;
            bi = bids.get(i).map_or(0, |b| b.1);
        }
        if aj == 0 {
            j += 1;
            aj = asks.get(j).map_or(0, |a| a.1);
        }
    }
    if k == 0 {
        return None;
    }
    let b_next = bids.get(i).map(|b| b.0);
    let s_next = asks.get(j).map(|a| a.0);
    let mid = |a: Amount, b: Amount| Amount(a.0 / 2 + b.0 / 2 + (a.0 % 2 + b.0 % 2) / 2);
    Some(match (b_next, s_next) {
        (Some(b1), Some(s1)) => {
            let p0 = mid(b1, s1);
            if s_k <= p0 && p0 <= b_k {
                Quote { buyer_price: p0, seller_price: p0, volume: k }
            } else {
                Quote { buyer_price: b_k, seller_price: s_k, volume: k - 1 }
            }
        }
        (None, Some(s1)) => {
            let p = b_k.min(s1);
            Quote { buyer_price: p, seller_price: p, volume: k }
        }
        (Some(b1), None) => {
            let p = s_k.max(b1);
            Quote { buyer_price: p, seller_price: p, volume: k }
        }
        (None, None) => {
            let p = mid(b_k, s_k);
            Quote { buyer_price: p, seller_price: p, volume: k }
        }
    })
}

/// A provider's facts that constraints are checked against.
struct Seller {
    provider: AccountId,
    region: String,
    carbon: u32,
    coord: Coord,
    kinds: Vec<JobKind>,
    room: usize,
    /// Jobs it holds a shard of (running leases, and matches made in this block).
    jobs: BTreeSet<JobId>,
}

impl Seller {
    /// The facts of provider `id` (without the jobs it holds).
    fn of(id: AccountId, p: &crate::registry::Provider) -> Self {
        Self {
            provider: id,
            region: p.profile.region.to_string(),
            carbon: p.profile.carbon_g_per_kwh,
            coord: p.profile.coord,
            kinds: p.profile.kinds.clone(),
            room: crate::registry::MAX_RUNNING_LEASES.saturating_sub(p.running.len()),
            jobs: BTreeSet::new(),
        }
    }
}

/// Checks that the registered providers could ever serve a job: enough active providers offer
/// its class and kind and meet its constraints (region, carbon, latency, cluster size).
/// Whether they have capacity open right now is the market's business, not this check's.
pub(crate) fn check_placeable(
    state: &State,
    m: &agora_core::JobManifest,
    requester: &AccountId,
    height: u64,
) -> Result<(), TxError> {
    let kind = m.kind();
    let needed = m.constraints.cluster.map_or(1, |c| usize::from(c.size));
    let eligible = state
        .providers
        .iter()
        .filter(|(id, p)| {
            p.can_work(height)
                && p.profile.classes.contains(&m.class)
                && satisfies(&Seller::of(**id, p), requester, kind, &m.constraints, &[])
        })
        .take(needed)
        .count();
    if eligible >= needed {
        return Ok(());
    }
    let c = &m.constraints;
    let mut terms = vec![format!("class {}", m.class), format!("{kind} jobs")];
    if let Some(r) = &c.region {
        terms.push(format!("region {r}"));
    }
    if let Some(x) = c.max_carbon_g_per_kwh {
        terms.push(format!("≤ {x} gCO2e/kWh"));
    }
    if let Some(l) = &c.max_latency {
        terms.push(format!("≤ {} ms from the given coordinate", l.max_rtt_ms));
    }
    Err(TxError::Invalid(format!(
        "unplaceable: {eligible} active provider(s) meet {} but the job needs {needed}; relax the \
         constraints (`agora job quote` shows who is eligible)",
        terms.join(", ")
    )))
}

/// Whether a seller satisfies a bid's job constraints.
fn satisfies(
    seller: &Seller,
    requester: &AccountId,
    kind: JobKind,
    c: &Constraints,
    excluded: &[AccountId],
) -> bool {
    seller.provider != *requester
        && seller.kinds.contains(&kind)
        && !excluded.contains(&seller.provider)
        && c.region.as_ref().is_none_or(|r| r.as_str() == seller.region)
        && c.max_carbon_g_per_kwh.is_none_or(|max| seller.carbon <= max)
        && c.max_latency
            .as_ref()
            .is_none_or(|l| seller.coord.predicted_rtt_us(&l.from) <= u64::from(l.max_rtt_ms) * 1000)
}

/// One round of a class's clearing, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundPlan {
    /// Prices and the most units that may trade.
    pub quote: Quote,
    /// Matches: (bid, ask, device-seconds).
    pub matches: Vec<(OrderId, OrderId, u64)>,
}

/// Plans the clearing of every class for a block with `seed` at `height`, without changing
/// anything: the auction itself (price discovery and allocation). [`clear_all`] applies the
/// plan; quotes and benchmarks use it on its own.
pub fn plan_all(state: &State, seed: Hash, height: u64) -> Vec<(ResourceClass, Vec<RoundPlan>)> {
    let key = crate::state::draw(&seed, "tie", 0);
    state
        .book
        .classes()
        .map(|c| (c.clone(), plan_class(state, key, height, c)))
        .filter(|(_, r)| !r.is_empty())
        .collect()
}

/// Clears every class with crossing orders. Called once per block, after transactions.
pub(crate) fn clear_all(state: &mut State, cx: &mut Ctx) {
    for (class, rounds) in plan_all(state, cx.seed, cx.height) {
        for round in rounds {
            record_round(state, cx, &class, &round);
        }
    }
}

/// The parts of a bid that clearing reads.
struct OpenBid {
    id: OrderId,
    price: Amount,
    quantity: u64,
    requester: AccountId,
    job: JobId,
    shard: u32,
    tie: u64,
}

/// The parts of an ask that clearing reads.
struct OpenAsk {
    id: OrderId,
    price: Amount,
    quantity: u64,
    tie: u64,
    seller: usize,
}

/// A cheap keyed mix (SplitMix64) for tie-breaking: unpredictable before the block seed is
/// known, identical on every node after.
fn tie(key: u64, id: OrderId) -> u64 {
    let mut z = key ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Candidate asks examined per bid when looking for a provider that holds no other shard of
/// the same job (beyond that, the shard goes to the first ask that can serve it).
const SPREAD_SCAN: usize = 32;

/// Most clearing rounds per class per block (see [`clear_class`]).
pub const MAX_ROUNDS: usize = 4;

/// Clears one class. Round one is the uniform-price auction over the whole book. Bids that
/// cross at the round's price but that no eligible ask could serve (their constraints rule
/// out every ask at that price) go to another round, run the same way over themselves and
/// only the asks that could serve at least one of them, so a constraint never leaves a bid
/// stranded behind asks it cannot use. Each round is individually rational and budget
/// balanced on its own.
fn plan_class(state: &State, key: u64, height: u64, class: &ResourceClass) -> Vec<RoundPlan> {
    let mut plans = Vec::new();
    let Some(cb) = state.book.class(class) else { return plans };
    // Cheap exit when nothing can cross: most blocks, most classes.
    let (Some(top), Some(bottom)) = (cb.bids.get_min(), cb.asks.get_min()) else { return plans };
    let (best_bid, best_ask) = (top.price.0, bottom.price);
    if best_bid < best_ask {
        return plans;
    }
    // Only orders that can cross take part, plus the first order beyond on each side (its
    // price is the (k+1)-th reference price of the auction).
    let mut bids = Vec::new();
    for e in cb.bids.iter() {
        let beyond = e.price.0 < best_ask;
        bids.push(OpenBid {
            id: e.id,
            price: e.price.0,
            quantity: e.quantity,
            requester: e.requester,
            job: e.job,
            shard: e.shard,
            tie: tie(key, e.id),
        });
        if beyond {
            break;
        }
    }
    let mut asks = Vec::new();
    let mut sellers: Vec<Seller> = Vec::new();
    let mut seller_index: BTreeMap<AccountId, usize> = BTreeMap::new();
    for e in cb.asks.iter() {
        let beyond = e.price > best_bid;
        let seller = match seller_index.get(&e.provider) {
            Some(i) => *i,
            None => {
                let Some(p) = state.providers.get(&e.provider) else { continue };
                if !p.can_work(height) {
                    continue;
                }
                let jobs = p.running.iter().filter_map(|l| state.leases.get(l).map(|l| l.job)).collect();
                sellers.push(Seller { jobs, ..Seller::of(e.provider, p) });
                seller_index.insert(e.provider, sellers.len() - 1);
                sellers.len() - 1
            }
        };
        asks.push(OpenAsk { id: e.id, price: e.price, quantity: e.quantity, tie: tie(key, e.id), seller });
        if beyond {
            break;
        }
    }
    let offered = cb.offered;
    // Equal prices are ordered by the seeded tie-breaker, not by id: no time priority.
    bids.sort_unstable_by(|x, y| y.price.cmp(&x.price).then(x.tie.cmp(&y.tie)));
    asks.sort_unstable_by(|x, y| x.price.cmp(&y.price).then(x.tie.cmp(&y.tie)));
    let mut book = Book {
        remaining: asks.iter().map(|a| a.quantity).collect(),
        bids,
        asks,
        sellers,
        cap: (u128::from(offered) * state.params().account_cap_bps / 10_000) as u64,
        bought: BTreeMap::new(),
    };
    let mut bid_set: Vec<usize> = (0..book.bids.len()).collect();
    let mut ask_set: Vec<usize> = (0..book.asks.len()).collect();
    for _ in 0..MAX_ROUNDS {
        let Some(round) = book.round(state, &bid_set, &ask_set) else { break };
        if !round.matches.is_empty() {
            let matches = round
                .matches
                .iter()
                .map(|&(b, a)| (book.bids[b].id, book.asks[a].id, book.bids[b].quantity))
                .collect();
            plans.push(RoundPlan { quote: round.quote, matches });
        }
        if round.blocked.is_empty() {
            break;
        }
        // Next round: the blocked bids, and the asks with room that could serve one of them.
        ask_set = (0..book.asks.len())
            .filter(|&i| book.remaining[i] > 0)
            .filter(|&i| round.blocked.iter().any(|&b| book.serves(state, b, i, book.bids[b].quantity)))
            .collect();
        bid_set = round.blocked;
    }
    plans
}

/// The class's order book during one block's clearing.
struct Book {
    bids: Vec<OpenBid>,
    asks: Vec<OpenAsk>,
    sellers: Vec<Seller>,
    /// Capacity left per ask.
    remaining: Vec<u64>,
    /// Most units one account may buy in this block.
    cap: u64,
    /// Units bought per account so far in this block.
    bought: BTreeMap<AccountId, u64>,
}

/// The result of one clearing round.
struct Round {
    quote: Quote,
    /// (bid index, ask index) pairs.
    matches: Vec<(usize, usize)>,
    /// Bids that crossed but found no eligible ask.
    blocked: Vec<usize>,
}

impl Book {
    /// Whether ask `a` could serve `quantity` units of bid `b` (constraints and room).
    fn serves(&self, state: &State, b: usize, a: usize, quantity: u64) -> bool {
        let bid = &self.bids[b];
        state.jobs.get(&bid.job).is_some_and(|job| self.serves_job(job, b, a, quantity))
    }

    /// [`Book::serves`] with the bid's job already looked up.
    fn serves_job(&self, job: &crate::jobs::Job, b: usize, a: usize, quantity: u64) -> bool {
        let bid = &self.bids[b];
        let s = &self.sellers[self.asks[a].seller];
        self.remaining[a] >= quantity
            && s.room > 0
            && satisfies(
                s,
                &bid.requester,
                job.manifest.kind(),
                &job.manifest.constraints,
                &job.shards[bid.shard as usize].excluded,
            )
    }

    fn within_cap(&self, who: &AccountId, q: u64) -> bool {
        self.bought.get(who).is_none_or(|&already| already + q <= self.cap)
    }

    fn take(&mut self, b: usize, a: usize, matches: &mut Vec<(usize, usize)>) {
        let q = self.bids[b].quantity;
        self.remaining[a] -= q;
        let seller = &mut self.sellers[self.asks[a].seller];
        seller.room -= 1;
        seller.jobs.insert(self.bids[b].job);
        *self.bought.entry(self.bids[b].requester).or_default() += q;
        matches.push((b, a));
    }

    /// Runs price discovery and allocation over the given bids and asks (both in priority
    /// order). `None` if nothing crosses.
    fn round(&mut self, state: &State, bid_set: &[usize], ask_set: &[usize]) -> Option<Round> {
        let bid_curve: Vec<(Amount, u64)> =
            bid_set.iter().map(|&i| (self.bids[i].price, self.bids[i].quantity)).collect();
        let ask_curve: Vec<(Amount, u64)> =
            ask_set.iter().map(|&i| (self.asks[i].price, self.remaining[i])).collect();
        let quote = discover_price(&bid_curve, &ask_curve)?;
        let eligible: Vec<usize> =
            ask_set.iter().copied().filter(|&i| self.asks[i].price <= quote.seller_price).collect();
        let mut volume_left = quote.volume;
        let mut matches = Vec::new();
        let mut blocked = Vec::new();
        let mut clusters_seen: BTreeSet<JobId> = BTreeSet::new();
        // Eligible asks before `live` are used up (capacity only ever shrinks), so scans
        // start there: allocation stays linear in the number of orders.
        let mut live = 0;
        for &b in bid_set {
            let (price, q, job_id, requester) =
                (self.bids[b].price, self.bids[b].quantity, self.bids[b].job, self.bids[b].requester);
            if volume_left == 0 || price < quote.buyer_price {
                break;
            }
            let Some(job) = state.jobs.get(&job_id) else { continue };
            if let Some(cluster) = job.manifest.constraints.cluster {
                // All shards of the job at once, on distinct, mutually close providers.
                if !clusters_seen.insert(job_id) {
                    continue;
                }
                let members: Vec<usize> =
                    bid_set.iter().copied().filter(|&x| self.bids[x].job == job_id).collect();
                if members.len() != usize::from(cluster.size) {
                    continue; // some shards already placed or abandoned: the cluster cannot form
                }
                let total: u64 = members.iter().map(|&m| self.bids[m].quantity).sum();
                let biggest = members.iter().map(|&m| self.bids[m].quantity).max().unwrap_or(0);
                if total > volume_left || !self.within_cap(&requester, total) {
                    continue;
                }
                let candidates: Vec<usize> = eligible
                    .iter()
                    .copied()
                    .filter(|&a| members.iter().all(|&m| self.serves(state, m, a, biggest)))
                    .collect();
                match select_cluster(
                    &candidates,
                    &self.asks,
                    &self.sellers,
                    cluster.size,
                    cluster.max_pairwise_rtt_ms,
                ) {
                    Some(chosen) => {
                        for (&m, a) in members.iter().zip(chosen) {
                            self.take(m, a, &mut matches);
                        }
                        volume_left -= total;
                    }
                    None => blocked.extend(members),
                }
                continue;
            }
            if q > volume_left || !self.within_cap(&requester, q) {
                continue;
            }
            while live < eligible.len() && self.remaining[eligible[live]] == 0 {
                live += 1;
            }
            // Spread a job's shards over providers: prefer (among the next few candidates, to
            // keep allocation linear) a provider that holds no shard of this job yet.
            let serving = || eligible[live..].iter().copied().filter(|&a| self.serves_job(job, b, a, q));
            let fresh = serving()
                .take(SPREAD_SCAN)
                .find(|&a| !self.sellers[self.asks[a].seller].jobs.contains(&job_id));
            match fresh.or_else(|| serving().next()) {
                Some(a) => {
                    self.take(b, a, &mut matches);
                    volume_left -= q;
                }
                None => blocked.push(b),
            }
        }
        Some(Round { quote, matches, blocked })
    }
}

/// Turns a round's matches into leases and records the clearing.
fn record_round(state: &mut State, cx: &mut Ctx, class: &ResourceClass, round: &RoundPlan) {
    let mut traded = 0u64;
    for &(bid, ask, quantity) in &round.matches {
        traded += quantity;
        crate::leases::create(state, cx, bid, ask, round.quote.buyer_price, round.quote.seller_price);
    }
    let mut stats = state.class_stats.get(class).cloned().unwrap_or_default();
    stats.recent.push(Clearing {
        height: cx.height,
        buyer_price: round.quote.buyer_price,
        seller_price: round.quote.seller_price,
        volume: traded,
    });
    if stats.recent.len() > PRICE_HISTORY {
        stats.recent.remove(0);
    }
    stats.total_volume = stats.total_volume.saturating_add(traded);
    state.class_stats.insert(class.clone(), stats);
    cx.emit(Event::Cleared {
        class: class.clone(),
        buyer_price: round.quote.buyer_price,
        seller_price: round.quote.seller_price,
        volume: traded,
        leases: round.matches.len() as u32,
    });
}

/// Chooses `size` asks of distinct providers whose pairwise predicted RTT is at most
/// `max_rtt_ms`, cheapest first (F.3): for each seed, the cheapest members within `L/2` of it
/// (diameter ≤ L by the triangle inequality), else the seed and its nearest neighbours; every
/// candidate set is then checked pairwise. Returns ask indices.
fn select_cluster(
    candidates: &[usize],
    asks: &[OpenAsk],
    sellers: &[Seller],
    size: u8,
    max_rtt_ms: u32,
) -> Option<Vec<usize>> {
    // One ask per provider: the cheapest (candidates are already in price order).
    let mut seen = BTreeSet::new();
    let pool: Vec<usize> = candidates.iter().copied().filter(|&i| seen.insert(asks[i].seller)).collect();
    let k = usize::from(size);
    if pool.len() < k {
        return None;
    }
    let limit = u64::from(max_rtt_ms) * 1000;
    let rtt =
        |a: usize, b: usize| sellers[asks[a].seller].coord.predicted_rtt_us(&sellers[asks[b].seller].coord);
    let diameter = |set: &[usize]| {
        set.iter()
            .flat_map(|&a| set.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| rtt(a, b))
            .max()
            .unwrap_or(0)
    };
    let cost = |set: &[usize]| set.iter().map(|&i| asks[i].price.0).sum::<u128>();
    let mut best: Option<(u128, u64, Vec<usize>)> = None;
    for &seed in &pool {
        let ball: Vec<usize> =
            pool.iter().copied().filter(|&j| j == seed || rtt(seed, j) * 2 <= limit).collect();
        let set: Vec<usize> = if ball.len() >= k {
            let mut set = vec![seed];
            set.extend(ball.iter().copied().filter(|&j| j != seed).take(k - 1));
            set
        } else {
            let mut near: Vec<usize> = pool.iter().copied().filter(|&j| j != seed).collect();
            near.sort_by_key(|&j| (rtt(seed, j), j));
            std::iter::once(seed).chain(near.into_iter().take(k - 1)).collect()
        };
        let d = diameter(&set);
        if set.len() == k && d <= limit {
            let key = (cost(&set), d);
            if best.as_ref().is_none_or(|(c, bd, _)| key < (*c, *bd)) {
                best = Some((key.0, key.1, set));
            }
        }
    }
    best.map(|(_, _, set)| set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(n: u128) -> Amount {
        Amount(n)
    }

    #[test]
    fn mcafee_trade_reduction() {
        // Unit traders: bids 10, 9, 3; asks 1, 2, 8. k = 2; p0 = (3 + 8) / 2 = 5 ∈ [s_2, b_2] = [2, 9].
        let q =
            discover_price(&[(a(10), 1), (a(9), 1), (a(3), 1)], &[(a(1), 1), (a(2), 1), (a(8), 1)]).unwrap();
        assert_eq!(q, Quote { buyer_price: a(5), seller_price: a(5), volume: 2 });
        // Bids 10, 9, 8; asks 1, 2, 3 then 20: k = 3, p0 = (?) b4 absent → spare supply rule.
        let q = discover_price(
            &[(a(10), 1), (a(9), 1), (a(8), 1)],
            &[(a(1), 1), (a(2), 1), (a(3), 1), (a(20), 1)],
        )
        .unwrap();
        assert_eq!(q, Quote { buyer_price: a(8), seller_price: a(8), volume: 3 });
        // p0 outside [s_k, b_k]: bids 10, 9, 1; asks 1, 2, 100 → k = 2, p0 = (1 + 100)/2 = 50 > 9.
        let q = discover_price(&[(a(10), 1), (a(9), 1), (a(1), 1)], &[(a(1), 1), (a(2), 1), (a(100), 1)])
            .unwrap();
        assert_eq!(q, Quote { buyer_price: a(9), seller_price: a(2), volume: 1 });
    }

    #[test]
    fn spare_supply_prices_at_next_ask() {
        // One shard of 60 units at max 10; providers ask 2 and 3 with plenty of room.
        let q = discover_price(&[(a(10), 60)], &[(a(2), 3600), (a(3), 3600)]).unwrap();
        assert_eq!(q, Quote { buyer_price: a(2), seller_price: a(2), volume: 60 });
        // With only one ask, the rest of its own capacity is the next unit: still priced at 2.
        let q = discover_price(&[(a(10), 60)], &[(a(2), 3600)]).unwrap();
        assert_eq!(q.volume, 60);
    }

    #[test]
    fn no_cross_no_trade() {
        assert_eq!(discover_price(&[(a(1), 5)], &[(a(2), 5)]), None);
        assert_eq!(discover_price(&[], &[(a(2), 5)]), None);
    }

    proptest! {
        #[test]
        fn prices_are_individually_rational_and_budget_balanced(
            mut bids in prop::collection::vec((1u128..100, 1u64..20), 1..12),
            mut asks in prop::collection::vec((1u128..100, 1u64..20), 1..12),
        ) {
            bids.sort_by_key(|x| std::cmp::Reverse(x.0));
            asks.sort_by_key(|x| x.0);
            let bc: Vec<(Amount, u64)> = bids.iter().map(|(p, q)| (Amount(*p), *q)).collect();
            let ac: Vec<(Amount, u64)> = asks.iter().map(|(p, q)| (Amount(*p), *q)).collect();
            if let Some(q) = discover_price(&bc, &ac) {
                prop_assert!(q.buyer_price >= q.seller_price, "budget balance");
                // Units that trade: the top `volume` bid units all bid at least the buyer price,
                // and the cheapest `volume` ask units all ask at most the seller price.
                let mut left = q.volume;
                for (p, n) in &bc { if left == 0 { break } prop_assert!(*p >= q.buyer_price); left = left.saturating_sub(*n); }
                let mut left = q.volume;
                for (p, n) in &ac { if left == 0 { break } prop_assert!(*p <= q.seller_price); left = left.saturating_sub(*n); }
                let demand: u64 = bc.iter().map(|b| b.1).sum();
                let supply: u64 = ac.iter().map(|a| a.1).sum();
                prop_assert!(q.volume <= demand.min(supply));
            }
        }
    }
}
