//! The program benchmark runner: every workload under every allocator's binary (found next to
//! this executable), interleaved, with whole-process times and peak RSS. Run it through
//! `cargo xtask bench-programs`, which builds the binaries in release first.

use std::process::ExitCode;

use veridian_benches::runner::{self, Parsed};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match runner::parse(&args) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            println!("{}", runner::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("bench-programs: {message}\n{}", runner::USAGE);
            return ExitCode::from(2);
        }
    };
    let dir = match std::env::current_exe() {
        Ok(exe) => exe.parent().map(|d| d.to_path_buf()).unwrap_or_default(),
        Err(e) => {
            eprintln!("bench-programs: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let results = match runner::run_all(&dir, &options) {
        Ok(results) => results,
        Err(message) => {
            eprintln!("bench-programs: {message}");
            return ExitCode::FAILURE;
        }
    };
    if options.save {
        let mut command = format!("cargo xtask bench-programs --runs {}", options.runs);
        if options.workloads.len() < veridian_benches::workloads::WORKLOADS.len() {
            command.push_str(&format!(" --workload {}", options.workloads.join(",")));
        }
        command.push_str(" --save");
        let tables = runner::markdown_report(&results, &command, &runner::machine());
        // The workspace root is the parent of this package's directory.
        let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = manifest_dir
            .parent()
            .unwrap_or(manifest_dir)
            .join("docs/benchmarks/programs.md");
        let document = std::fs::read_to_string(&path).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, runner::replace_section(&document, &tables)) {
            eprintln!("bench-programs: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("\nwrote {}", path.display());
    }
    ExitCode::SUCCESS
}
