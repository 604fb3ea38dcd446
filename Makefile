# Thin wrapper around Meson so the README's commands stay short.
BUILD      ?= build
BUILD_ASAN ?= build-asan
MESON      ?= meson

.PHONY: all run check check-asan bench clean

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

# Benchmarks (not tests): see bench/README.md.
bench: all
	bench/boot.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
