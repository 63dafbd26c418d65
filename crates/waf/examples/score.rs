//! Development aid: scores a corpus file with the default configuration.
//! `cargo run -p ecocityhub-waf --release --example score -- FILE [all|development|held-out] [--misses]`
use ecocityhub_waf::corpus::{replay, Split};
use ecocityhub_waf::{Waf, WafConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let split = match args.get(2).map(String::as_str) {
        Some("development") => Split::Development,
        Some("held-out") => Split::HeldOut,
        _ => Split::All,
    };
    let waf = Waf::new(WafConfig::default()).expect("default rules compile");
    let file = std::fs::File::open(&args[1]).expect("corpus file");
    let (report, outcomes) =
        replay(&waf, std::io::BufReader::new(file), split).expect("corpus parses");
    println!("{}", report.table());
    println!(
        "attacks blocked by rule: {:?}",
        report.attacks_blocked_by_rule
    );
    println!(
        "benign blocked by rule: {:?}",
        report.benign_blocked_by_rule
    );
    if args.iter().any(|a| a == "--misses") {
        for o in outcomes.iter().filter(|o| o.attack != o.blocked) {
            println!(
                "{} {} {:?}",
                if o.attack { "MISS" } else { "FP" },
                o.id,
                o.rule
            );
        }
    }
}
