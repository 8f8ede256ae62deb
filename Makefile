# nobrick: the front door. CMake does the building; this file only drives it.
#
#   make          configure + build build/ (-O2 -g)
#   make demo     make deps + build, then a staged release through 1,000
#                 simulated devices with faults (scripts/demo.sh)
#   make test     make deps, then build and ctest build/ and build-asan/
#                 (ASan+UBSan, -O1), then the Cortex-M core check (make arm)
#   make deps     install the Debian packages below that are missing
#   make arm      core/ built for Cortex-M4 (-Os): undefined symbols + .text size
#   make arm-bootloader  Cortex-M bootloader with mbedTLS: flash cost of the
#                 signature check, QEMU run (downloads mbedTLS' Debian source)
#   make fuzz     libFuzzer on the manifest parser and CBOR reader (clang)
#   make soak     long runs: ctest with NOBRICK_SOAK=1 (longer sweeps, fuzzing)
#   make clean    remove the build trees

# The Debian packages the project needs: one list, later issues add to it.
DEB_PACKAGES := build-essential cmake pkg-config \
	libcmocka-dev libmbedtls-dev libssl-dev \
	gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi \
	softhsm2 libp11-kit-dev libjansson-dev \
	clang-14 libclang-rt-14-dev \
	libcurl4-openssl-dev nginx-light vsftpd openssl \
	libmicrohttpd-dev curl \
	libmosquitto-dev mosquitto \
	libsqlite3-dev sqlite3 libpq-dev postgresql swupdate wrk cpio python3

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
TEST_TIMEOUT ?= 600
SOAK_TIMEOUT ?= 86400

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# The generator cmake uses for a new build tree.
CMAKE_GENERATOR ?= Unix Makefiles
export CMAKE_GENERATOR
# make test builds with keep-going, so one broken file does not hide the
# results of every other test (its test then fails as "Not Run").
KEEP_GOING ?=
KEEP_GOING_FLAG = $(if $(KEEP_GOING),$(if $(filter Unix Makefiles,$(CMAKE_GENERATOR)),-- -k,-- -k 0))

# Do not hand our make flags to the make that cmake --build runs.
CMAKE_BUILD = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build
CTEST = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL ctest

CONFIG_NORMAL = -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" -DNB_SANITIZE=OFF
CONFIG_ASAN = -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DNB_SANITIZE=ON

.PHONY: all build build-asan deps demo test test-normal test-asan arm fuzz soak clean

all: build

build:
	cmake -S . -B $(BUILD) $(CONFIG_NORMAL) -DNB_TEST_TIMEOUT=$(TEST_TIMEOUT)
	$(CMAKE_BUILD) $(BUILD) --parallel $(JOBS) $(KEEP_GOING_FLAG)

build-asan:
	cmake -S . -B $(ASAN_BUILD) $(CONFIG_ASAN) -DNB_TEST_TIMEOUT=$(TEST_TIMEOUT)
	$(CMAKE_BUILD) $(ASAN_BUILD) --parallel $(JOBS) $(KEEP_GOING_FLAG)

deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
		echo "make deps: not a Debian system; install by hand: $(DEB_PACKAGES)"; \
		exit 0; \
	fi; \
	missing=""; \
	for p in $(DEB_PACKAGES); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "make deps: all $(words $(DEB_PACKAGES)) packages present"; \
	else \
		echo "make deps: installing$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $$missing; \
	fi

# The main job: keys in SoftHSM2, three signed releases, nobrick-server,
# 1,000 simulated devices with faults; prints the summary (scripts/demo.sh;
# DEMO_DEVICES=N for another fleet size).
demo: deps
	@$(MAKE) --no-print-directory build
	@bash scripts/demo.sh $(BUILD)

# Every part runs even when an earlier one fails (-k); the exit status is
# non-zero if any failed.
test: deps
	@$(MAKE) --no-print-directory -k test-normal test-asan arm fuzz \
		|| { echo "make test: FAILED (see above)"; exit 1; }
	@echo "make test: all passed"

# Build (keep going), then run whatever tests exist; fail if either failed.
test-normal:
	@rc=0; \
	$(MAKE) --no-print-directory build KEEP_GOING=1 || rc=1; \
	$(CTEST) --test-dir $(BUILD) --output-on-failure -j$(CTEST_JOBS) || rc=1; \
	[ $$rc -eq 0 ] || echo "make test: normal build ($(BUILD)) FAILED"; \
	exit $$rc

test-asan:
	@rc=0; \
	$(MAKE) --no-print-directory build-asan KEEP_GOING=1 || rc=1; \
	$(CTEST) --test-dir $(ASAN_BUILD) --output-on-failure -j$(CTEST_JOBS) || rc=1; \
	[ $$rc -eq 0 ] || echo "make test: ASan+UBSan build ($(ASAN_BUILD)) FAILED"; \
	exit $$rc

arm:
	@bash scripts/arm-core-check.sh || { echo "make test: Cortex-M core check FAILED"; exit 1; }

# A real Cortex-M4/M3 bootloader (ports/cortex-m: core + mbedTLS 2.28 +
# QEMU mps2 board port): what the signature check adds to flash, and a run
# under QEMU when qemu-system-arm is installed. Not part of make test: it
# downloads mbedTLS' source package from Debian (into build-arm-boot/).
.PHONY: arm-bootloader
arm-bootloader:
	@bash scripts/arm-bootloader.sh

# libFuzzer (clang): the manifest parser FUZZ_SECONDS, the CBOR reader a
# third of that. Seeded from build/nobrick-sim when it is built (make test
# runs test-normal first).
FUZZ_SECONDS ?= 60
fuzz:
	@NOBRICK_SIM=$(BUILD)/nobrick-sim bash scripts/fuzz.sh build-fuzz \
		$(FUZZ_SECONDS) $$(( $(FUZZ_SECONDS) / 3 )) \
		|| { echo "make test: fuzzing FAILED"; exit 1; }

# Placeholder until the long sweep variants exist: the same tests with
# NOBRICK_SOAK=1 (scripts read it to run --double and random seeds).
soak:
	cmake -S . -B $(BUILD) $(CONFIG_NORMAL) -DNB_TEST_TIMEOUT=$(SOAK_TIMEOUT)
	$(CMAKE_BUILD) $(BUILD) --parallel $(JOBS)
	NOBRICK_SOAK=1 $(CTEST) --test-dir $(BUILD) --output-on-failure -j$(JOBS); \
		rc=$$?; cmake -S . -B $(BUILD) -DNB_TEST_TIMEOUT=$(TEST_TIMEOUT) >/dev/null; \
		NOBRICK_SIM=$(BUILD)/nobrick-sim bash scripts/fuzz.sh build-fuzz 1800 600 || rc=1; \
		exit $$rc

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-arm build-arm-boot build-fuzz
