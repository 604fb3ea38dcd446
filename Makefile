# Thin wrapper around Meson so the README's commands stay short.
BUILD      ?= build
BUILD_ASAN ?= build-asan
MESON      ?= meson

.PHONY: all run check check-asan fuzz bench clean

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD)

$(BUILD_ASAN)/build.ninja:
	$(MESON) setup $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false

# The main job: boot a stock Debian kernel to a shell inside shoji-vmm.
run: all
	scripts/run-demo.sh $(BUILD)

check: all
	scripts/run-tests.sh $(BUILD)

check-asan: $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN)
	scripts/run-tests.sh $(BUILD_ASAN)

# Every libFuzzer target (suite fuzz, and block-fuzz for qcow2 images) for
# FUZZ_SECONDS each, longer than CI's 20 s: make fuzz FUZZ_SECONDS=600.
# The scripts build the targets with clang themselves: no ninja run needed.
FUZZ_SECONDS ?= 60
fuzz: $(BUILD)/build.ninja
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
