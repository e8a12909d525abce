//! `vireo [--config PATH] [--check] [--version]`

use std::path::PathBuf;
use std::process::ExitCode;
use vireo::{Config, Server};

const USAGE: &str = "usage: vireo [--config PATH] [--check] [--version]

  -c, --config PATH  configuration file (default: config/vireo.toml if it exists,
                     else built-in defaults serving ./public on 127.0.0.1:8080)
      --check        validate the configuration and exit (0 = valid, 1 = invalid)
  -V, --version      print the version and exit
  -h, --help         print this help";

fn main() -> ExitCode {
    let mut config_path: Option<PathBuf> = None;
    let mut check = false;
    let mut parser = lexopt::Parser::from_env();
    loop {
        use lexopt::prelude::*;
        match parser.next() {
            Ok(None) => break,
            Ok(Some(Short('c') | Long("config"))) => match parser.value() {
                Ok(v) => config_path = Some(v.into()),
                Err(e) => return usage_error(&e.to_string()),
            },
            Ok(Some(Long("check"))) => check = true,
            Ok(Some(Short('V') | Long("version"))) => {
                println!("vireo {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Ok(Some(Short('h') | Long("help"))) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Ok(Some(arg)) => return usage_error(&arg.unexpected().to_string()),
            Err(e) => return usage_error(&e.to_string()),
        }
    }

    let default = PathBuf::from(vireo::config::DEFAULT_PATH);
    let loaded = match config_path {
        Some(p) => Config::load(&p),
        None if default.exists() => Config::load(&default),
        None => Config::defaults(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vireo: {e}");
            return ExitCode::from(1);
        }
    };
    // The error log: `[log] level`, unless RUST_LOG says otherwise.
    env_logger::Builder::new()
        .filter_level(config.log.level)
        .parse_env("RUST_LOG")
        .init();
    if check {
        for w in config.warnings() {
            eprintln!("vireo: warning: {w}");
        }
        // Certificates and keys: read and checked as start and reload would.
        match vireo::tls::Tls::new(&config) {
            Ok(tls) => {
                for w in tls.iter().flat_map(|t| t.warnings()) {
                    eprintln!("vireo: warning: {w}");
                }
            }
            Err(e) => {
                eprintln!("vireo: {e}");
                return ExitCode::from(1);
            }
        }
        let name = config
            .source
            .as_ref()
            .map_or("built-in defaults".to_string(), |p| p.display().to_string());
        println!("vireo: {name}: configuration OK");
        return ExitCode::SUCCESS;
    }
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vireo: {e}");
            return ExitCode::from(1);
        }
    };
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vireo: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("vireo: {msg}\n{USAGE}");
    ExitCode::from(2)
}
