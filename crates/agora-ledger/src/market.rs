//! The order book and per-block clearing.
//!
//! Every block clears each resource class as a sealed-bid, uniform-price double auction
//! (`mechanisms.md` §F.2, adapted to all-or-none shards): no time priority, ties broken by the
//! block seed, a per-account cap, and a provider's lease room shared across its classes. Asks are divisible capacity; bids are shards, filled all-or-none
//! by one provider.
//!
//! **Price.** Bids are whole shards walked in priority order against the asks' unit supply
//! curve; each that fits (the next units it needs all cost at most its price) trades, and one
//! that does not is passed over. The uniform price is McAfee's midpoint of the best losing bid
//! and the next unit of supply, clamped into `[s_k, b_k]` (the last fitting bid and the last
//! unit it takes) instead of McAfee's trade reduction, which with all-or-none shards would
//! drop a whole job, and with spare capacity any non-crossing bid (a free or dust bid) would
//! trigger it: see [`discover_price`]. Individually rational, budget balanced (one price both
//! sides), and every fitting shard trades. Bids below the `min_bid_price` parameter are
//! refused at submission.
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
    if ask.quantity == 0 || ask.quantity > agora_core::manifest::MAX_ORDER_QUANTITY {
        return Err(TxError::Invalid(format!(
            "ask quantity must be 1..={} device-seconds",
            agora_core::manifest::MAX_ORDER_QUANTITY
        )));
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

/// The asks' unit supply curve: the price of the `n`-th cheapest unit.
struct Supply {
    /// `(price, units up to and including this run)`, prices ascending.
    runs: Vec<(Amount, u128)>,
}

impl Supply {
    fn new(asks: &[(Amount, u64)]) -> Self {
        let mut total = 0u128;
        let runs = asks
            .iter()
            .filter(|a| a.1 > 0)
            .map(|&(p, q)| {
                total += u128::from(q); // at most 2⁶⁴ runs of < 2⁶⁴: no overflow
                (p, total)
            })
            .collect();
        Self { runs }
    }

    /// The price of the `n`-th unit (1-based), `None` beyond the supply.
    fn price_of(&self, n: u128) -> Option<Amount> {
        let i = self.runs.partition_point(|&(_, upto)| upto < n);
        self.runs.get(i).filter(|_| n > 0).map(|r| r.0)
    }
}

/// Finds the uniform price and volume of a class: `bids` are whole shards `(max price,
/// quantity)` in priority order (price descending), filled all-or-none; `asks` are divisible
/// capacity `(min price, quantity)`, price ascending. `None` if nothing crosses.
///
/// Bids are walked in order and each is *fitting* if the next `quantity` units of the supply
/// curve all cost at most its price; a bid that does not fit is passed over (it loses) and
/// the walk goes on, so one oversized bid never blocks the bids behind it. `b_k`, `s_k` are the
/// last fitting bid's price and the price of the last unit it takes, `b_{k+1}` the best losing
/// bid, `s_{k+1}` the next unit of supply. The price is McAfee's `p₀ = ⌊(b_{k+1} + s_{k+1})/2⌋`
/// (the reference orders' midpoint; `s_{k+1}` alone with no losing bid, `b_{k+1}` alone with
/// no supply left, `⌊(b_k + s_k)/2⌋` with neither), clamped into `[s_k, b_k]`.
///
/// Trade reduction is not applied. With unit traders McAfee drops the marginal pair when `p₀`
/// leaves `[s_k, b_k]`; with all-or-none shards that pair is a whole job, and when asks have
/// spare capacity `p₀` falls below `s_k` whenever any bid does not cross (a free or dust bid
/// is enough), so the marginal shard, often the only paid one, would never trade. Clamping
/// instead keeps every fitting shard trading. Guarantees: one price for both sides (budget
/// balanced, nothing burned), `s_k ≤ p ≤ b_k` (individually rational for every winner), and
/// every fitting bid trades. The cost is exact truthfulness for the marginal traders: when
/// `p₀` is clamped, the marginal bid or ask sets the price, so it could gain at most the
/// spread `b_k − s_k` per unit by shading; no other trader can move the price.
pub fn discover_price(bids: &[(Amount, u64)], asks: &[(Amount, u64)]) -> Option<Quote> {
    let supply = Supply::new(asks);
    let mut used = 0u128;
    let mut last: Option<(Amount, Amount)> = None;
    let mut best_losing: Option<Amount> = None;
    for &(price, q) in bids {
        let fits = supply.price_of(used + u128::from(q)).filter(|s| *s <= price && q > 0);
        match fits {
            Some(s) => {
                used += u128::from(q);
                last = Some((price, s));
            }
            None => {
                best_losing = best_losing.or(Some(price));
            }
        }
    }
    let (b_k, s_k) = last?;
    let s_next = supply.price_of(used + 1);
    let mid = |a: Amount, b: Amount| Amount(a.0 / 2 + b.0 / 2 + (a.0 % 2 + b.0 % 2) / 2);
    let p0 = match (best_losing, s_next) {
        (Some(b1), Some(s1)) => mid(b1, s1),
        (None, Some(s1)) => s1,
        (Some(b1), None) => b1,
        (None, None) => mid(b_k, s_k),
    };
    let price = p0.clamp(s_k, b_k);
    let volume = u64::try_from(used).ok()?;
    Some(Quote { buyer_price: price, seller_price: price, volume })
}

/// A provider's facts that constraints are checked against.
struct Seller {
    provider: AccountId,
    region: String,
    carbon: u32,
    coord: Coord,
    kinds: Vec<JobKind>,
    room: usize,
    /// Collateral not yet reserved by its unsettled leases or this block's matches.
    free: Amount,
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
            free: p.free_collateral(),
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
    // Leases and collateral reservations planned per provider so far in this block, across
    // classes: a provider's room (`MAX_RUNNING_LEASES`, the bound its record decodes under)
    // and its free collateral are one budget for all the classes it sells in.
    let mut planned: BTreeMap<AccountId, Planned> = BTreeMap::new();
    let mut out = Vec::new();
    for class in state.book.classes() {
        let rounds = plan_class(state, key, height, class, &mut planned);
        if !rounds.is_empty() {
            out.push((class.clone(), rounds));
        }
    }
    out
}

/// What one block's clearing has already given a provider in classes planned before.
#[derive(Default)]
struct Planned {
    leases: usize,
    reserved: Amount,
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
fn plan_class(
    state: &State,
    key: u64,
    height: u64,
    class: &ResourceClass,
    planned: &mut BTreeMap<AccountId, Planned>,
) -> Vec<RoundPlan> {
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
                let mut seller = Seller { jobs, ..Seller::of(e.provider, p) };
                if let Some(before) = planned.get(&e.provider) {
                    seller.room = seller.room.saturating_sub(before.leases);
                    seller.free = seller.free.saturating_sub(before.reserved);
                }
                sellers.push(seller);
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
        params: state.params().clone(),
        price: Amount::ZERO,
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
    for plan in &plans {
        for &(_, ask, quantity) in &plan.matches {
            let Some(Order::Ask(a)) = state.orders.get(&ask) else { continue };
            let reserved = crate::leases::reservation(state.params(), plan.quote.buyer_price, quantity)
                .expect("checked at allocation");
            let p = planned.entry(a.provider).or_default();
            p.leases += 1;
            p.reserved = p.reserved.checked_add(reserved).unwrap_or(Amount(u128::MAX));
        }
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
    /// The protocol parameters (for collateral reservations).
    params: Params,
    /// The buyer price of the round being allocated (what a lease's reservation is sized by).
    price: Amount,
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
            && self.reservation(quantity).is_some_and(|r| r <= s.free)
            && satisfies(
                s,
                &bid.requester,
                job.manifest.kind(),
                &job.manifest.constraints,
                &job.shards[bid.shard as usize].excluded,
            )
    }

    fn within_cap(&self, who: &AccountId, q: u64) -> bool {
        self.bought.get(who).is_none_or(|&already| already.checked_add(q).is_some_and(|n| n <= self.cap))
    }

    /// The collateral a shard of `quantity` units reserves at this round's price.
    fn reservation(&self, quantity: u64) -> Option<Amount> {
        crate::leases::reservation(&self.params, self.price, quantity)
    }

    fn take(&mut self, b: usize, a: usize, matches: &mut Vec<(usize, usize)>) {
        let q = self.bids[b].quantity;
        let reserved = self.reservation(q).expect("checked by serves");
        self.remaining[a] -= q;
        let seller = &mut self.sellers[self.asks[a].seller];
        seller.room -= 1;
        seller.free = seller.free.checked_sub(reserved).expect("checked by serves");
        seller.jobs.insert(self.bids[b].job);
        let bought = self.bought.entry(self.bids[b].requester).or_default();
        *bought = bought.saturating_add(q);
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
        self.price = quote.buyer_price;
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
                let total = members.iter().try_fold(0u64, |n, &m| n.checked_add(self.bids[m].quantity));
                let biggest = members.iter().map(|&m| self.bids[m].quantity).max().unwrap_or(0);
                let Some(total) = total.filter(|&t| t <= volume_left && self.within_cap(&requester, t))
                else {
                    continue;
                };
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
        traded = traded.saturating_add(quantity);
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
    fn mcafee_midpoint_clamped_into_the_marginal_spread() {
        // Unit bids 10, 9, 3; asks 1, 2, 8. k = 2; p0 = (3 + 8) / 2 = 5 ∈ [s_2, b_2] = [2, 9].
        let q =
            discover_price(&[(a(10), 1), (a(9), 1), (a(3), 1)], &[(a(1), 1), (a(2), 1), (a(8), 1)]).unwrap();
        assert_eq!(q, Quote { buyer_price: a(5), seller_price: a(5), volume: 2 });
        // Bids 10, 9, 8; asks 1, 2, 3 then 20: no losing bid, so the next ask (20) is the
        // reference, clamped to b_3 = 8.
        let q = discover_price(
            &[(a(10), 1), (a(9), 1), (a(8), 1)],
            &[(a(1), 1), (a(2), 1), (a(3), 1), (a(20), 1)],
        )
        .unwrap();
        assert_eq!(q, Quote { buyer_price: a(8), seller_price: a(8), volume: 3 });
        // p0 above b_k: bids 10, 9, 1; asks 1, 2, 100 → k = 2, p0 = (1 + 100)/2 = 50, clamped
        // to 9. Both pairs trade (McAfee would drop one); nobody pays more than it bid.
        let q = discover_price(&[(a(10), 1), (a(9), 1), (a(1), 1)], &[(a(1), 1), (a(2), 1), (a(100), 1)])
            .unwrap();
        assert_eq!(q, Quote { buyer_price: a(9), seller_price: a(9), volume: 2 });
        // p0 below s_k with spare capacity (the dust-bid freeze): one 60-unit shard at 10, a
        // dust bid at 1, one ask at 2 with room. The shard trades at the ask, whole.
        let q = discover_price(&[(a(10), 60), (a(1), 60)], &[(a(2), 3600)]).unwrap();
        assert_eq!(q, Quote { buyer_price: a(2), seller_price: a(2), volume: 60 });
        // A shard bigger than the supply is passed over; the one behind it trades, at the
        // midpoint of the losing bid (10) and the spare supply (2).
        let q = discover_price(&[(a(10), 1000), (a(9), 60)], &[(a(2), 100)]).unwrap();
        assert_eq!(q, Quote { buyer_price: a(6), seller_price: a(6), volume: 60 });
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

    /// Which bids trade under `quote`, by the rule of [`discover_price`]: whole bids in order,
    /// each taking the next units of supply if they all cost at most its price.
    fn winners(bids: &[(Amount, u64)], asks: &[(Amount, u64)]) -> Vec<bool> {
        let supply = Supply::new(asks);
        let mut used = 0u128;
        bids.iter()
            .map(|&(p, q)| {
                let fits = supply.price_of(used + u128::from(q)).is_some_and(|s| s <= p);
                if fits {
                    used += u128::from(q);
                }
                fits
            })
            .collect()
    }

    /// `(price, quantity)` orders of one side.
    type Curve = Vec<(Amount, u64)>;

    fn curves() -> impl Strategy<Value = (Curve, Curve)> {
        let side = || prop::collection::vec((0u128..100, 1u64..40), 1..12);
        (side(), side()).prop_map(|(mut bids, mut asks)| {
            bids.sort_by_key(|x| std::cmp::Reverse(x.0));
            asks.sort_by_key(|x| x.0);
            let c = |v: Vec<(u128, u64)>| v.into_iter().map(|(p, q)| (Amount(p), q)).collect();
            (c(bids), c(asks))
        })
    }

    proptest! {
        /// Discovery and allocation agree, and the price is individually rational, budget
        /// balanced, and leaves no crossing shard unmatched while capacity exists at the price.
        #[test]
        fn whole_shards_clear_rationally_balanced_and_unstarved((bids, asks) in curves()) {
            let won = winners(&bids, &asks);
            let Some(q) = discover_price(&bids, &asks) else {
                prop_assert!(won.iter().all(|w| !w), "something fits but nothing traded");
                return Ok(());
            };
            prop_assert_eq!(q.buyer_price, q.seller_price, "one price: budget balanced, nothing burned");
            let volume: u64 = bids.iter().zip(&won).filter(|(_, w)| **w).map(|(b, _)| b.1).sum();
            prop_assert_eq!(q.volume, volume, "the volume is exactly the winning shards'");
            for (b, w) in bids.iter().zip(&won) {
                if *w {
                    prop_assert!(b.0 >= q.buyer_price, "a winner pays at most its bid");
                }
            }
            // The cheapest `volume` units of supply all ask at most the price.
            let supply = Supply::new(&asks);
            prop_assert!(supply.price_of(u128::from(q.volume)).is_some_and(|s| s <= q.seller_price));
            // No losing shard that bids at least the price would fit in the capacity still
            // offered at or below the price.
            let at_price: u64 = asks.iter().filter(|a| a.0 <= q.seller_price).map(|a| a.1).sum();
            let spare = at_price - q.volume;
            for (b, w) in bids.iter().zip(&won) {
                if !*w && b.0 >= q.buyer_price {
                    prop_assert!(b.1 > spare, "shard {b:?} starved with {spare} units spare at {}", q.seller_price);
                }
            }
        }

        /// A winning bid that is not the marginal one cannot move the price by bidding
        /// anything else at or above the price: only the marginal orders set it.
        #[test]
        fn only_the_marginal_orders_can_move_the_price((bids, asks) in curves(), pick in 0usize..12, shade in 0u128..100) {
            let won = winners(&bids, &asks);
            let Some(q) = discover_price(&bids, &asks) else { return Ok(()) };
            let i = pick % bids.len();
            let last_winner = won.iter().rposition(|w| *w).expect("a quote has a winner");
            // A strictly higher bid than the marginal one, shaded to any price that keeps its
            // place in the priority order.
            if !won[i] || i >= last_winner || bids[i].0 == bids[last_winner].0 {
                return Ok(());
            }
            let floor = bids.get(i + 1).map_or(Amount::ZERO, |b| b.0).max(q.buyer_price);
            let new = Amount(floor.0 + shade % (bids[i].0.0 - floor.0 + 1));
            let mut shaded = bids.clone();
            shaded[i].0 = new;
            let again = discover_price(&shaded, &asks).expect("still trades");
            prop_assert_eq!(again.buyer_price, q.buyer_price);
        }
    }
}
