//! The generate executor on a tiny generated llama GGUF: tokenizer, decoding, replay audits,
//! requantization.

use agora_core::{Encode, Hash, JobParams};
use agora_ml::fixtures::write_tiny_llama;
use agora_ml::generate::requant::requantize_file;
use agora_ml::{GenerateExecutor, Requantize};
use agora_runtime::audit::audit;
use agora_runtime::items::generation::{Generation, StopReason};
use agora_runtime::provision::Derivation;
use agora_runtime::{AuditRequest, Executor, PowerModel, TaskContext};
use candle_core::quantized::{GgmlDType, gguf_file};

const PROMPTS: [&str; 3] = ["Write one sentence about the sea.", "hello there", "the answer is"];

fn ctx(max_new_tokens: u32, temperature_milli: u32, seed: u64, stop: Vec<String>) -> TaskContext {
    TaskContext {
        job: Hash::of(b"gen job"),
        shard: 0,
        model: Hash::of(b"tiny llama"),
        params: JobParams::Generate { max_new_tokens, temperature_milli, seed, stop },
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

fn inputs() -> Vec<Vec<u8>> {
    PROMPTS.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn tiny(dtype: GgmlDType, seed: u64) -> (tempfile::TempDir, GenerateExecutor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    write_tiny_llama(&path, seed, dtype).unwrap();
    let exec = GenerateExecutor::load(dir.path()).unwrap();
    (dir, exec)
}

fn gens(items: &[Vec<u8>]) -> Vec<Generation> {
    items.iter().map(|i| Generation::from_item(i).unwrap()).collect()
}

fn request(indices: &[u32], claims: &[Vec<u8>]) -> AuditRequest {
    AuditRequest {
        indices: indices.to_vec(),
        inputs: indices.iter().map(|&i| (i, inputs()[i as usize].clone())).collect(),
        claimed: indices.iter().map(|&i| (i, claims[i as usize].clone())).collect(),
    }
}

#[test]
fn tokenizer_rebuilt_from_gguf_handles_chatml() {
    let (_dir, exec) = tiny(GgmlDType::Q8_0, 1);
    let ids = exec.llm().encode("<|im_start|>user\nthe sea<|im_end|>").unwrap();
    assert_eq!(ids.first(), Some(&1), "<|im_start|> is one special token");
    assert_eq!(ids.last(), Some(&2), "<|im_end|> is one special token");
    assert!(exec.llm().eos().contains(&2) && exec.llm().eos().contains(&0));
}

#[test]
fn greedy_is_deterministic_and_replays_exactly() {
    let (_dir, exec) = tiny(GgmlDType::Q8_0, 1);
    let c = ctx(12, 0, 0, vec![]);
    let a = exec.run(&c, &inputs()).unwrap();
    assert_eq!(exec.run(&c, &inputs()).unwrap().items, a.items);
    for g in gens(&a.items) {
        assert!(!g.tokens.is_empty() && g.tokens.len() <= 12);
        assert!(g.stop == StopReason::MaxTokens || g.stop == StopReason::Eos);
    }
    let outcome = audit(&exec, &c, &request(&[0, 2], &a.items)).unwrap();
    assert!(outcome.passed(), "{:?}", outcome.verdicts);

    // A forged token (the model's least likely choice at step 1) is caught.
    let mut forged = gens(&a.items);
    let g = &mut forged[0];
    if g.tokens.len() > 1 {
        g.tokens[1] = if g.tokens[1] == 100 { 101 } else { 100 };
        let claims: Vec<Vec<u8>> = forged.iter().map(Encode::encode).collect();
        let outcome = audit(&exec, &c, &request(&[0], &claims)).unwrap();
        assert!(!outcome.passed(), "{:?}", outcome.verdicts);
    }
    // A truncated claim (fewer tokens, no stop condition) is caught.
    let mut short = gens(&a.items);
    if short[2].stop == StopReason::MaxTokens {
        short[2].tokens.pop();
        let claims: Vec<Vec<u8>> = short.iter().map(Encode::encode).collect();
        assert!(!audit(&exec, &c, &request(&[2], &claims)).unwrap().passed());
    }
}

#[test]
fn sampling_is_seeded_per_item_and_audited() {
    let (_dir, exec) = tiny(GgmlDType::Q8_0, 1);
    let c = ctx(16, 1000, 7, vec![]);
    let a = exec.run(&c, &inputs()).unwrap();
    assert_eq!(exec.run(&c, &inputs()).unwrap().items, a.items, "same seed, same samples");
    let other = exec.run(&ctx(16, 1000, 8, vec![]), &inputs()).unwrap();
    assert_ne!(other.items, a.items, "another seed, other samples");
    let greedy = exec.run(&ctx(16, 0, 7, vec![]), &inputs()).unwrap();
    assert_ne!(greedy.items, a.items);
    assert!(audit(&exec, &c, &request(&[0, 1, 2], &a.items)).unwrap().passed());
    // Greedy claims do not pass as samples.
    assert!(!audit(&exec, &c, &request(&[0, 1, 2], &greedy.items)).unwrap().passed());
}

#[test]
fn stop_strings_cut_the_completion() {
    let (_dir, exec) = tiny(GgmlDType::Q8_0, 1);
    let plain = gens(&exec.run(&ctx(12, 0, 0, vec![]), &inputs()).unwrap().items);
    let Some((i, g)) = plain.iter().enumerate().find(|(_, g)| g.text.chars().count() >= 3) else {
        panic!("the tiny model produced no text to cut: {plain:?}")
    };
    let stop: String = g.text.chars().skip(1).take(1).collect();
    let c = ctx(12, 0, 0, vec![stop.clone()]);
    let out = gens(&exec.run(&c, &inputs()[i..=i]).unwrap().items).remove(0);
    assert_eq!(out.stop, StopReason::StopString);
    assert!(!out.text.contains(&stop) && g.text.starts_with(&out.text), "{out:?} vs {g:?}");
    assert!(out.tokens.len() <= g.tokens.len());
}

#[test]
fn requantization_is_deterministic_and_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let q41 = dir.path().join("q41.gguf");
    write_tiny_llama(&q41, 3, GgmlDType::Q4_1).unwrap();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    Requantize.derive(&q41, &a).unwrap();
    requantize_file(&q41, &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same bytes every time");
    let content = gguf_file::Content::read(&mut std::fs::File::open(&a).unwrap()).unwrap();
    let dtypes: Vec<GgmlDType> = content.tensor_infos.values().map(|t| t.ggml_dtype).collect();
    assert!(dtypes.iter().all(|d| matches!(d, GgmlDType::Q8_0 | GgmlDType::F32)), "{dtypes:?}");
    assert!(dtypes.contains(&GgmlDType::Q8_0));
    let exec = GenerateExecutor::load(&a).unwrap();
    let out = exec.run(&ctx(4, 0, 0, vec![]), &inputs()[..1]).unwrap();
    assert_eq!(out.items.len(), 1);
}

#[test]
fn a_prompt_longer_than_the_model_accepts_is_named_before_anything_is_computed() {
    let (_dir, exec) = tiny(GgmlDType::Q8_0, 1);
    let c = ctx(4, 0, 7, vec![]);
    assert!(exec.check_input(&c, 0, PROMPTS[0].as_bytes()).is_ok());
    // Well-formed text, far beyond the prompt limit once tokenized.
    let long = "the sea ".repeat(agora_ml::generate::model::MAX_PROMPT_TOKENS);
    let e = exec.check_input(&c, 5, long.as_bytes()).unwrap_err();
    assert!(matches!(e, agora_runtime::ExecError::BadInput { index: 5, .. }), "{e}");
    // The run refuses the same item the same way, so a provider's statement is what an
    // auditor's check finds.
    let e = exec.run(&c, &[PROMPTS[1].as_bytes().to_vec(), long.into_bytes()]).unwrap_err();
    assert!(matches!(e, agora_runtime::ExecError::BadInput { index: 1, .. }), "{e}");
    assert!(matches!(
        exec.check_input(&c, 2, &[0xff]),
        Err(agora_runtime::ExecError::BadInput { index: 2, .. })
    ));
}

#[test]
fn an_observed_run_reports_each_token_as_chosen_and_can_be_stopped() {
    use agora_ml::generate::model::{Request, Step};
    use agora_ml::generate::sampler::Sampler;
    use std::ops::ControlFlow;
    let (_dir, exec) = tiny(GgmlDType::Q8_0, 3);
    let req = Request {
        prompt: PROMPTS[0],
        max_new_tokens: 12,
        stop: &[],
        sampler: Sampler::from_milli(700),
        seed: 9,
        follow: None,
    };
    let plain = exec.llm().generate(&req).unwrap().generation;
    let mut seen: Vec<(usize, u32, String, usize)> = vec![];
    let mut record = |s: Step<'_>| {
        seen.push((s.index, s.token, s.text.to_string(), s.logits.len()));
        ControlFlow::Continue(())
    };
    let observed = exec.llm().generate_observed(&req, Some(&mut record)).unwrap().unwrap().generation;
    assert_eq!(observed, plain, "observing changes nothing");
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), plain.tokens, "every token, in order");
    assert!(seen.iter().enumerate().all(|(i, s)| s.0 == i && s.3 > 0));
    assert_eq!(seen.last().unwrap().2, plain.text, "the last step's text is the answer");
    let mut stop_at_three =
        |s: Step<'_>| if s.index == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
    assert!(exec.llm().generate_observed(&req, Some(&mut stop_at_three)).unwrap().is_none());
}

