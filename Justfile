# The longer recipes, for those who have `just`. Each is a thin call of a migbench
# subcommand; nothing here is needed for the two README commands.

migbench := "cargo run --release -p migbench --"

# Install QEMU if missing and build the guest image.
setup:
    {{migbench}} setup

# What migbench finds on this machine (QEMU, KVM, cgroups, namespaces, image).
doctor:
    {{migbench}} doctor

# The tests (real QEMU guests).
test:
    cargo test

# The benchmark: boot time, then profiles/smoke.toml with its summary.
bench *ARGS:
    {{migbench}} bench {{ARGS}}

# Run a profile, e.g. `just run strategies --resume`.
run PROFILE *ARGS:
    {{migbench}} run {{PROFILE}} {{ARGS}}

# Join shard results: `just merge out/s0 out/s1 --out out/all`.
merge *ARGS:
    {{migbench}} merge {{ARGS}}

# One measured migration, e.g. `just migrate --ram 1024 --link 100Mbit`.
migrate *ARGS:
    {{migbench}} migrate {{ARGS}}

# Ghalib et al.: HTTP latency per request before, during and after migration at 100 Mbit/s.
reproduce-ghalib *ARGS:
    {{migbench}} reproduce ghalib {{ARGS}}

# Shreya et al.: Tables 1–3, Table 4 and Table 5 (`--repetitions 1` for a first look).
reproduce-shreya *ARGS:
    {{migbench}} reproduce shreya {{ARGS}}

# Chandak et al.: the engine on the paper's Tables 1–4, then a live 3-host cluster.
reproduce-chandak *ARGS:
    {{migbench}} reproduce chandak {{ARGS}}

# Sahni & Varma: pre-copy, post-copy, hybrid (and multifd zstd) × idle / read- / write-intensive guests.
reproduce-sahni *ARGS:
    {{migbench}} reproduce sahni {{ARGS}}

# The thesis chapter's Table 1.1: the pre-/post-copy cost model predicted vs measured.
reproduce-thesis *ARGS:
    {{migbench}} reproduce thesis {{ARGS}}

# A report (Markdown + HTML with plots) of a results directory.
report DIR *ARGS:
    {{migbench}} report {{DIR}} {{ARGS}}
