//! The `rivulet` binary: `rivulet serve` runs a node; the other subcommands are Kafka clients.

/// The node serves allocations from untrusted sizes through the guarded allocator (see
/// `rivulet_broker::alloc`).
#[global_allocator]
static GLOBAL: rivulet_broker::alloc::GuardedAlloc = rivulet_broker::alloc::GuardedAlloc;

fn main() -> std::process::ExitCode {
    rivulet_broker::cli::main()
}
