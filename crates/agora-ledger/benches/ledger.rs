//! Ledger throughput: signed transfers applied per second (signatures verified), and the time
//! to clear a block's order book of 100,000 open orders across classes.
//!
//! Run: `cargo bench -p agora-ledger`. Targets (shared/design/product.md): clearing 100k
//! orders ≤ 50 ms on one core.

use agora_core::class::Hardware;
use agora_core::manifest::{Constraints, JobManifest, JobParams, ShardSpec, VerificationPolicy};
use agora_core::tx::{PricePolicy, ProviderProfile, SignedTx, Transaction, TxPayload};
use agora_core::{Amount, Coord, Hash, JobKind, ResourceClass, SecretKey};
use agora_ledger::{BlockBuilder, BlockInfo, Genesis, GenesisAccount, GenesisValidator, Params, State};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

const CHAIN: &str = "bench";
const T0: u64 = 1_700_000_000_000;

fn keys(prefix: &str, n: usize) -> Vec<SecretKey> {
    (0..n).map(|i| SecretKey::from_label(&format!("{prefix}{i}"))).collect()
}

fn genesis(accounts: &[&SecretKey]) -> State {
    let params = Params { min_fee: 1, ..Params::default() };
    let validators = keys("val", 4);
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: T0,
        accounts: accounts
            .iter()
            .map(|k| GenesisAccount { account: k.public(), balance: Amount(1_000_000_000_000) })
            .collect(),
        validators: validators
            .iter()
            .map(|k| GenesisValidator { account: k.public(), stake: Amount(1_000_000) })
            .collect(),
        params,
    }
    .build()
    .expect("valid genesis")
}

fn info(state: &State) -> BlockInfo {
    let height = state.meta().height + 1;
    BlockInfo {
        height,
        timestamp_ms: T0 + height * 1000,
        proposer: SecretKey::from_label("val0").public(),
        seed: Hash::tagged("bench", &[&height.to_le_bytes()]),
        missed: vec![],
        beacon_commit: None,
    }
}

fn sign(k: &SecretKey, nonce: u64, payload: TxPayload) -> SignedTx {
    Transaction { sender: k.public(), nonce, fee: Amount(1), payload }.sign(CHAIN, k)
}

/// Applies `txs` as one block and returns the new state.
fn apply(state: &State, txs: &[SignedTx]) -> State {
    let mut b = BlockBuilder::new(state, info(state)).expect("next block");
    for tx in txs {
        b.push(tx).expect("admissible");
    }
    b.finish(&[]).expect("valid").0
}

fn transfers(c: &mut Criterion) {
    const N: usize = 10_000;
    let senders = keys("s", N);
    let refs: Vec<&SecretKey> = senders.iter().collect();
    let state = genesis(&refs);
    let to = SecretKey::from_label("sink").public();
    let txs: Vec<SignedTx> =
        senders.iter().map(|k| sign(k, 0, TxPayload::Transfer { to, amount: Amount(5) })).collect();
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("apply 10k signed transfers", |b| b.iter(|| apply(&state, &txs)));
    g.finish();
}

fn classes() -> Vec<ResourceClass> {
    (0..10).map(|i| format!("gpu.model{i}-{}g", 8 * (i + 1)).parse().expect("class")).collect()
}

