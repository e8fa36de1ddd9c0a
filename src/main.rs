fn main() -> std::process::ExitCode {
    bitgrok::cli::main()
}
