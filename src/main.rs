// mimalloc: the rules engine builds up to millions of small findings per evaluation; with the system
// allocator that dominated its time (docs/benchmarks.md, rules engine). The engine benchmark uses it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cloudwarden::memory::limit_malloc_arenas();
    cloudwarden::cli::main()
}
