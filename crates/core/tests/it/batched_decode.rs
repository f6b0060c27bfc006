//! Continuous batching: one decode step for several sequences at different positions, each
//! with its own cache (`CausalLm::forward_step_many`), against the same sequences run one at a
//! time; and generations stepped together (`sample::step_together`, what `muse serve` does
//! with concurrent requests) against each generated alone.

use candle_core::{Device, Tensor};
use muse_core::models::CausalLm;
use muse_core::nn::KvCache;
use muse_core::sample::open::open_text_model_with;
use muse_core::sample::{
    GenerateOptions, Generation, Sampler, SamplingParams, TextModel, generate, step_together,
};

use crate::common::{fixture, scaled_err};

fn tiny_llama(kind: &str) -> TextModel {
    let path = fixture(&format!("gguf/tiny_llama_{kind}.gguf"));
    open_text_model_with(&path, None, &Device::Cpu).unwrap()
}

/// Prompts of different lengths, so that the sequences sit at different positions.
fn prompts(n: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|s| {
            (0..3 + 2 * (s % 8))
                .map(|i| ((7 * i + 13 * s + 1) % vocab) as u32)
                .collect()
        })
        .collect()
}

/// Prefills each prompt in its own cache; returns the caches.
fn prefilled(model: &dyn CausalLm, prompts: &[Vec<u32>]) -> Vec<KvCache> {
    prompts
        .iter()
        .map(|p| {
            let mut cache = model.new_cache(1).unwrap();
            let ids = Tensor::new(p.as_slice(), model.device())
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            model.forward_cached(&ids, &mut cache).unwrap();
            cache
        })
        .collect()
}

/// `n` sequences, four decode steps: batched against one at a time, within `tol`.
fn check_step_many(kind: &str, n: usize, tol: f32) {
    let tm = tiny_llama(kind);
    let model = tm.model.as_ref();
    let prompts = prompts(n, model.vocab_size());
    let mut together = prefilled(model, &prompts);
    let mut apart = prefilled(model, &prompts);
    for step in 0..4u32 {
        let ids: Vec<u32> = (0..n as u32)
            .map(|s| (5 + 3 * s + 11 * step) % 50)
            .collect();
        let mut refs: Vec<&mut KvCache> = together.iter_mut().collect();
        let batched = model.forward_step_many(&ids, &mut refs).unwrap();
        assert_eq!(batched.dims(), &[n, model.vocab_size()]);
        for (s, cache) in apart.iter_mut().enumerate() {
            let one = Tensor::new(&[[ids[s]]], &Device::Cpu).unwrap();
            let alone = model
                .forward_cached(&one, cache)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let row = batched.get(s).unwrap();
            let e = scaled_err(&row, &alone);
            assert!(
                e < tol,
                "{kind}, {n} sequences, step {step}, sequence {s}: off by {e}"
            );
            assert_eq!(together[s].len(), cache.len(), "cache length");
        }
    }
}

#[test]
fn a_batched_decode_step_equals_each_sequence_alone() {
    // Below the quantised matmul's panel threshold (32 rows) every row takes the same dot products as
    // alone, so the results are the same up to rounding.
    for kind in ["f32", "q8_0", "q4_1"] {
        check_step_many(kind, 3, 1e-5);
    }
    // From 32 rows the quantised matmul takes the f32 panel path, while one row alone takes
    // the dots with activations quantised to 8 bits: the difference is that rounding, carried through the layers (the
    // order of `gguf_q4_1_matches_transformers`' 3e-2 between the file and f32 weights).
    check_step_many("f32", 33, 1e-5);
    check_step_many("q4_1", 33, 5e-2);
}

