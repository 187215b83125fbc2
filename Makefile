# The two commands of the README, and a few conveniences.
#   make demo   install what is missing, build, and run the main job (scripts/demo.sh)
#   make test   install what is missing, build, and run the whole test suite (scripts/test.sh)
#   make compare  the peer benchmark (issue 7): installs the peers, runs
#                 `kappalog-bench compare` and regenerates its part of
#                 docs/BENCHMARKS.md and the plots in docs/plots/ (scripts/compare.sh)
.PHONY: demo test build bench compare format clean

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh

build:
	@scripts/deps.sh build
	@if [ -f build/CMakeCache.txt ]; then cmake -S . -B build >/dev/null; \
	else cmake -S . -B build -DKL_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null; fi
	@cmake --build build -j "$$(nproc)"

bench: build
	@build/bench/kappalog-bench

compare:
	@scripts/compare.sh

format:
	@scripts/check-format.sh --fix

clean:
	rm -rf build build-asan build-fuzz