/// A book with `asks` asks and `bids` bids spread over 10 classes, half of them crossing,
/// returned as a builder whose `finish` runs the clearing.
fn book(asks: usize, bids: usize) -> BlockBuilder {
    let providers = keys("prov", 1000);
    let requesters = keys("req", 1000);
    let all: Vec<&SecretKey> = providers.iter().chain(requesters.iter()).collect();
    let mut state = genesis(&all);
    let classes = classes();
    let mut profile = ProviderProfile {
        hardware: Hardware {
            cpu_model: "bench".into(),
            cores: 8,
            memory_mib: 1 << 15,
            gpus: vec![],
            benchmark_score: 1,
        },
        classes: classes.clone(),
        kinds: JobKind::ALL.to_vec(),
        region: "local".parse().expect("region"),
        carbon_g_per_kwh: 100,
        price_policy: PricePolicy::Auto(Amount(1)),
        coord: Coord::default(),
        endpoint: "http://provider.example:7700".into(),
        serve: None,
    };
    let regs: Vec<SignedTx> = providers
        .iter()
        .map(|k| {
            profile.hardware.benchmark_score += 1;
            sign(
                k,
                0,
                TxPayload::RegisterProvider { profile: profile.clone(), collateral: Amount(1_000_000) },
            )
        })
        .collect();
    state = apply(&state, &regs);
    // Bids first (no asks yet, so nothing clears while the book fills).
    let per_req = bids / requesters.len();
    let mut nonce = vec![0u64; requesters.len()];
    let deadline = T0 + 86_400_000;
    let mut pending = vec![];
    for i in 0..bids {
        let r = i / per_req.max(1) % requesters.len();
        let class = classes[i % classes.len()].clone();
        let manifest = JobManifest {
            model: Hash::of(b"m"),
            params: JobParams::Embed { batch_size: 8 },
            class,
            shards: vec![ShardSpec {
                input: Hash::of(&i.to_le_bytes()),
                items_root: Hash::ZERO,
                item_count: 1,
                quantity: 10,
            }],
            max_unit_price: Amount(50 + (i as u128 * 7919) % 100),
            deadline_ms: deadline,
            policy: VerificationPolicy::Standard,
            constraints: Constraints::default(),
            encrypted: false,
            sources: vec![],
            key_agent: None,
            output_key: None,
        };
        pending.push(sign(&requesters[r], nonce[r], TxPayload::SubmitJob { manifest }));
        nonce[r] += 1;
        if pending.len() == 10_000 {
            state = apply(&state, &pending);
            pending.clear();
        }
    }
    state = apply(&state, &pending);
    // Asks go into the measured block, priced so that about half of the bids cross.
    let mut b = BlockBuilder::new(&state, info(&state)).expect("next block");
    for i in 0..asks {
        let k = &providers[i % providers.len()];
        let nonce = 1 + (i / providers.len()) as u64;
        let tx = sign(
            k,
            nonce,
            TxPayload::PostAsk {
                class: classes[i % classes.len()].clone(),
                quantity: 10,
                min_unit_price: Amount(100 + (i as u128 * 104_729) % 100),
                expiry_ms: deadline,
            },
        );
        b.push(&tx).expect("admissible");
    }
    b
}

fn clearing(c: &mut Criterion) {
    let builder = book(50_000, 50_000);
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    // The auction: price discovery and allocation for every class (what a matching engine does).
    let state = builder.state().clone();
    let seed = Hash::of(b"bench seed");
    let matched: usize = agora_ledger::market::plan_all(&state, seed, state.meta().height + 1)
        .iter()
        .flat_map(|(_, r)| r)
        .map(|r| r.matches.len())
        .sum();
    println!("clearing matches {matched} bids of 50,000 against 50,000 asks");
    g.bench_function("auction over 100k open orders (10 classes)", |b| {
        b.iter(|| agora_ledger::market::plan_all(&state, seed, state.meta().height + 1))
    });
    // Clearing applied: the auction plus turning every match into a lease with escrow.
    g.bench_function("clear 100k open orders (10 classes) incl. lease creation", |b| {
        b.iter_batched(
            || builder.clone(),
            |mut b| {
                b.end_block(&[]).expect("valid");
                b
            },
            BatchSize::LargeInput,
        )
    });
    // The whole block end, including encoding the write set (50k new asks, the new leases).
    g.bench_function("finish block with 100k open orders incl. write set", |b| {
        b.iter_batched(|| builder.clone(), |b| b.finish(&[]).expect("valid"), BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, transfers, clearing);
criterion_main!(benches);
