//! Diagnostics: the engine's `trace_event!`, `debug_event!`,
//! `warn_event!` and `error_event!` go to
//! [`tracing`](https://docs.rs/tracing) when the `tracing` feature is on,
//! and cost nothing when it is off (the default): the macros then expand
//! to nothing, so their arguments are not even evaluated. (A variable that
//! only a diagnostic reads is unused without the feature: the functions
//! holding one say `allow(unused_variables)` for that case.)

#[cfg(feature = "tracing")]
macro_rules! trace_event {
    ($($t:tt)*) => { ::tracing::trace!($($t)*) };
}
#[cfg(feature = "tracing")]
macro_rules! debug_event {
    ($($t:tt)*) => { ::tracing::debug!($($t)*) };
}
#[cfg(feature = "tracing")]
macro_rules! warn_event {
    ($($t:tt)*) => { ::tracing::warn!($($t)*) };
}
#[cfg(feature = "tracing")]
macro_rules! error_event {
    ($($t:tt)*) => { ::tracing::error!($($t)*) };
}

#[cfg(not(feature = "tracing"))]
macro_rules! trace_event {
    ($($t:tt)*) => {};
}
#[cfg(not(feature = "tracing"))]
macro_rules! debug_event {
    ($($t:tt)*) => {};
}
#[cfg(not(feature = "tracing"))]
macro_rules! warn_event {
    ($($t:tt)*) => {};
}
#[cfg(not(feature = "tracing"))]
macro_rules! error_event {
    ($($t:tt)*) => {};
}

pub(crate) use {debug_event, error_event, trace_event, warn_event};
