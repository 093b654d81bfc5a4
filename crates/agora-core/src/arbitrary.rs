//! Proptest strategies for core types, for round-trip tests here and property tests of the
//! ledger. Values are structurally valid encodings, not necessarily valid ledger actions.

use crate::amount::Amount;
use crate::block::{Block, BlockHeader, FaultKind, Misbehavior};
use crate::class::{Coord, Hardware, Region, ResourceClass};
use crate::crypto::{PublicKey, SecretKey};
use crate::hash::Hash;
use crate::manifest::{
    ClusterSpec, Constraints, JobKind, JobManifest, JobParams, LatencyBound, ShardSpec, VerificationPolicy,
};
use crate::session::{ServeKind, ServeRates, ServeReceipt, SessionTerms, Usage, WindowCommitment};
use crate::tx::{
    AuditEvidence, Disputed, Metering, ParamChange, PricePolicy, ProviderProfile, ResultCommitment, SignedTx,
    Transaction, TxPayload,
};
use proptest::prelude::*;

/// Any 32-byte hash.
pub fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

/// A public key from a small pool of labelled test keys.
pub fn account() -> impl Strategy<Value = PublicKey> {
    (0u8..8).prop_map(|i| SecretKey::from_label(&format!("acct{i}")).public())
}

/// Any amount, biased toward small values.
pub fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![3 => (0u128..10_000).prop_map(Amount), 1 => any::<u128>().prop_map(Amount)]
}

/// One of a few valid classes.
pub fn class() -> impl Strategy<Value = ResourceClass> {
    prop::sample::select(vec!["cpu.x86_64", "cpu.aarch64", "gpu.nvidia.h100-80g"])
        .prop_map(|s| s.parse().expect("valid class"))
}

/// One of a few valid regions.
pub fn region() -> impl Strategy<Value = Region> {
    prop::sample::select(vec!["local", "eu-west", "us-east"]).prop_map(|s| s.parse().expect("valid region"))
}

/// Any coordinate.
pub fn coord() -> impl Strategy<Value = Coord> {
    (any::<[i32; crate::class::COORD_DIMS]>(), any::<u32>()).prop_map(|(vec, height)| Coord { vec, height })
}

fn short_string() -> impl Strategy<Value = String> {
    "[a-z0-9 ]{0,12}"
}

/// Any job parameters.
pub fn params() -> impl Strategy<Value = JobParams> {
    prop_oneof![
        any::<u32>().prop_map(|batch_size| JobParams::Embed { batch_size }),
        (any::<u32>(), any::<u32>(), any::<u64>(), prop::collection::vec(short_string(), 0..3)).prop_map(
            |(max_new_tokens, temperature_milli, seed, stop)| {
                JobParams::Generate { max_new_tokens, temperature_milli, seed, stop }
            }
        ),
        (any::<[u32; 5]>(), any::<u64>()).prop_map(|(v, seed)| JobParams::Train {
            steps: v[0],
            checkpoint_every: v[1],
            batch_size: v[2],
            hidden: v[3],
            learning_rate_micros: v[4],
            seed
        }),
        (any::<u64>(), any::<u32>(), prop::collection::vec(short_string(), 0..3)).prop_map(
            |(fuel_per_item, memory_mib, args)| JobParams::Wasm { fuel_per_item, memory_mib, args }
        ),
    ]
}

/// Any manifest (not necessarily one that passes validation).
pub fn manifest() -> impl Strategy<Value = JobManifest> {
    let shard =
        (hash(), hash(), any::<u32>(), any::<u64>()).prop_map(|(input, items_root, item_count, quantity)| {
            ShardSpec { input, items_root, item_count, quantity }
        });
    let policy = prop_oneof![
        Just(VerificationPolicy::Standard),
        any::<u8>().prop_map(|replicas| VerificationPolicy::Redundant { replicas }),
        Just(VerificationPolicy::None),
    ];
    let constraints = (
        prop::option::of(region()),
        any::<Option<u32>>(),
        prop::option::of(
            (any::<u32>(), coord()).prop_map(|(max_rtt_ms, from)| LatencyBound { max_rtt_ms, from }),
        ),
        prop::option::of(
            (any::<u8>(), any::<u32>())
                .prop_map(|(size, max_pairwise_rtt_ms)| ClusterSpec { size, max_pairwise_rtt_ms }),
        ),
    )
        .prop_map(|(region, max_carbon_g_per_kwh, max_latency, cluster)| Constraints {
            region,
            max_carbon_g_per_kwh,
            max_latency,
            cluster,
        });
    (
        hash(),
        params(),
        class(),
        prop::collection::vec(shard, 0..4),
        amount(),
        any::<u64>(),
        policy,
        constraints,
        (
            any::<bool>(),
            prop::collection::vec("http://[a-z0-9.:]{1,20}", 0..2),
            prop::option::of(account()),
            prop::option::of(account()),
        ),
    )
        .prop_map(
            |(
                model,
                params,
                class,
                shards,
                max_unit_price,
                deadline_ms,
                policy,
                constraints,
                (encrypted, sources, key_agent, output_key),
            )| {
                JobManifest {
                    model,
                    params,
                    class,
                    shards,
                    max_unit_price,
                    deadline_ms,
                    policy,
                    constraints,
                    encrypted,
                    sources,
                    key_agent,
                    output_key,
                }
            },
        )
}

