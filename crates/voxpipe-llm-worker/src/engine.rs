//! The generation engine: a llama.cpp context (its KV cache) kept across requests, prompt
//! rendering with the model's chat template, KV prefix reuse, sampling, and a stop flag checked
//! before every token decode. Blocking code; the worker runs it on its main thread.

use crate::Error;
use crate::model::{LocalModel, backend};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, trace, warn};
use voxpipe_llm_local::protocol::{ChatMessage, Finish, Settings};
use voxpipe_llm_local::text::{Scan, Scanner, Utf8Stream};

/// Largest batch of prompt tokens evaluated at once.
const MAX_BATCH: u32 = 512;

/// Stops a generation: raised from another thread, checked before every token decode.
#[derive(Debug, Default)]
pub struct StopFlag {
    raised: AtomicBool,
    tokens: AtomicU64,
    cancelled_at: AtomicU64,
}

impl StopFlag {
    /// A lowered flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag, noting how many tokens had been sampled by then.
    pub fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.cancelled_at.store(self.tokens.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// Whether it was raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Tokens sampled when the flag was raised, if it was.
    pub fn cancelled_at(&self) -> Option<u64> {
        self.is_raised().then(|| self.cancelled_at.load(Ordering::Acquire))
    }

    fn sampled(&self, n: usize) {
        self.tokens.store(n as u64, Ordering::Release);
    }
}

/// The end of one generation.
#[derive(Debug)]
pub struct Outcome {
    /// Why it ended.
    pub finish: Finish,
    /// The `<tool_call>` body, when `finish` is `ToolCall`.
    pub tool_call: Option<String>,
    /// Tokens of the whole prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries were reused from the previous request.
    pub reused_tokens: usize,
    /// Tokens sampled (including an end-of-turn token).
    pub generated_tokens: usize,
    /// Time from the start of the request to the first sampled token.
    pub first_token: Option<Duration>,
}

/// A context and what its KV cache holds: one conversation.
pub struct Session<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    /// The tokens whose KV entries are in the cache, in position order.
    cached: Vec<LlamaToken>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    config: Settings,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("cached", &self.cached.len()).field("config", &self.config).finish()
    }
}

