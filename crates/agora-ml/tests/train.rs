//! The train executor on a synthetic data set: checkpoints, determinism, segment replays.

use agora_core::{Encode, Hash, JobParams};
use agora_ml::TrainExecutor;
use agora_ml::fixtures::blobs;
use agora_runtime::audit::{audit, claims_needed, inputs_needed};
use agora_runtime::items::training::Checkpoint;
use agora_runtime::{AuditRequest, ExecError, Executor, PowerModel, TaskContext};

fn ctx(steps: u32, every: u32, lr_micros: u32) -> TaskContext {
    TaskContext {
        job: Hash::of(b"train job"),
        shard: 0,
        model: Hash::of(b"blobs"),
        params: JobParams::Train {
            steps,
            checkpoint_every: every,
            batch_size: 32,
            hidden: 16,
            learning_rate_micros: lr_micros,
            seed: 42,
        },
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

fn data() -> Vec<Vec<u8>> {
    blobs(240, 16, 3, 9).iter().map(Encode::encode).collect()
}

fn replay_request(c: &TaskContext, indices: &[u32], claims: &[Vec<u8>], inputs: &[Vec<u8>]) -> AuditRequest {
    AuditRequest {
        indices: indices.to_vec(),
        inputs: inputs_needed(&c.params, indices, inputs.len() as u32)
            .into_iter()
            .map(|i| (i, inputs[i as usize].clone()))
            .collect(),
        claimed: claims_needed(&c.params, indices)
            .into_iter()
            .map(|i| (i, claims[i as usize].clone()))
            .collect(),
    }
}

#[test]
fn trains_deterministically_with_checkpoints() {
    let exec = TrainExecutor::new();
    let c = ctx(50, 20, 10_000);
    let out = exec.run(&c, &data()).unwrap();
    let ckpts: Vec<Checkpoint> = out.items.iter().map(|i| Checkpoint::from_item(i).unwrap()).collect();
    assert_eq!(ckpts.iter().map(|c| c.step).collect::<Vec<_>>(), vec![20, 40, 50]);
    assert!(ckpts[2].loss < ckpts[0].loss, "loss falls: {} -> {}", ckpts[0].loss, ckpts[2].loss);
    assert_eq!(exec.run(&c, &data()).unwrap().items, out.items, "bit-identical re-run");
    let inputs = data();
    let items: Vec<(u32, &[u8])> = inputs.iter().enumerate().map(|(i, b)| (i as u32, b.as_slice())).collect();
    let predicted = exec.predict(&ckpts[2], 16, &items).unwrap();
    let labels: Vec<u32> = blobs(240, 16, 3, 9).iter().map(|e| e.label).collect();
    let correct = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(correct as f64 / labels.len() as f64 > 0.9, "accuracy {correct}/{}", labels.len());
}

#[test]
fn segments_replay_exactly_and_forgeries_fail() {
    let exec = TrainExecutor::new();
    let c = ctx(50, 20, 10_000);
    let inputs = data();
    let claims = exec.run(&c, &inputs).unwrap().items;

    let req = replay_request(&c, &[0, 1, 2], &claims, &inputs);
    let replayed = exec.recompute(&c, &req).unwrap();
    for (i, bytes) in &replayed.items {
        assert_eq!(bytes, &claims[*i as usize], "segment {i} replays bit for bit");
    }
    assert!(audit(&exec, &c, &req).unwrap().passed());

    // A provider that trained with another learning rate (a cheaper or different job) fails.
    let other = exec.run(&ctx(50, 20, 20_000), &inputs).unwrap().items;
    let mut forged = claims.clone();
    forged[1] = other[1].clone();
    let outcome = audit(&exec, &c, &replay_request(&c, &[1], &forged, &inputs)).unwrap();
    assert!(!outcome.passed(), "{:?}", outcome.verdicts);

    // A provider that skipped a step fails too (the step count differs).
    let mut skipped = Checkpoint::from_item(&claims[0]).unwrap();
    skipped.step -= 1;
    let mut forged = claims.clone();
    forged[0] = skipped.encode();
    assert!(matches!(
        exec.recompute(&c, &replay_request(&c, &[1], &forged, &inputs)),
        Err(ExecError::BadAudit(_))
    ));
    assert!(!audit(&exec, &c, &replay_request(&c, &[0], &forged, &inputs)).unwrap().passed());

    // A replay with a hole in the data set is refused (its length is checked against the
    // shard's item count when the auditor fetches the inputs).
    let mut partial = replay_request(&c, &[1], &claims, &inputs);
    partial.inputs.remove(5);
    assert!(matches!(exec.recompute(&c, &partial), Err(ExecError::BadAudit(_))));
}

#[test]
fn a_layer_beyond_the_checkpoint_bound_is_refused_before_allocation() {
    // 65,536 features × 8,192 hidden units is a 2²⁹-value first layer: training it would
    // allocate gigabytes and commit checkpoints no auditor could decode.
    let wide = agora_runtime::items::training::Example { label: 0, features: vec![1.0; 1 << 16] };
    let mut c = ctx(1, 1, 10_000);
    if let JobParams::Train { hidden, batch_size, .. } = &mut c.params {
        *hidden = 8192;
        *batch_size = 1;
    }
    let err = TrainExecutor::new().run(&c, &[wide.encode()]).expect_err("refused");
    assert!(matches!(err, ExecError::BadParams(_)), "{err}");
    assert!(err.to_string().contains("lower hidden"), "{err}");
}
