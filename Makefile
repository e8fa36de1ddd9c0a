# bitgrok: `make sweep` runs the default sweep, `make test` the test suite, `make ci`
# what CI checks beyond the tests.

SWEEP ?= sweeps/paper.toml
ARTIFACTS ?= artifacts
CARGO ?= cargo
BITGROK := $(or $(CARGO_TARGET_DIR),target)/release/bitgrok
# Where `make ci` trains the smoke sweep from scratch.
CI_ARTIFACTS := target/ci-artifacts
# The smoke sweep's expected tables, which CI diffs a fresh run against.
EXPECTED_SMOKE := tests/expected/smoke

.PHONY: sweep test ci release accept-smoke test-slurm test-report test-interop bench results results-check check-models save-models restore-models

# Build (release) and run a sweep: says how long its training will take (measured
# now), trains every cell not already done, then writes its tables under
# $(ARTIFACTS)/sweeps/NAME/.
sweep: release
	$(BITGROK) plan $(SWEEP) --artifacts $(ARTIFACTS) --estimate | tail -n 2
	$(BITGROK) run $(SWEEP) --artifacts $(ARTIFACTS)

release:
	$(CARGO) build --release

# Plain `cargo test`, not --release: dependencies are already built at opt-level 3 in
# the dev/test profiles (Cargo.toml), so tests run at near-release speed while
# bitgrok's own code compiles unoptimised, which is faster end to end.
test:
	$(CARGO) test

# Sweep files valid, formatting, lints, then the smoke sweep trained from a clean
# artifacts dir and its tables diffed against the expected ones in tests/expected/.
ci: release
	$(BITGROK) check sweeps/*.toml
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	rm -rf $(CI_ARTIFACTS)
	$(BITGROK) run sweeps/smoke.toml --artifacts $(CI_ARTIFACTS)
	$(BITGROK) diff $(EXPECTED_SMOKE) $(CI_ARTIFACTS)/sweeps/smoke --ignore train_seconds

# Accept the smoke sweep's current tables as the expected ones (after `make ci`
# showed an intended change).
accept-smoke: release
	rm -rf $(CI_ARTIFACTS)
	$(BITGROK) run sweeps/smoke.toml --artifacts $(CI_ARTIFACTS)
	mkdir -p $(EXPECTED_SMOKE)
	cp $(CI_ARTIFACTS)/sweeps/smoke/*.csv $(EXPECTED_SMOKE)/

# The cluster test: a single-node Slurm cluster on this machine runs the smoke sweep
# as a job array (installs Debian's slurm packages when missing; needs root).
test-slurm: release
	tests/slurm/run.sh

# A real browser renders the smoke sweep's report: headless chromium screenshots of
# report.html and one cell page (installs Debian's chromium when missing), checked
# not blank; the screenshots stay in target/report-test/.
test-report: release
	BITGROK=$(BITGROK) tests/report/screenshot.sh

# Every kind of exported cell loads in TransformerLens 3.9.0 and 4.3.0 and computes
# the cell's function: pinned Python environments in target/interop-venvs/ (made
# once, kept while tests/interop/requirements.txt is unchanged), sweeps/interop.toml
# trained and exported, scripts/load_transformer_lens.py and README's recipes run on
# each version; work files in target/interop-test/.
test-interop: release
	BITGROK=$(BITGROK) VENVS=$(or $(CARGO_TARGET_DIR),target)/interop-venvs \
		OUT=$(or $(CARGO_TARGET_DIR),target)/interop-test tests/interop/run.sh

# Median milliseconds per training step of the seed study's cell, per precision.
bench: release
	for p in fp32 ternary binary; do $(BITGROK) bench --precision $$p --modulus 113 --width 128 --iters 50; done

# Committed evidence: train (or reuse) every cell of sweeps/$(NAME).toml, then copy
# its tables, report and figures to results/$(NAME)/ with their provenance.
results: release
	$(BITGROK) run sweeps/$(NAME).toml --artifacts $(ARTIFACTS)
	BITGROK=$(BITGROK) scripts/publish_results.sh $(NAME) $(ARTIFACTS)

# A re-run of sweeps/$(NAME).toml against the committed tables in results/$(NAME)/.
results-check: release
	$(BITGROK) run sweeps/$(NAME).toml --artifacts $(ARTIFACTS)
	$(BITGROK) diff results/$(NAME) $(ARTIFACTS)/sweeps/$(NAME) --ignore train_seconds

# Re-analyse the committed models (models/cells/) and diff the tables they give
# against results/: every folder whose models are all committed, or only NAMES="a b".
# Nothing is trained.
check-models: release
	BITGROK=$(BITGROK) WORK=$(or $(CARGO_TARGET_DIR),target)/check-committed scripts/check_committed.sh $(NAMES)

# The trained cells behind results/$(NAME)/, copied to models/cells/ to be committed.
save-models:
	scripts/save_models.sh $(NAME) $(ARTIFACTS)

# Refill $(ARTIFACTS)/cells/ from the committed models (cells already there are kept):
# `make results` then re-analyses them instead of training.
restore-models:
	mkdir -p $(ARTIFACTS)/cells
	cp -rn models/cells/. $(ARTIFACTS)/cells/
