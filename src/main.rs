//! Prattle's command line: parse, build the call, run it, map errors to exit codes.

use clap::Parser;
use prattle::app::App;
use prattle::cli::Options;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,prattle=info,laminar=off,pulseaudio=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = match Options::try_parse() {
        Ok(o) => o,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // one line that names the fix, not clap's usage block
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("bad command line");
            eprintln!("prattle: {}", line.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    if opts.list_devices {
        for line in prattle::app::list_devices() {
            println!("{line}");
        }
        return;
    }
    let result = App::build(&opts).and_then(App::run);
    if let Err(e) = result {
        eprintln!("prattle: {e}");
        std::process::exit(e.exit_code());
    }
}
