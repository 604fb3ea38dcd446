# Thin wrapper around Meson so the README's commands stay short. Each target
# first checks the Debian packages it needs (scripts/deps.sh: installs what
# is missing as root, else prints the apt-get line and stops with status 2),
# so a fresh machine gets one clear line, not "meson: not found".
BUILD      ?= build
BUILD_ASAN ?= build-asan
MESON      ?= meson
DEPS       ?= scripts/deps.sh
, := ,

# Targets run in the order given: the packages come before the build.
.NOTPARALLEL:
.PHONY: all run check check-asan fuzz bench clean deps-build deps-run deps-test

all: deps-build
	@[ -f $(BUILD)/build.ninja ] || $(MESON) setup $(BUILD)
	ninja -C $(BUILD)

deps-build:
	@$(DEPS) build
deps-run:
	@$(DEPS) run
deps-test:
	@$(DEPS) test

# meson looks for dependencies only when it configures: a build directory
# set up by `make` before the test packages were there has no cmocka tests,
# so `make check` configures it again (tests/meson.build).
define configure_for_tests
	@[ -f $(1)/build.ninja ] || $(MESON) setup $(1) $(2)
	@grep -q '"cmocka"' $(1)/meson-info/intro-dependencies.json || $(MESON) setup --reconfigure $(1) $(2)
endef

# The main job: the default images built (once), a service and a client VM
# under shojid, this terminal on the client's console (scripts/run-demo.sh).
run: all deps-run
	scripts/run-demo.sh $(BUILD)

check: deps-build deps-test
	$(call configure_for_tests,$(BUILD))
	ninja -C $(BUILD)
	scripts/run-tests.sh $(BUILD)

check-asan: deps-build deps-test
	$(call configure_for_tests,$(BUILD_ASAN),-Db_sanitize=address$(,)undefined -Db_lundef=false)
	ninja -C $(BUILD_ASAN)
	scripts/run-tests.sh $(BUILD_ASAN)

# Every libFuzzer target (suite fuzz, and block-fuzz for qcow2 images) for
# FUZZ_SECONDS each, longer than CI's 20 s: make fuzz FUZZ_SECONDS=600.
# The scripts build the targets with clang themselves: no ninja run needed.
FUZZ_SECONDS ?= 60
fuzz: deps-build deps-test
	$(call configure_for_tests,$(BUILD))
	ninja -C $(BUILD) build.ninja
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(MESON) test -C $(BUILD) --no-rebuild --timeout-multiplier 0 \
		--suite fuzz --verbose
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(MESON) test -C $(BUILD) --no-rebuild --timeout-multiplier 0 \
		block-fuzz --verbose

# Benchmarks (not tests): see bench/README.md.
bench: all
	bench/boot.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