impl<'m> Session<'m> {
    /// A context for `model` with `config`'s size, threads and sampling.
    ///
    /// # Errors
    /// [`Error::Context`] (usually lack of memory), [`Error::Backend`].
    pub fn new(model: &'m LocalModel, config: &Settings) -> Result<Self, Error> {
        let model: &'m LlamaModel = &model.model;
        let n_batch = config.context_tokens.min(MAX_BATCH);
        let threads = i32::try_from(config.threads).unwrap_or(i32::MAX);
        let batch_threads = i32::try_from(config.batch_threads.unwrap_or(config.threads)).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.context_tokens))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(threads)
            .with_n_threads_batch(batch_threads);
        let ctx = model
            .new_context(backend()?, params)
            .map_err(|e| Error::Context { context_tokens: config.context_tokens, message: e.to_string() })?;
        let template = model.chat_template(None).unwrap_or_else(|e| {
            warn!(error = %e, "the model has no chat template: using ChatML");
            LlamaChatTemplate::new("chatml").expect("no NUL byte")
        });
        Ok(Self {
            model,
            ctx,
            template,
            cached: Vec::new(),
            batch: LlamaBatch::new(n_batch as usize, 1),
            n_batch: n_batch as usize,
            config: config.clone(),
        })
    }

    /// Forgets the KV cache (after an error left it in an unknown state).
    pub fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    /// Evaluates `messages` without the reply prompt into the KV cache (a warm-up: the next
    /// request that starts with them reuses their entries). Returns the prompt's token count
    /// and the tokens reused, or `None` when stopped part-way (what was evaluated stays).
    ///
    /// # Errors
    /// [`Error::Template`], [`Error::PromptTooLong`], [`Error::Decode`].
    pub fn prefill_only(
        &mut self,
        messages: &[ChatMessage],
        stop: &StopFlag,
    ) -> Result<Option<(usize, usize)>, Error> {
        let refs: Vec<&ChatMessage> = messages.iter().collect();
        let prompt = self.render(&refs, false)?;
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, true);
        let budget = (self.config.context_tokens - self.config.max_tokens) as usize;
        if tokens.len() > budget {
            return Err(Error::PromptTooLong { tokens: tokens.len(), budget });
        }
        Ok(self.prefill(&tokens, stop)?.map(|reused| (tokens.len(), reused)))
    }

    /// Generates a reply to `messages`; `emit` gets each piece of speakable text with the
    /// number of tokens sampled so far, and returns false to stop. On error, call
    /// [`Session::reset`] before the next request.
    ///
    /// # Errors
    /// [`Error::Template`], [`Error::PromptTooLong`], [`Error::Decode`].
    pub fn generate(
        &mut self,
        messages: &[ChatMessage],
        tools: bool,
        stop: &StopFlag,
        emit: &mut dyn FnMut(&str, u64) -> bool,
    ) -> Result<Outcome, Error> {
        let started = Instant::now();
        let tokens = self.prompt_tokens(messages)?;
        let mut outcome = Outcome {
            finish: Finish::Cancelled,
            tool_call: None,
            prompt_tokens: tokens.len(),
            reused_tokens: 0,
            generated_tokens: 0,
            first_token: None,
        };
        match self.prefill(&tokens, stop)? {
            Some(reused) => outcome.reused_tokens = reused,
            None => return Ok(outcome),
        }
        let req = Req { tools, stop, started };
        let (finish, tool_call, generated, first) = self.sample_loop(&req, emit)?;
        outcome.first_token = first;
        outcome.finish = finish;
        outcome.tool_call = tool_call;
        outcome.generated_tokens = generated;
        debug!(?finish, prompt = tokens.len(), reused = outcome.reused_tokens, generated, "generation done");
        Ok(outcome)
    }

    /// Samples up to `max_tokens` tokens, sending speakable text as it forms. Returns why it
    /// ended, a tool call body, the number of tokens sampled and when the first was.
    fn sample_loop(
        &mut self,
        req: &Req<'_>,
        emit: &mut dyn FnMut(&str, u64) -> bool,
    ) -> Result<Sampled, Error> {
        let model: &'m LlamaModel = self.model;
        let vocab = model.vocab();
        let n_ctx = self.ctx.n_ctx() as usize;
        let mut sampler = self.sampler();
        let mut utf8 = Utf8Stream::default();
        let mut scanner = Scanner::new(&self.config.stop, req.tools);
        let mut logits_at = self.batch.n_tokens() - 1;
        let mut generated = 0;
        let mut out = String::new();
        let mut first = None;
        let finish = loop {
            if req.stop.is_raised() {
                break Finish::Cancelled;
            }
            if generated >= self.config.max_tokens as usize || self.cached.len() >= n_ctx {
                break Finish::Length;
            }
            let token = sampler.sample(&self.ctx, logits_at);
            generated += 1;
            req.stop.sampled(generated);
            first.get_or_insert_with(|| req.started.elapsed());
            if vocab.is_eog(token) {
                break Finish::EndOfTurn;
            }
            let text = utf8.push(&vocab.token_to_piece(token, false, None));
            trace!(token = token.0, text = %text, "token");
            let scan = scanner.push(&text, &mut out);
            if !out.is_empty() && !emit(&std::mem::take(&mut out), generated as u64) {
                break Finish::Cancelled;
            }
            match scan {
                Scan::More => {}
                Scan::Stop => break Finish::Stop,
                Scan::ToolCall(body) => return Ok((Finish::ToolCall, Some(body), generated, first)),
            }
            // The interruption check right before each decode: a raised flag costs at most the
            // decode already running.
            if req.stop.is_raised() {
                break Finish::Cancelled;
            }
            self.batch.clear();
            self.batch.add(token, self.cached.len() as i32, &[0], true).map_err(decode_err)?;
            self.ctx.decode(&mut self.batch).map_err(decode_err)?;
            self.cached.push(token);
            logits_at = 0;
        };
        let mut tool_call = None;
        if matches!(finish, Finish::EndOfTurn | Finish::Length) {
            let tail = utf8.finish();
            scanner.push(&tail, &mut out);
            tool_call = scanner.finish(&mut out);
            if !out.is_empty() {
                emit(&out, generated as u64);
            }
        }
        match tool_call {
            Some(body) => Ok((Finish::ToolCall, Some(body), generated, first)),
            None => Ok((finish, None, generated, first)),
        }
    }

    fn sampler(&self) -> LlamaSampler {
        let c = &self.config;
        if c.temperature <= 0.0 {
            return LlamaSampler::greedy();
        }
        LlamaSampler::chain_simple([
            LlamaSampler::top_p(c.top_p, 1),
            LlamaSampler::temp(c.temperature),
            LlamaSampler::dist(c.seed),
        ])
    }

    /// Renders and tokenises the conversation, dropping the oldest turns (never the system
    /// message or the last message) until prompt and reply fit the context.
    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<LlamaToken>, Error> {
        let budget = (self.config.context_tokens - self.config.max_tokens) as usize;
        let first = usize::from(messages.first().is_some_and(|m| m.role == "system"));
        let mut skip = 0;
        loop {
            let kept: Vec<&ChatMessage> = messages[..first].iter().chain(&messages[first + skip..]).collect();
            let prompt = self.render(&kept, true)?;
            let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, true);
            if tokens.len() <= budget {
                if skip > 0 {
                    warn!(dropped = skip, "conversation outgrew the context: oldest messages dropped");
                }
                return Ok(tokens);
            }
            // Drop the oldest message, and keep dropping until the history starts at a user turn.
            skip += 1;
            while first + skip < messages.len() - 1 && messages[first + skip].role != "user" {
                skip += 1;
            }
            if first + skip >= messages.len() {
                return Err(Error::PromptTooLong { tokens: tokens.len(), budget });
            }
        }
    }

    /// The chat template applied to `messages`, ending with the assistant's reply prompt when
    /// `reply` is true.
    fn render(&self, messages: &[&ChatMessage], reply: bool) -> Result<String, Error> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.to_string(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Template { message: e.to_string() })?;
        self.model
            .apply_chat_template(&self.template, &chat, reply)
            .map_err(|e| Error::Template { message: e.to_string() })
    }

    /// Makes the KV cache hold `tokens`: keeps the common prefix with what it holds and
    /// evaluates the rest. Returns the number of tokens reused, or `None` when stopped.
    fn prefill(&mut self, tokens: &[LlamaToken], stop: &StopFlag) -> Result<Option<usize>, Error> {
        let mut common = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        // The last prompt token is always evaluated again: its logits start the reply.
        common = common.min(tokens.len().saturating_sub(1));
        if common < self.cached.len() {
            let removed = self.ctx.kv_cache_seq_rm(0, Some(common as u32), None);
            if removed.is_err() {
                self.ctx.clear_kv_cache();
                common = 0;
            }
            self.cached.truncate(common);
        }
        for chunk in tokens[common..].chunks(self.n_batch) {
            if stop.is_raised() {
                return Ok(None);
            }
            self.batch.clear();
            let last = self.cached.len() + chunk.len() == tokens.len();
            for (i, &t) in chunk.iter().enumerate() {
                let pos = (self.cached.len() + i) as i32;
                self.batch.add(t, pos, &[0], last && i == chunk.len() - 1).map_err(decode_err)?;
            }
            self.ctx.decode(&mut self.batch).map_err(decode_err)?;
            self.cached.extend_from_slice(chunk);
        }
        Ok(Some(common))
    }
}

fn decode_err(e: impl std::fmt::Display) -> Error {
    Error::Decode { message: e.to_string() }
}

/// What `sample_loop` returns: finish, tool call body, tokens sampled, time to first token.
type Sampled = (Finish, Option<String>, usize, Option<Duration>);

/// The per-request inputs of `sample_loop`.
struct Req<'a> {
    tools: bool,
    stop: &'a StopFlag,
    started: Instant,
}