#[test]
fn a_step_needs_one_token_per_cache() {
    let tm = tiny_llama("q8_0");
    let model = tm.model.as_ref();
    let mut caches = prefilled(model, &prompts(2, model.vocab_size()));
    let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
    let err = model
        .forward_step_many(&[1], &mut refs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 tokens for 2 caches"), "{err}");
}

/// Generations stepped together produce the tokens and text each produces alone: greedy and
/// seeded sampling, different prompt lengths and token limits, one stopping early at a stop
/// string while the others go on.
#[test]
fn generations_stepped_together_equal_each_alone() {
    for kind in ["f32", "q4_1"] {
        let tm = tiny_llama(kind);
        let model = tm.model.as_ref();
        let prompts = prompts(4, model.vocab_size());
        let setups: Vec<(GenerateOptions, SamplingParams, u64)> = (0..4)
            .map(|s| {
                let opts = GenerateOptions {
                    max_tokens: 6 + 3 * s,
                    candidates: if s == 1 { 3 } else { 0 },
                    ..Default::default()
                };
                let params = SamplingParams {
                    temperature: if s % 2 == 0 { 0.0 } else { 0.9 },
                    ..Default::default()
                };
                (opts, params, 40 + s as u64)
            })
            .collect();
        let alone: Vec<_> = prompts
            .iter()
            .zip(&setups)
            .map(|(p, (opts, params, seed))| {
                let mut sampler = Sampler::new(params.clone(), *seed);
                generate(model, &tm.tokenizer, p, opts, &mut sampler, &mut |_| Ok(())).unwrap()
            })
            .collect();
        // The third stops at whatever its own alone-run's third token decodes to.
        let mut setups = setups;
        let stop = tm.tokenizer.decode(&alone[2].ids[2..3]).unwrap();
        if !stop.is_empty() {
            setups[2].0.stop = vec![stop.clone()];
        }
        let stopped_alone = {
            let (opts, params, seed) = &setups[2];
            let mut sampler = Sampler::new(params.clone(), *seed);
            generate(
                model,
                &tm.tokenizer,
                &prompts[2],
                opts,
                &mut sampler,
                &mut |_| Ok(()),
            )
            .unwrap()
        };
        let mut gens: Vec<Generation> = prompts
            .iter()
            .zip(&setups)
            .map(|(p, (opts, params, seed))| {
                let sampler = Sampler::new(params.clone(), *seed);
                Generation::new(model, &tm.tokenizer, p, opts.clone(), sampler).unwrap()
            })
            .collect();
        let mut streamed = vec![String::new(); gens.len()];
        while gens.iter().any(|g| !g.is_finished()) {
            let mut refs: Vec<&mut Generation> = gens.iter_mut().collect();
            let outcomes = step_together(model, &mut refs, &mut |i, ev| {
                streamed[i].push_str(ev.text);
                Ok(())
            })
            .unwrap();
            assert!(outcomes.iter().all(|o| o.is_ok()));
        }
        let together: Vec<_> = gens.into_iter().map(|g| g.finish()).collect();
        for (s, (t, a)) in together.iter().zip(&alone).enumerate() {
            let a = if s == 2 { &stopped_alone } else { a };
            assert_eq!(t.ids, a.ids, "{kind}, generation {s}: ids");
            assert_eq!(t.text, a.text, "{kind}, generation {s}: text");
            assert_eq!(t.reason, a.reason, "{kind}, generation {s}: stop reason");
            assert_eq!(streamed[s], t.text, "{kind}, generation {s}: streamed text");
        }
    }
}

/// Prompts prefilled from the cache of the prompt before them where they start the same way
/// (copied, not computed) give the probabilities and greedy tokens of each prompt computed
/// whole, three prompts in turn.
#[test]
fn a_shared_prompt_start_is_copied_not_computed_and_changes_nothing() {
    use muse_core::sample::PrefixCache;

    for kind in ["f32", "q4_1"] {
        let tm = tiny_llama(kind);
        let model = tm.model.as_ref();
        let vocab = model.vocab_size() as u32;
        let system: Vec<u32> = (0..12).map(|i| (5 * i + 3) % vocab).collect();
        let ask = |tail: &[u32]| [system.as_slice(), tail].concat();
        let opts = GenerateOptions {
            max_tokens: 8,
            candidates: 2,
            ..Default::default()
        };
        let greedy = || {
            let params = SamplingParams {
                temperature: 0.0,
                ..Default::default()
            };
            Sampler::new(params, 0)
        };
        let whole = |prompt: &[u32]| {
            let mut sampler = greedy();
            let mut probs = Vec::new();
            let out = generate(
                model,
                &tm.tokenizer,
                prompt,
                &opts,
                &mut sampler,
                &mut |ev| {
                    probs.push(ev.prob.unwrap());
                    Ok(())
                },
            )
            .unwrap();
            (out.ids, probs)
        };
        let prefixes = PrefixCache::default();
        let run_with_prefixes = |prompt: &[u32]| {
            let mut g =
                Generation::new(model, &tm.tokenizer, prompt, opts.clone(), greedy()).unwrap();
            g.prefill(&prefixes).unwrap();
            let mut probs = Vec::new();
            while !g.is_finished() {
                let mut refs = [&mut g];
                step_together(model, &mut refs, &mut |_, ev| {
                    probs.push(ev.prob.unwrap());
                    Ok(())
                })
                .unwrap();
            }
            (g.finish().ids, probs)
        };
        for (turn, tail) in [vec![40u32, 41, 42], vec![7, 8], vec![40, 41, 9, 10]]
            .iter()
            .enumerate()
        {
            let prompt = ask(tail);
            let (ids, probs) = run_with_prefixes(&prompt);
            let (want_ids, want_probs) = whole(&prompt);
            assert_eq!(ids, want_ids, "{kind}, prompt {turn}: greedy tokens");
            for (p, q) in probs.iter().zip(&want_probs) {
                assert!((p - q).abs() < 1e-4, "{kind}, prompt {turn}: {p} vs {q}");
            }
        }
        // The second and third prompts each shared the 12 tokens of the first's start (the
        // third also shares "40 41" with the first, but the second came between).
        assert_eq!(prefixes.reused_tokens(), 24, "{kind}");
    }
}
