//! `agora run JOB.toml --local` for ML jobs, with models given by path.

use agora_ml::fixtures::{blobs, write_tiny_bert};
use agora_ml::{EmbedExecutor, TrainExecutor};
use agora_runtime::items::training::Checkpoint;
use agora_runtime::local::{LocalJob, run_local};
use agora_runtime::provision::Provisioner;

#[test]
fn local_embed_and_train_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let provisioner = Provisioner::new(&tmp.path().join("data"));

    write_tiny_bert(&tmp.path().join("bert"), 1).unwrap();
    std::fs::write(tmp.path().join("s.txt"), "the cat sat\n\n  \na dog runs fast\r\nthe sea\n").unwrap();
    std::fs::write(
        tmp.path().join("embed.toml"),
        "kind = \"embed\"\nmodel = \"bert\"\ninputs = [\"s.txt\"]\n[params]\nbatch_size = 2\n",
    )
    .unwrap();
    let job = LocalJob::load(&tmp.path().join("embed.toml")).unwrap();
    let model = job.resolve_model(&provisioner).unwrap();
    let exec = EmbedExecutor::load(&model.path).unwrap();
    let outcome = run_local(&job, &model, &exec).unwrap();
    assert_eq!(outcome.output.items.len(), 3, "blank lines are skipped");
    assert_eq!(outcome.manifest.model, model.hash);

    let rows: String = blobs(120, 8, 3, 4)
        .iter()
        .map(|e| {
            let f: Vec<String> = e.features.iter().map(|v| format!("{v}")).collect();
            format!("{},{}\n", f.join(","), e.label)
        })
        .collect();
    std::fs::write(tmp.path().join("blobs.csv"), rows).unwrap();
    std::fs::write(
        tmp.path().join("train.toml"),
        "kind = \"train\"\nmodel = \"blobs.csv\"\n[params]\nsteps = 30\ncheckpoint_every = 10\nbatch_size = 16\nhidden = 8\n",
    )
    .unwrap();
    let job = LocalJob::load(&tmp.path().join("train.toml")).unwrap();
    let model = job.resolve_model(&provisioner).unwrap();
    let outcome = run_local(&job, &model, &TrainExecutor::new()).unwrap();
    assert_eq!(outcome.manifest.shards[0].item_count, 120, "the data set's rows are the inputs");
    let steps: Vec<u32> =
        outcome.output.items.iter().map(|i| Checkpoint::from_item(i).unwrap().step).collect();
    assert_eq!(steps, [10, 20, 30]);
    outcome.write(&tmp.path().join("out")).unwrap();
    let summary = std::fs::read_to_string(tmp.path().join("out/summary.json")).unwrap();
    assert!(summary.contains("checkpoint at step 30"), "{summary}");
}
