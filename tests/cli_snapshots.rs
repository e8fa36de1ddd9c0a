//! What users read, pinned as snapshots (`tests/snapshots/`): every command's help,
//! `plan` of the smoke sweep, `check` of a bad file and `diff` of two small tables.
//! A change to any of them shows as a snapshot diff to review (`cargo insta review`,
//! or `INSTA_UPDATE=always cargo test --test cli_snapshots` and read `git diff`).

use assert_cmd::Command;
use clap::CommandFactory;
use predicates::prelude::*;

fn bitgrok() -> Command {
    Command::cargo_bin("bitgrok").expect("the bitgrok binary")
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).expect("UTF-8 output")
}

#[test]
fn every_command_has_a_pinned_help_text() {
    let top = stdout_of(bitgrok().arg("--help"));
    insta::assert_snapshot!("help", top);
    let cli = bitgrok::cli::Cli::command();
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(names.len() >= 13, "{names:?}");
    for name in names {
        let help = stdout_of(bitgrok().args([name.as_str(), "--help"]));
        insta::assert_snapshot!(format!("help_{name}"), help);
    }
}

#[test]
fn plan_of_the_smoke_sweep_on_an_empty_store() {
    let store = tempfile::tempdir().unwrap();
    let out = stdout_of(
        bitgrok()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["plan", "sweeps/smoke.toml", "--artifacts"])
            .arg(store.path()),
    );
    // The memory line names what this machine has available: kept up to that.
    let out: Vec<String> = out
        .lines()
        .map(|l| match l.find(" (") {
            Some(at) if l.starts_with("memory:") => l[..at].to_string(),
            _ => l.to_string(),
        })
        .collect();
    insta::assert_snapshot!("plan_smoke", out.join("\n"));
}

#[test]
fn check_names_every_problem_of_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"bad\"\nmodulus = 2\n\n[grid]\nprecision = [\"fp32\", \"fp16\"]\n\n[train]\nstepz = 10\nlr = -1\n",
    )
    .unwrap();
    let out = bitgrok()
        .current_dir(dir.path())
        .args(["check", "bad.toml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("bad.toml:"))
        .get_output()
        .stderr
        .clone();
    insta::assert_snapshot!("check_bad", String::from_utf8(out).unwrap());
}

#[test]
fn diff_prints_one_line_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
    write(
        "a.csv",
        "precision,seed,key,final_test_acc,label\nfp32,0,k0,1.0000,clock\nfp32,1,k1,0.9000,not-generalised\nbinary,0,k2,1.0000,pizza\n",
    );
    write(
        "b.csv",
        "precision,seed,key,final_test_acc,label\nfp32,0,k0,1.0000,pizza\nfp32,1,k1,0.9950,mixed\nternary,0,k3,1.0000,pizza\n",
    );
    let out = bitgrok()
        .current_dir(dir.path())
        .args(["diff", "a.csv", "b.csv"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    insta::assert_snapshot!("diff_small", String::from_utf8(out).unwrap());
}