fn profile() -> impl Strategy<Value = ProviderProfile> {
    let hw = (
        short_string(),
        any::<u32>(),
        any::<u64>(),
        prop::collection::vec(short_string(), 0..2),
        any::<u64>(),
    )
        .prop_map(|(cpu_model, cores, memory_mib, gpus, benchmark_score)| Hardware {
            cpu_model,
            cores,
            memory_mib,
            gpus,
            benchmark_score,
        });
    let price = prop_oneof![amount().prop_map(PricePolicy::Fixed), amount().prop_map(PricePolicy::Auto)];
    (
        hw,
        prop::collection::vec(class(), 0..3),
        prop::sample::subsequence(JobKind::ALL.to_vec(), 0..4),
        region(),
        any::<u32>(),
        price,
        coord(),
        short_string(),
        prop::option::of(serve_rates()),
    )
        .prop_map(
            |(hardware, classes, kinds, region, carbon_g_per_kwh, price_policy, coord, endpoint, serve)| {
                ProviderProfile {
                    hardware,
                    classes,
                    kinds,
                    region,
                    carbon_g_per_kwh,
                    price_policy,
                    coord,
                    endpoint,
                    serve,
                }
            },
        )
}

/// Any payload variant.
pub fn payload() -> impl Strategy<Value = TxPayload> {
    let commitment =
        (hash(), any::<u32>(), hash(), any::<[u64; 4]>()).prop_map(|(root, item_count, output, m)| {
            ResultCommitment {
                root,
                item_count,
                output,
                metering: Metering { wall_ms: m[0], device_ms: m[1], fuel: m[2], energy_mwh: m[3] },
            }
        });
    prop_oneof![
        (account(), amount()).prop_map(|(to, amount)| TxPayload::Transfer { to, amount }),
        amount().prop_map(|amount| TxPayload::Bond { amount }),
        amount().prop_map(|amount| TxPayload::Unbond { amount }),
        (profile(), amount())
            .prop_map(|(profile, collateral)| TxPayload::RegisterProvider { profile, collateral }),
        profile().prop_map(|profile| TxPayload::UpdateProvider { profile }),
        amount().prop_map(|amount| TxPayload::AddCollateral { amount }),
        amount().prop_map(|amount| TxPayload::WithdrawCollateral { amount }),
        coord().prop_map(|coord| TxPayload::Heartbeat { coord }),
        (class(), any::<u64>(), amount(), any::<u64>()).prop_map(
            |(class, quantity, min_unit_price, expiry_ms)| TxPayload::PostAsk {
                class,
                quantity,
                min_unit_price,
                expiry_ms
            }
        ),
        any::<u64>().prop_map(|order| TxPayload::CancelOrder { order }),
        manifest().prop_map(|manifest| TxPayload::SubmitJob { manifest }),
        any::<u64>().prop_map(|job| TxPayload::CancelJob { job }),
        (any::<u64>(), account(), prop::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(lease, to, sealed_key)| TxPayload::ShareKey { lease, to, sealed_key }),
        (any::<u64>(), commitment)
            .prop_map(|(lease, commitment)| TxPayload::CommitResult { lease, commitment }),
        (any::<u64>(), any::<Option<u32>>(), proptest::option::of(proptest::array::uniform32(any::<u8>())))
            .prop_map(|(lease, item, d)| TxPayload::ReportInvalidInput {
                lease,
                item,
                disclosure: d.map(|b| {
                    let mut all = [0u8; 96];
                    all[..32].copy_from_slice(&b);
                    all[64..].copy_from_slice(&b);
                    crate::disclosure::KeyDisclosure(all)
                }),
            }),
        (
            any::<u64>(),
            any::<bool>(),
            hash(),
            prop::collection::vec((any::<u32>(), hash()), 0..4),
            any::<u64>()
        )
            .prop_map(|(audit, passed, recomputed_root, disputed, measured_ms)| {
                let disputed =
                    disputed.into_iter().map(|(index, recomputed)| Disputed { index, recomputed }).collect();
                TxPayload::ReportAudit {
                    audit,
                    passed,
                    evidence: AuditEvidence { recomputed_root, disputed, measured_ms },
                }
            }),
        (
            prop::collection::vec(
                ("[a-z_]{1,20}", any::<u128>()).prop_map(|(name, value)| ParamChange { name, value }),
                0..3
            ),
            short_string()
        )
            .prop_map(|(changes, description)| TxPayload::Propose { changes, description }),
        (any::<u64>(), any::<bool>()).prop_map(|(proposal, approve)| TxPayload::Vote { proposal, approve }),
        any::<u64>().prop_map(|lease| TxPayload::ConfirmOutputs { lease }),
        (any::<u64>(), proptest::array::uniform32(any::<u8>())).prop_map(|(lease, b)| {
            let mut all = [0u8; 96];
            all[..32].copy_from_slice(&b);
            TxPayload::DisputeOutputs { lease, disclosure: crate::disclosure::KeyDisclosure(all) }
        }),
        session_terms().prop_map(|terms| TxPayload::OpenSession { terms }),
        any::<u64>().prop_map(|session| TxPayload::CloseSession { session }),
        (any::<u64>(), any::<u64>(), any::<u32>(), hash(), usage()).prop_map(
            |(session, first_seq, receipts, root, total)| TxPayload::CommitWindow {
                window: WindowCommitment { session, first_seq, receipts, root, total }
            }
        ),
        (any::<[u64; 4]>(), hash(), usage(), any::<[u8; 32]>()).prop_map(|(n, h, usage, seed)| {
            let receipt = ServeReceipt {
                session: n[0],
                seq: n[1],
                request: h,
                output: h,
                usage,
                total: usage,
                fingerprints: h,
                first_token_ms: n[2],
                last_token_ms: n[3],
            };
            TxPayload::ChallengeReceipt { receipt: receipt.sign("arbitrary", &SecretKey::from_seed(seed)) }
        }),
        (any::<[u64; 4]>(), prop::collection::vec(hash(), 0..6), any::<bool>()).prop_map(
            |(n, siblings, signed)| {
                let receipt = ServeReceipt {
                    session: n[0],
                    seq: n[1],
                    request: Hash([3; 32]),
                    output: Hash([4; 32]),
                    usage: Usage::default(),
                    total: Usage::default(),
                    fingerprints: Hash::ZERO,
                    first_token_ms: n[2],
                    last_token_ms: n[3],
                };
                TxPayload::AnswerChallenge {
                    session: n[0],
                    seq: n[1],
                    proof: crate::merkle::MerkleProof { index: n[2], count: n[3], siblings },
                    request: signed.then(|| crate::session::RequestProof {
                        client_signature: SecretKey::from_seed([n[2] as u8; 32])
                            .sign(&crate::session::client_message(&receipt.request)),
                        receipt,
                    }),
                }
            }
        ),
        (any::<u64>(), account(), any::<u64>())
            .prop_map(|(session, provider, seq)| TxPayload::ChallengeRequest { session, provider, seq }),
        (any::<u64>(), account())
            .prop_map(|(session, provider)| TxPayload::LeaveSession { session, provider }),
    ]
}

