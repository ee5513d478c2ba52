//! Unit tests of `profile.rs`: parsing, expansion, cell keys and the errors.
#![cfg(test)]

use super::*;

const EXAMPLE: &str = r#"
name = "t"
repetitions = 2
[defaults]
ram_mib = 128
workload = "memdirty-write:16"
[matrix]
strategy = ["precopy", "postcopy"]
link = ["100Mbit", "1Gbit", "unlimited"]
"#;

#[test]
fn matrix_expands_to_every_combination_in_declared_order() {
    let p = Profile::parse(EXAMPLE, "t.toml").unwrap();
    assert_eq!(p.cells.len(), 6);
    assert_eq!(p.repetitions, 2);
    assert!(p.cells.iter().all(|c| c.ram_mib == 128 && c.vcpus == 1));
    // strategy is declared before link, so it varies slowest.
    let order: Vec<String> = p.cells.iter().map(|c| format!("{}/{}", c.strategy, c.link)).collect();
    assert_eq!(order, ["precopy/100Mbit", "precopy/1Gbit", "precopy/unlimited", "postcopy/100Mbit", "postcopy/1Gbit", "postcopy/unlimited"]);
    assert_eq!(p.varied, ["strategy", "link"]);
    assert_eq!(p.cells[4].describe(&p.varied), "strategy=postcopy link=1Gbit");
    assert_eq!(p.cell_label(4), "strategy=postcopy link=1Gbit");
    let one = Profile::parse("name = \"o\"\n[defaults]\nram_mib = 128\n", "o.toml").unwrap();
    assert_eq!(one.cell_label(0), "cell 0", "a profile that varies nothing names its cell by index");
    assert_eq!(p.cells[0].scenario().link.bytes_per_sec, Some(12_500_000));
    assert_eq!(p.cells[0].guest(Accel::Tcg).workload.to_string(), "memdirty-write:16");
}

#[test]
fn cell_keys_are_stable_and_distinct() {
    let p = Profile::parse(EXAMPLE, "t.toml").unwrap();
    let keys: std::collections::BTreeSet<_> = p.cells.iter().map(Cell::key).collect();
    assert_eq!(keys.len(), 6);
    assert_eq!(Profile::parse(EXAMPLE, "again").unwrap().cells[3].key(), p.cells[3].key());
    // Naming a default explicitly does not change a cell's identity.
    let explicit = Profile::parse(&EXAMPLE.replace("ram_mib = 128", "ram_mib = 128\nvcpus = 1"), "e").unwrap();
    assert_eq!(explicit.cells[3].key(), p.cells[3].key());
}

