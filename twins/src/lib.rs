//! Nothing but the examples: `tokio_http_server` and `tokio_resp_server`.