/// Any serving prices.
pub fn serve_rates() -> impl Strategy<Value = ServeRates> {
    (amount(), amount(), amount()).prop_map(|(prompt_per_1k, completion_per_1k, per_item)| ServeRates {
        prompt_per_1k,
        completion_per_1k,
        per_item,
    })
}

fn usage() -> impl Strategy<Value = Usage> {
    any::<[u64; 3]>().prop_map(|[prompt_tokens, completion_tokens, items]| Usage {
        prompt_tokens,
        completion_tokens,
        items,
    })
}

/// Any session terms (most do not validate).
pub fn session_terms() -> impl Strategy<Value = SessionTerms> {
    (
        (hash(), any::<bool>(), class(), serve_rates(), amount()),
        (
            any::<u64>(),
            any::<u8>(),
            any::<u32>(),
            any::<[u8; 32]>(),
            prop::collection::vec(short_string(), 0..3),
        ),
    )
        .prop_map(
            |((model, chat, class, rates, escrow), (duration_ms, providers, ttft_ms, seed, sources))| {
                SessionTerms {
                    model,
                    kind: if chat { ServeKind::Chat } else { ServeKind::Embed },
                    class,
                    rates,
                    escrow,
                    duration_ms,
                    providers,
                    ttft_ms,
                    client: SecretKey::from_seed(seed).public(),
                    sources,
                }
            },
        )
}

/// Any payload, with its variable-length fields (strings, byte strings, lists) stretched to
/// lengths on both sides of the decoder's bounds: what a JSON client or a buggy builder could
/// hand to admission. Most such values encode but do not decode.
pub fn stretched_payload() -> impl Strategy<Value = TxPayload> {
    let len = || prop_oneof![0usize..24, 120usize..300, 1000usize..1100];
    (payload(), [len(), len(), len(), len()]).prop_map(|(mut payload, lens)| {
        stretch(&mut payload, lens);
        payload
    })
}

