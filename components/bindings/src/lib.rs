//! Bindings without heavy native dependencies: `bindings.cron` (input), `bindings.http` and
//! `bindings.redis` (output).

pub mod cron_binding;
pub mod http_binding;
pub mod redis_binding;

pub use cron_binding::CronBinding;
pub use http_binding::HttpBinding;
pub use redis_binding::RedisBinding;
