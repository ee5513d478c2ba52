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

# The benchmark: boot time and idle-guest migrations of 256/512/1024 MiB.
bench *ARGS:
    {{migbench}} bench {{ARGS}}

# One measured migration, e.g. `just migrate --ram 1024 --link 100Mbit`.
migrate *ARGS:
    {{migbench}} migrate {{ARGS}}