fn stretch(payload: &mut TxPayload, [a, b, c, d]: [usize; 4]) {
    use crate::manifest::JobParams;
    let text = |n: usize| "x".repeat(n);
    match payload {
        TxPayload::SubmitJob { manifest } => {
            manifest.sources = vec![text(a); d % 12];
            match &mut manifest.params {
                JobParams::Generate { stop, .. } => *stop = vec![text(b); c % 40],
                JobParams::Wasm { args, .. } => *args = vec![text(b); c % 40],
                _ => {}
            }
        }
        TxPayload::RegisterProvider { profile, .. } | TxPayload::UpdateProvider { profile } => {
            profile.endpoint = text(a);
            profile.hardware.cpu_model = text(b);
            profile.hardware.gpus = vec![text(c % 300); d % 24];
            profile.classes = (0..c % 24).map(|_| "cpu.x86_64".parse().expect("valid class")).collect();
            profile.kinds = (0..d % 8).map(|i| crate::JobKind::ALL[i % crate::JobKind::ALL.len()]).collect();
        }
        TxPayload::ShareKey { sealed_key, .. } => *sealed_key = vec![7; a],
        TxPayload::Propose { changes, description } => {
            *description = text(a);
            *changes = (0..d % 24).map(|i| ParamChange { name: text(b % 80 + i % 2), value: 1 }).collect();
        }
        _ => {}
    }
}

/// A transaction signed by the labelled key that matches its sender.
pub fn signed_tx(chain_id: &'static str) -> impl Strategy<Value = SignedTx> {
    (0u8..8, any::<u64>(), amount(), payload()).prop_map(move |(i, nonce, fee, payload)| {
        let key = SecretKey::from_label(&format!("acct{i}"));
        Transaction { sender: key.public(), nonce, fee, payload }.sign(chain_id, &key)
    })
}

/// Any block of a few transactions and misbehaviour reports.
pub fn block() -> impl Strategy<Value = Block> {
    let fault = prop_oneof![
        Just(FaultKind::ConflictingNotarize),
        Just(FaultKind::ConflictingFinalize),
        Just(FaultKind::NullifyFinalize)
    ];
    let misbehavior =
        (account(), fault, any::<u64>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(
            |(offender, kind, epoch, view, proof)| Misbehavior { offender, kind, epoch, view, proof },
        );
    let header = (any::<u64>(), hash(), any::<u64>(), account(), hash(), hash(), hash(), hash()).prop_map(
        |(height, parent, timestamp_ms, proposer, seed, tx_root, evidence_root, state_root)| BlockHeader {
            height,
            parent,
            timestamp_ms,
            proposer,
            seed,
            tx_root,
            evidence_root,
            state_root,
        },
    );
    (header, prop::collection::vec(signed_tx("arb"), 0..4), prop::collection::vec(misbehavior, 0..2))
        .prop_map(|(header, txs, evidence)| Block { header, txs, evidence })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decode, Encode};

    proptest! {
        #[test]
        fn transactions_round_trip(tx in signed_tx("arb")) {
            let bytes = tx.encode();
            prop_assert_eq!(SignedTx::decode_untrusted(&bytes).unwrap(), tx.clone());
            prop_assert!(tx.verify("arb").is_ok());
        }

        #[test]
        fn blocks_round_trip(block in block()) {
            prop_assert_eq!(Block::decode_untrusted(&block.encode()).unwrap(), block);
        }

        #[test]
        fn truncated_transactions_are_rejected(tx in signed_tx("arb"), cut in any::<prop::sample::Index>()) {
            let bytes = tx.encode();
            prop_assert!(SignedTx::decode(&bytes[..cut.index(bytes.len())]).is_err());
        }

        #[test]
        fn mutated_transactions_never_panic_and_never_verify_as_the_original(
            tx in signed_tx("arb"), at in any::<prop::sample::Index>(), bit in 0u8..8,
        ) {
            let mut bytes = tx.encode();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(decoded) = SignedTx::decode(&bytes) {
                // A flipped bit either breaks decoding or produces a different tx whose
                // signature no longer verifies (or a different signature).
                prop_assert!(decoded != tx);
                prop_assert!(decoded.verify("arb").is_err());
            }
        }

        #[test]
        fn random_bytes_never_panic_and_accepted_bytes_are_canonical(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(tx) = SignedTx::decode_untrusted(&bytes) {
                prop_assert_eq!(tx.encode(), bytes.clone());
            }
            if let Ok(block) = Block::decode_untrusted(&bytes) {
                prop_assert_eq!(block.encode(), bytes);
            }
        }
    }
}
