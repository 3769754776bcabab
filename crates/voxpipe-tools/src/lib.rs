//! voxpipe's shared tool runtime. A tool declared once in the pipeline file (or registered
//! from code with [`ToolHandler`]) is offered to whichever model runs the call — the Realtime
//! stage or a cascade LLM — and executed here: with a timeout, with panics and failures turned
//! into error results the model can read, and with results capped in size.
//!
//! ```toml
//! [tools.get_order_status]
//! description = "Look up an order by its number"
//! parameters = { type = "object", properties = { order_id = { type = "string" } }, required = ["order_id"] }
//! handler = { kind = "command", program = "./tools/order-status" }
//! ```

mod config;
mod runtime;

pub use config::{CommandHandlerConfig, HandlerConfig, ToolConfig};
pub use runtime::{ToolHandler, ToolOutput, Tools};