#[test]
fn errors_name_file_line_and_allowed_values() {
    let e = Profile::parse("name = \"x\"\n[matrix]\nram = [1]\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("p.toml") && e.contains("line 3") && e.contains("ram") && e.contains("ram_mib"), "{e}");
    let e = Profile::parse("name = \"x\"\n[defaults]\nstrategy = \"teleport\"\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("postcopy") && e.contains("multifd"), "{e}");
    let e = Profile::parse("name = \"x\"\n[defaults]\nlink = \"fast\"\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("100Mbit"), "{e}");
    let e = Profile::parse("name = \"x\"\n[defaults]\nram_mib = \"big\"\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("expected u32"), "{e}");
    let e = Profile::parse("name = \"x\"\n[defaults]\nvcpus = 1\n[matrix]\nram_mib = [256, 0]\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("p.toml") && e.contains("line 5") && e.contains("ram_mib = 0"), "{e}");
    let e = Profile::parse("name = \"x\"\n[matrix]\nlink = [\"1Gbit\", \"1Gbit\"]\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("repeats a value"), "{e}");
    let e = Profile::parse("name = \"x\"\n[matrix]\nvcpus = []\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("empty list"), "{e}");
    let e = Profile::parse("name = \"x\"\nrepetitions = 0\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("repetitions = 0"), "{e}");
    let e = Profile::parse("description = \"no name\"\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("name"), "{e}");
    assert!(Profile::parse("name = \"x\"\n[defaults]\nworkload = \"dance\"\n", "p").unwrap_err().to_string().contains("memdirty-write"));
}

#[test]
fn too_many_repetitions_are_refused_before_they_are_planned() {
    let e = Profile::parse("name = \"x\"\nrepetitions = 4000000000\n", "p.toml").unwrap_err().to_string();
    assert!(e.contains("is 4000000000 runs, more than 1000000"), "{e}");
}

#[test]
fn a_huge_matrix_is_refused_before_it_is_built() {
    // Found by tests/fuzz_profile.rs: eight lists of 20 values are 2.56e10 cells, and
    // building them ran out of memory before any was checked.
    let list = |from: u32| format!("[{}]", (from..from + 20).map(|n| n.to_string()).collect::<Vec<_>>().join(", "));
    let keys = ["ram_mib", "vcpus", "downtime_limit_ms", "hybrid_passes", "cap_percent", "requests", "probe_hz", "request_timeout_ms"];
    let matrix: Vec<String> = keys.iter().map(|k| format!("{k} = {}", list(256))).collect();
    let e = Profile::parse(&format!("name = \"x\"\n[matrix]\n{}\n", matrix.join("\n")), "p.toml").unwrap_err().to_string();
    assert!(e.starts_with("profile p.toml: [matrix] makes 25600000000 cells (20 ram_mib × 20 vcpus × "), "{e}");
    assert!(e.contains("more than 10000"), "{e}");
    // An empty list is still named as such, wherever it is.
    let e = Profile::parse(&format!("name = \"x\"\n[matrix]\n{}\nprobe_hz = []\n", matrix[..6].join("\n")), "p.toml").unwrap_err().to_string();
    assert!(e.contains("probe_hz is an empty list"), "{e}");
}

#[test]
fn shards_cover_every_cell_exactly_once() {
    let p = Profile::parse(EXAMPLE, "t.toml").unwrap();
    for n in 1..=8 {
        let mut seen = vec![0; p.cells.len()];
        for i in 0..n {
            for (idx, _) in p.shard(Shard { index: i, count: n }) {
                seen[idx] += 1;
            }
        }
        assert!(seen.iter().all(|&k| k == 1), "{n} shards: {seen:?}");
    }
    assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
    for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
        assert!(bad.parse::<Shard>().unwrap_err().contains("I/N"), "{bad}");
    }
}

#[test]
fn listed_cells_lay_their_values_over_the_defaults() {
    let p = Profile::parse(
        "name = \"l\"\n[defaults]\nram_mib = 128\nlink = \"20Mbit\"\n[[cell]]\nfault = \"kill-source\"\n[[cell]]\nstrategy = \"postcopy\"\nlink = \"1Gbit\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(p.cells.len(), 2);
    assert_eq!(p.cells[0].ram_mib, 128);
    assert_eq!(p.cells[0].link.to_string(), "20Mbit");
    assert_eq!(p.cells[0].fault, Fault::KillSource { at_s: 1.0 });
    assert_eq!(p.cells[1].strategy, Strategy::Postcopy);
    assert_eq!(p.cells[1].link.to_string(), "1Gbit");
    assert_eq!(p.varied, ["strategy", "link", "fault"]);
}

#[test]
fn a_record_older_than_a_variable_reads_it_as_its_default() {
    let c: Cell = serde_json::from_str(r#"{"ram_mib": 512, "workload": "idle"}"#).unwrap();
    assert_eq!(c.ram_mib, 512);
    assert_eq!(c.fault, Fault::None);
    assert_eq!(c.probe_hz, Cell::default().probe_hz);
    assert_eq!(c.key(), Cell { ram_mib: 512, ..Cell::default() }.key());
}

#[test]
fn the_dirty_rate_mode_and_the_features_variables_parse() {
    let p = Profile::parse("name = \"d\"\ndirty_rate_s = 1\ndirty_rate_mode = \"dirty-bitmap\"\n[matrix]\navail_switchover_bandwidth = [\"100Mbit\", \"1Gbit\"]\n", "d").unwrap();
    assert_eq!(p.dirty_rate_mode, DirtyRateMode::DirtyBitmap);
    assert_eq!(p.cells[1].scenario().tuning.avail_switchover_bandwidth.unwrap().bytes_per_sec, Some(125_000_000));
    assert_eq!(p.cell_label(0), "avail_switchover_bandwidth=100Mbit");
    let e = Profile::parse("name = \"d\"\ndirty_rate_mode = \"dirty-ring\"\n", "d").unwrap_err().to_string();
    assert!(e.contains("dirty_rate_mode = dirty-ring without dirty_rate_s"), "{e}");
    let e = Profile::parse("name = \"d\"\ndirty_rate_s = 1\ndirty_rate_mode = \"ring\"\n", "d").unwrap_err().to_string();
    assert!(e.contains("page-sampling") && e.contains("dirty-ring"), "{e}");
    let e = Profile::parse("name = \"d\"\n[defaults]\nstrategy = \"mapped-ram\"\ntransport = \"tcp\"\n", "d").unwrap_err().to_string();
    assert!(e.contains("line 3: strategy = \"mapped-ram\" saves to a file"), "{e}");
    let e = Profile::parse("name = \"d\"\n[defaults]\navail_switchover_bandwidth = \"fast\"\n", "d").unwrap_err().to_string();
    assert!(e.contains("100Mbit"), "{e}");
    // Records written before these variables read them as their defaults.
    assert_eq!(Cell::default().scenario().tuning, Tuning::default());
}

#[test]
fn shipped_profiles_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "toml") {
            // Cluster profiles (`balance --cluster`) have hosts instead of a matrix.
            if std::fs::read_to_string(e.path()).unwrap().contains("[[host]]") {
                crate::rank::cluster::ClusterProfile::load(&e.path()).unwrap_or_else(|err| panic!("{err:#}"));
            } else {
                Profile::load(&e.path()).unwrap_or_else(|err| panic!("{err:#}"));
            }
            n += 1;
        }
    }
    assert!(n >= 1, "no profiles shipped in {}", dir.display());
}

#[test]
fn a_profile_names_its_remote_destination() {
    let base = "name = \"p\"\n[defaults]\ntransport = \"tcp\"\n";
    let p = Profile::parse(&format!("dest = \"ssh://root@198.19.0.2\"\nmigrate_address = \"198.19.1.2\"\nclient_address = \"198.19.0.2\"\n{base}"), "t").unwrap();
    let d = p.dest.as_ref().unwrap();
    assert_eq!(d.target.to_string(), "ssh://root@198.19.0.2");
    assert_eq!((d.migrate_address.as_deref(), d.client_address.as_deref()), (Some("198.19.1.2"), Some("198.19.0.2")));
    let e = Profile::parse(&format!("client_address = \"198.19.0.2\"\n{base}"), "t").unwrap_err().to_string();
    assert!(e.contains("client_address = \"198.19.0.2\" without dest"), "{e}");
    let e = Profile::parse(&format!("dest = \"ssh://root@h\"\nclient_address = \"http://h\"\n{base}"), "t").unwrap_err().to_string();
    assert!(e.contains("client_address =") && !e.contains("--migrate-address"), "{e}");
    let e = Profile::parse(&format!("migrate_address = \"198.19.1.2\"\n{base}"), "t").unwrap_err().to_string();
    assert!(e.contains("without dest"), "{e}");
    let e = Profile::parse(&format!("dest = \"root@host\"\n{base}"), "t").unwrap_err().to_string();
    assert!(e.contains("ssh://user@host"), "{e}");
    let e = Profile::parse(&format!("dest = \"ssh://root@h\"\nmigrate_address = \"h:4444\"\n{base}"), "t").unwrap_err().to_string();
    assert!(e.contains("migrate_address =") && e.contains("without a port"), "{e}");
}
