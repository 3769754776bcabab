//! OpenAI Realtime fake (being written).