/// A claimed completion longer than the model's context cannot have been generated: its replay
/// is a verdict (cut at the context, it differs from the claim), never a failure of the replay
/// that would leave the auditor "unable". A prompt the context cannot hold is a bad request.
#[test]
fn runs_and_replays_end_at_the_models_context() {
    use agora_ml::generate::model::Request;
    use agora_ml::generate::sampler::Sampler;
    let (_dir, exec) = tiny(GgmlDType::Q8_0, 5);
    let llm = exec.llm();
    let context = 512; // the fixture's llama.context_length
    let prompt = llm.prompt_tokens(PROMPTS[1]).unwrap().len();
    let claim = vec![100u32; 2 * context];
    let req = Request {
        prompt: PROMPTS[1],
        max_new_tokens: claim.len(),
        stop: &[],
        sampler: Sampler::from_milli(0),
        seed: 0,
        follow: Some(&claim),
    };
    let outcome = llm.generate(&req).expect("a replay past the context is a verdict, not an error");
    let g = outcome.generation;
    assert_eq!(g.tokens.len(), context + 1 - prompt, "the n-th token needs the prompt and n − 1 fed");
    assert_eq!(g.stop, StopReason::MaxTokens);
    assert_ne!(g.tokens, claim, "so the claim differs from its replay");

    let long = "the sea ".repeat(context);
    let e = llm.prompt_tokens(&long).unwrap_err();
    assert!(matches!(e, agora_runtime::ExecError::BadParams(_)) && e.to_string().contains("context"), "{e}");
}

