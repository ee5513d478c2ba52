//! QEMU versions side by side: a profile's `qemu` / `qemu_dest` axes, the
//! versions fetched into the cache, migration across versions on the older one's
//! machine type, and the records that say which QEMU ran on each side.

mod common;

use common::*;
use serde_json::Value;

/// Runs `profile` (TOML text) with `migbench run`: its records, exit code and
/// output, after checking that no QEMU outlived it.
fn run_profile(toml: &str) -> (Vec<Value>, Option<i32>, String) {
    let (tmp, rs, text, code) = run_profile_code(toml);
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty(), "a QEMU outlived the run: {text}");
    (rs, code, text)
}

/// A guest writing memory moves from 10.0 to 7.2 and from 10.0 to 10.0 in one
/// sweep. Across versions both QEMUs run 7.2's versioned machine type, and say so
/// themselves; the guest arrives healthy and intact on 7.2 (10.0 is a sender that
/// does not corrupt); each record names the version of each side.
#[test]
fn a_sweep_migrates_across_qemu_versions_on_the_older_machine_type() {
    platform();
    let _slot = qemu_slot();
    let (rs, code, text) = run_profile(
        "name = \"versions\"\nbefore_s = 0.5\nafter_s = 0.5\n[defaults]\nram_mib = 256\nlink = \"1Gbit\"\n\
         workload = \"memdirty-write:32:20\"\nqemu = \"10.0\"\n[matrix]\nqemu_dest = [\"7.2\", \"10.0\"]\n",
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(rs.len(), 2, "{text}");
    let (cross, same) = (&rs[0], &rs[1]);
    for r in [cross, same] {
        assert_eq!(r["outcome"]["kind"], "completed", "{r}");
        assert_healthy_and_intact(r);
        let e = &r["environment"];
        assert!(e["qemu_version"].as_str().unwrap().starts_with("10.0."), "{e}");
        assert_eq!(r["qemus"]["source_version"], e["qemu_version"], "the source says the version the record names");
        assert_eq!(r["qemus"]["destination_version"], e["qemu_destination_version"]);
    }
    let e = &cross["environment"];
    assert!(e["qemu_destination_version"].as_str().unwrap().starts_with("7.2."), "{e}");
    assert_ne!(e["qemu_path"], e["qemu_destination_path"]);
    assert_eq!(e["machine_type"], "pc-i440fx-7.2");
    assert_eq!(cross["qemus"]["source_machine"], "pc-i440fx-7.2", "{}", cross["qemus"]);
    assert_eq!(cross["qemus"]["destination_machine"], "pc-i440fx-7.2", "{}", cross["qemus"]);
    assert!(cross["run"]["cell"]["qemu_dest"] == "7.2" && same["run"]["cell"]["qemu_dest"] == "10.0");

    let e = &same["environment"];
    assert_eq!(e["qemu_path"], e["qemu_destination_path"]);
    assert!(e["machine_type"].as_str().unwrap().starts_with("pc-i440fx-10."), "{e}");
    assert_eq!(same["qemus"]["destination_machine"], e["machine_type"]);
    // The first guest moved to 7.2: it cannot serve a run that starts on 10.0.
    assert_eq!(same["run"]["reused_guest"], false, "{same}");
    // The summary tells the cells apart by their QEMUs.
    assert!(text.contains("10.0.2 → 7.2") || text.contains("qemu_dest=7.2"), "{text}");
}

/// A version migbench neither has nor can fetch stops the sweep before any run,
/// naming the variable, the value and what to do; a value that is no version,
/// `system` or path is refused when the profile is read.
#[test]
fn an_unknown_qemu_version_is_refused_before_any_run() {
    let (rs, code, text) = run_profile("name = \"v\"\n[defaults]\nqemu = \"8.2\"\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(rs.is_empty(), "{text}");
    assert!(text.contains("qemu = \"8.2\"") && text.contains("neither installed nor one migbench can fetch") && text.contains("path"), "{text}");

    let (rs, code, text) = run_profile("name = \"v\"\n[matrix]\nqemu_dest = [\"10.0\", \"latest\"]\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(rs.is_empty(), "{text}");
    assert!(text.contains("latest") && text.contains("give a version"), "{text}");
}

/// `migbench doctor` lists the QEMUs it has side by side, and `--qemu-dest`
/// on `migrate` is refused with the reason when the version cannot be had.
#[test]
fn doctor_lists_the_versions_and_migrate_refuses_an_unknown_destination() {
    platform();
    // Both versions are in the cache once the sweep test or this one fetched them.
    migbench::host::qemu_versions::resolve(&"7.2".parse().unwrap()).unwrap();
    migbench::host::qemu_versions::resolve(&"10.0".parse().unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let o = migbench(tmp.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let versions: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("versions")).take_while(|l| l.starts_with("versions") || l.starts_with("  ")).collect();
    assert!(versions.iter().any(|l| l.contains("7.2.") && l.contains(", bookworm;") && l.contains("corrupts")), "{text}");
    assert!(versions.iter().any(|l| l.contains("10.0.") && l.contains("bookworm-backports")), "{text}");

    let o = migbench(tmp.path()).args(["migrate", "--ram", "128", "--qemu-dest", "8.2", "--out"]).arg(tmp.path()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--qemu-dest 8.2") && err.contains("neither installed"), "{err}");
    let o = migbench(tmp.path()).args(["migrate", "--qemu-dest", "newest"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("newest") && err.contains("give a version"), "{err}");
}

/// Every QEMU installed side by side, asked for its live QMP schema (a bare
/// `-machine none` QEMU: no guest needed); and every strategy's QMP set-up checked
/// against it: a plan where the schema has what the strategy needs, else a refusal
/// that names the missing capability or parameter, which the schema indeed lacks.
/// For the versions with a recorded fixture, the live schema offers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_is_checked_against_each_installed_qemus_schema() {
    use migbench::migration::scenario::Scenario;
    use migbench::migration::settings::{capability_plan, parameter_plan};
    use migbench::migration::strategy::Strategy;
    platform();
    migbench::host::qemu_versions::resolve(&"7.2".parse().unwrap()).unwrap();
    let installed = migbench::host::qemu_versions::installed();
    assert!(installed.len() >= 2, "7.2 and 10.0 at least: {installed:?}");
    let mut checked = Vec::new();
    for q in installed {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("qmp.sock");
        let child = std::process::Command::new(&q.path)
            .args(q.data_dir_args())
            .args(["-machine", "none", "-nodefaults", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed however the test ends.
        let child = KillOnDrop(child);
        let qmp = migbench::qmp::Qmp::connect(&sock, "schema", std::time::Duration::from_secs(30)).await;
        let features = match qmp {
            Ok(qmp) => qmp.features().await,
            Err(e) => Err(e),
        };
        drop(child);
        let f = features.unwrap_or_else(|e| panic!("{}: {e}", q.version));
        assert!(f.has_capability("postcopy-ram") && f.has_parameter("max-bandwidth"), "{}: {f:?}", q.version);
        for s in Strategy::ALL {
            let plan = capability_plan(s, &f).and_then(|_| parameter_plan(&Scenario { strategy: s, ..Scenario::default() }, &f).map(|_| ()));
            match plan {
                Ok(()) => {
                    for c in s.spec().required {
                        assert!(f.has_capability(c), "{} {s}: planned without {c}", q.version);
                    }
                }
                Err(reason) => {
                    // The refusal names what the schema lacks: a required capability, or a parameter it has not.
                    let missing_cap = s.spec().required.iter().find(|c| !f.has_capability(c));
                    let missing_param = reason.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')).find(|w| w.contains('-') && !f.has_parameter(w) && !f.has_capability(w));
                    assert!(missing_cap.is_some_and(|c| reason.contains(c)) || (missing_cap.is_none() && reason.contains("parameter") && missing_param.is_some()), "{} {s}: {reason}", q.version);
                }
            }
        }
        for v in ["7.2", "10.0"] {
            if migbench::host::qemu_versions::in_series(&q.version, v) {
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/qmp-{v}/query-qmp-schema.json"));
                let fixture = migbench::qmp::Features::from_schema(&serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap());
                assert_eq!(f.capabilities, fixture.capabilities, "{}", q.version);
                assert_eq!(f.parameters, fixture.parameters, "{}", q.version);
            }
        }
        checked.push(q.version.clone());
    }
    assert!(checked.iter().any(|v| v.starts_with("7.2")) && checked.iter().any(|v| v.starts_with("10.0")), "{checked:?}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A predicted ranking measures every candidate on the command's one QEMU: a
/// profile whose cells name QEMUs is refused there, with what to do instead.
#[test]
fn a_predicted_ranking_refuses_cells_that_name_a_qemu() {
    platform();
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("r.toml");
    std::fs::write(&profile, "name = \"r\"\n[matrix]\nqemu = [\"7.2\", \"10.0\"]\n").unwrap();
    let o = migbench(tmp.path()).arg("rank").arg(&profile).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("qemu=7.2") && err.contains("names qemu/qemu_dest") && err.contains("--qemu"), "{err}");
    assert!(processes_mentioning(&tmp.path().display().to_string()).is_empty());
}
