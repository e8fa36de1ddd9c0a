# bitgrok: `make sweep` runs the default sweep, `make test` the test suite, `make ci`
# what CI checks beyond the tests.

SWEEP ?= sweeps/paper.toml
ARTIFACTS ?= artifacts
CARGO ?= cargo

.PHONY: sweep test ci build release

# Training is not wired in yet, so this plans the sweep; it becomes a real run by
# changing `plan` to `run` on the last line.
sweep: release
	target/release/bitgrok plan $(SWEEP) --artifacts $(ARTIFACTS)

release:
	$(CARGO) build --release

build:
	$(CARGO) build

# Plain `cargo test`, not --release: dependencies are already built at opt-level 3 in
# the dev/test profiles (Cargo.toml), so tests run at near-release speed while
# bitgrok's own code compiles unoptimised, which is faster end to end.
test:
	$(CARGO) test

ci: build
	$(CARGO) run --quiet -- check sweeps/*.toml
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
