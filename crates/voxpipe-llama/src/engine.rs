//! The generation thread: one per call, owning a llama.cpp context (its KV cache) for the
//! call's lifetime. Requests come in over a channel; text comes back over a bounded channel,
//! piece by piece. Nothing here runs on the async runtime.

use crate::model::{LocalModel, backend};
use crate::prompt::ChatMessage;
use crate::text::{Scan, Scanner, Utf8Stream};
use crate::{Error, LocalLlmConfig};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

/// Text pieces the generation thread may run ahead of the stage: small, so a stage that
/// stops reading stops generation within a couple of tokens even before the flag is seen.
pub(crate) const PIECE_CAPACITY: usize = 2;

/// Largest batch of prompt tokens evaluated at once.
const MAX_BATCH: u32 = 512;

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The model's end-of-turn token.
    EndOfTurn,
    /// A configured stop string.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// A complete tool call was generated.
    ToolCall,
    /// The stop flag was raised or the reader went away.
    Cancelled,
}

/// The end of one generation.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub finish: Finish,
    /// The `<tool_call>` body, when `finish` is `ToolCall`.
    pub tool_call: Option<String>,
    /// Tokens of the whole prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries were reused from the previous turn.
    pub reused_tokens: usize,
    /// Tokens sampled (including an end-of-turn token).
    pub generated_tokens: usize,
}

/// What the generation thread sends back.
#[derive(Debug)]
pub(crate) enum GenEvent {
    /// Speakable text.
    Text(String),
    /// Generation ended; always the last event of a request unless it failed.
    Done(Outcome),
    /// The request failed; the session was reset.
    Failed(Error),
}

/// One generation request.
#[derive(Debug)]
pub(crate) struct Request {
    pub messages: Vec<ChatMessage>,
    /// Watch for `<tool_call>` in the output.
    pub tools: bool,
    /// Raised by the stage to stop; checked before every token decode.
    pub stop: Arc<AtomicBool>,
    pub events: mpsc::Sender<GenEvent>,
}

/// Handle to a call's generation thread; dropping it ends the thread after the current
/// request.
#[derive(Debug)]
pub(crate) struct Worker {
    jobs: std::sync::mpsc::SyncSender<Request>,
}

impl Worker {
    /// Starts the thread and waits until its context is ready. Blocking.
    pub fn start(model: LocalModel, config: &LocalLlmConfig) -> Result<Self, Error> {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Request>(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let config = config.clone();
        std::thread::Builder::new()
            .name("llama".into())
            .spawn(move || thread_main(&model, &config, &ready_tx, &rx))
            .map_err(|e| Error::Backend { message: format!("cannot spawn the llama thread: {e}") })?;
        ready_rx.recv().map_err(|_| Error::WorkerGone)??;
        Ok(Self { jobs })
    }

    /// Queues a request. The thread runs one at a time; the stage waits for `Done` before
    /// sending the next.
    pub fn submit(&self, request: Request) -> Result<(), Error> {
        self.jobs.try_send(request).map_err(|_| Error::WorkerGone)
    }
}

fn thread_main(
    model: &LocalModel,
    config: &LocalLlmConfig,
    ready: &std::sync::mpsc::SyncSender<Result<(), Error>>,
    jobs: &std::sync::mpsc::Receiver<Request>,
) {
    let mut session = match Session::new(&model.model, config) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(request) = jobs.recv() {
        let events = request.events.clone();
        let event = match session.generate(&request) {
            Ok(outcome) => GenEvent::Done(outcome),
            Err(e) => {
                session.reset();
                GenEvent::Failed(e)
            }
        };
        let _ = events.blocking_send(event);
    }
    debug!("llama thread finished");
}

/// A context and what its KV cache holds.
struct Session<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    /// The tokens whose KV entries are in the cache, in position order.
    cached: Vec<LlamaToken>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    config: LocalLlmConfig,
}

impl<'m> Session<'m> {
    fn new(model: &'m LlamaModel, config: &LocalLlmConfig) -> Result<Self, Error> {
        let n_batch = config.context_tokens.min(MAX_BATCH);
        let threads = i32::try_from(config.threads).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.context_tokens))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
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
    fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    fn generate(&mut self, req: &Request) -> Result<Outcome, Error> {
        let tokens = self.prompt_tokens(&req.messages)?;
        let mut outcome = Outcome {
            finish: Finish::Cancelled,
            tool_call: None,
            prompt_tokens: tokens.len(),
            reused_tokens: 0,
            generated_tokens: 0,
        };
        match self.prefill(&tokens, &req.stop)? {
            Some(reused) => outcome.reused_tokens = reused,
            None => return Ok(outcome),
        }
        let (finish, tool_call, generated) = self.sample_loop(req)?;
        outcome.finish = finish;
        outcome.tool_call = tool_call;
        outcome.generated_tokens = generated;
        debug!(?finish, prompt = tokens.len(), reused = outcome.reused_tokens, generated, "generation done");
        Ok(outcome)
    }

    /// Samples up to `max_tokens` tokens, sending speakable text as it forms. Returns why it
    /// ended, a tool call body, and the number of tokens sampled.
    fn sample_loop(&mut self, req: &Request) -> Result<(Finish, Option<String>, usize), Error> {
        let model: &'m LlamaModel = self.model;
        let vocab = model.vocab();
        let n_ctx = self.ctx.n_ctx() as usize;
        let mut sampler = self.sampler();
        let mut utf8 = Utf8Stream::default();
        let mut scanner = Scanner::new(&self.config.stop, req.tools);
        let mut logits_at = self.batch.n_tokens() - 1;
        let mut generated = 0;
        let mut out = String::new();
        let finish = loop {
            if req.stop.load(Ordering::Acquire) {
                break Finish::Cancelled;
            }
            if generated >= self.config.max_tokens as usize || self.cached.len() >= n_ctx {
                break Finish::Length;
            }
            let token = sampler.sample(&self.ctx, logits_at);
            generated += 1;
            if vocab.is_eog(token) {
                break Finish::EndOfTurn;
            }
            let text = utf8.push(&vocab.token_to_piece(token, false, None));
            trace!(token = token.0, text = %text, "token");
            let scan = scanner.push(&text, &mut out);
            if !out.is_empty() && req.events.blocking_send(GenEvent::Text(std::mem::take(&mut out))).is_err()
            {
                break Finish::Cancelled;
            }
            match scan {
                Scan::More => {}
                Scan::Stop => break Finish::Stop,
                Scan::ToolCall(body) => return Ok((Finish::ToolCall, Some(body), generated)),
            }
            // The interruption check right before each decode: a raised flag costs at most the
            // decode already running.
            if req.stop.load(Ordering::Acquire) {
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
                let _ = req.events.blocking_send(GenEvent::Text(out));
            }
        }
        match tool_call {
            Some(body) => Ok((Finish::ToolCall, Some(body), generated)),
            None => Ok((finish, None, generated)),
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
            let prompt = self.render(&kept)?;
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

    fn render(&self, messages: &[&ChatMessage]) -> Result<String, Error> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.to_string(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Template { message: e.to_string() })?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| Error::Template { message: e.to_string() })
    }

    /// Makes the KV cache hold `tokens`: keeps the common prefix with what it holds and
    /// evaluates the rest. Returns the number of tokens reused, or `None` when stopped.
    fn prefill(&mut self, tokens: &[LlamaToken], stop: &AtomicBool) -> Result<Option<usize>, Error> {
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
            if stop.load(Ordering::Acquire) {
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
