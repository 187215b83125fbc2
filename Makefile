# The two commands of the README, and a few conveniences.
#   make demo   install what is missing, build, and run the main job (scripts/demo.sh)
#   make test   install what is missing, build, and run the whole test suite (scripts/test.sh)
.PHONY: demo test build bench format clean

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh

build:
	@scripts/deps.sh build
	@cmake -S . -B build -DKL_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j "$$(nproc)"

bench: build
	@build/bench/kappalog-bench

format:
	@scripts/check-format.sh --fix

clean:
	rm -rf build build-asan build-fuzz
