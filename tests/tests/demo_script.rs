//! The demo script is what most people run first: it must not show them bad habits.

/// Before: the demo started the edge with `--join-token <token>`, visible to every local user in
/// `ps`. The token goes in the edge's environment instead.
#[test]
fn the_demo_never_puts_the_join_token_on_a_command_line() {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo.sh"))
            .expect("read scripts/demo.sh");
    let on_command_line: Vec<&str> = script
        .lines()
        .filter(|line| line.contains("--join-token"))
        .collect();
    assert!(on_command_line.is_empty(), "{on_command_line:?}");
    assert!(script.contains("TOLLGATE_JOIN_TOKEN=\"$join_token\""));
}
