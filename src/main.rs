fn main() -> std::process::ExitCode {
    cloudwarden::cli::main()
}
