//! Sets the `gaio_kqueue` cfg on the targets that have kqueue: the one
//! list of them in the source. Code says `#[cfg(gaio_kqueue)]`, never the
//! list itself. gaio's build script is a symbolic link to this file.
//!
//! Cargo.toml `[target.'cfg(...)'.dependencies]` tables cannot see a build
//! script's cfgs, so gaio/Cargo.toml and gaio-kqueue/Cargo.toml write the
//! same targets out again: change all three together.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(gaio_kqueue)");
    println!("cargo::rerun-if-changed=build.rs");
    // The target's, not the host's: Cargo sets these for build scripts.
    let var = |name| std::env::var(name).unwrap_or_default();
    let os = var("CARGO_CFG_TARGET_OS");
    let kqueue = matches!(os.as_str(), "freebsd" | "dragonfly" | "netbsd" | "openbsd")
        || var("CARGO_CFG_TARGET_VENDOR") == "apple";
    if kqueue {
        println!("cargo::rustc-cfg=gaio_kqueue");
    }
}
