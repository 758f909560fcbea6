//! The `rivulet` binary: `rivulet serve` runs a node; the other subcommands are Kafka clients.

fn main() -> std::process::ExitCode {
    rivulet_broker::cli::main()
}