/// Runs decoded together in a batch, joining at different steps, choose exactly the tokens,
/// from exactly the logits, they choose alone; a stopped run leaves, the others go on.
#[test]
fn a_batched_run_is_the_same_bits_as_alone() {
    use agora_ml::generate::batch::{Batch, RunSink};
    use agora_ml::generate::model::{Outcome, Request, Step};
    use agora_ml::generate::sampler::Sampler;
    use std::ops::ControlFlow;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<(Vec<Vec<f32>>, Option<Option<Outcome>>)>>;
    struct Record(Seen, Option<usize>);
    impl RunSink for Record {
        fn step(&mut self, s: Step<'_>) -> ControlFlow<()> {
            self.0.lock().unwrap().0.push(s.logits.to_vec());
            if Some(s.index) == self.1 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        }
        fn done(self: Box<Self>, outcome: Result<Option<Outcome>, agora_runtime::ExecError>) {
            self.0.lock().unwrap().1 = Some(outcome.unwrap());
        }
    }

    let (dir, _exec) = tiny(GgmlDType::Q8_0, 11);
    let llm =
        Arc::new(agora_ml::generate::Llm::load(&dir.path().join("model.gguf"), &agora_ml::device()).unwrap());
    let stops = vec!["zz".to_string()];
    let reqs: Vec<Request<'_>> = [(PROMPTS[0], 0, 20), (PROMPTS[1], 700, 9), (PROMPTS[2], 1_300, 14)]
        .into_iter()
        .map(|(prompt, t, n)| Request {
            prompt,
            max_new_tokens: n,
            stop: &stops,
            sampler: Sampler::from_milli(t),
            seed: u64::from(t),
            follow: None,
        })
        .collect();
    let alone: Vec<(Vec<Vec<f32>>, Outcome)> = reqs
        .iter()
        .map(|r| {
            let mut logits = vec![];
            let mut record = |s: Step<'_>| {
                logits.push(s.logits.to_vec());
                ControlFlow::Continue(())
            };
            let o = llm.generate_observed(r, Some(&mut record)).unwrap().unwrap();
            (logits, o)
        })
        .collect();

    let mut batch = Batch::new(llm.clone());
    let seen: Vec<Seen> = (0..4).map(|_| Seen::default()).collect();
    batch.admit(&reqs[0], Box::new(Record(seen[0].clone(), None)));
    batch.step();
    batch.step();
    batch.admit(&reqs[1], Box::new(Record(seen[1].clone(), None)));
    batch.admit(&reqs[2], Box::new(Record(seen[2].clone(), None)));
    // A fourth run whose client leaves after its third token.
    batch.admit(&reqs[0], Box::new(Record(seen[3].clone(), Some(2))));
    while !batch.is_empty() {
        batch.step();
    }
    for (i, (logits, outcome)) in alone.iter().enumerate() {
        let got = seen[i].lock().unwrap();
        assert_eq!(&got.0, logits, "run {i}: every step's logits");
        let o = got.1.as_ref().expect("ended").as_ref().expect("not stopped");
        assert_eq!(o.generation, outcome.generation, "run {i}");
    }
    let left = seen[3].lock().unwrap();
    assert_eq!(left.0.len(), 3);
    assert!(matches!(left.1, Some(None)), "a stopped run ends with nothing");
    // A request the model refuses ends at once.
    let long = "the sea ".repeat(600);
    let refused = Seen::default();
    struct Refused(Seen);
    impl RunSink for Refused {
        fn step(&mut self, _: Step<'_>) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
        fn done(self: Box<Self>, outcome: Result<Option<Outcome>, agora_runtime::ExecError>) {
            assert!(outcome.is_err());
            self.0.lock().unwrap().1 = Some(None);
        }
    }
    batch.admit(&Request { prompt: &long, ..reqs[0] }, Box::new(Refused(refused.clone())));
    assert!(batch.is_empty() && refused.lock().unwrap().1.is_some());
}
