#!/usr/bin/env bash
# test_install.sh - `cmake --install` puts the library, the header, the
# pkg-config file and the CMake package where a consumer finds them: a
# program built with pkg-config, and one built with find_package(kappalog),
# both create a log, append and read back through the installed library.
set -euo pipefail
: "${KL_BUILD_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
cmake --install "$KL_BUILD_DIR" --prefix "$prefix" >/dev/null

test -f "$prefix/include/kappalog.h"
pc=$(find "$prefix" -name kappalog.pc | head -n1)
cfg=$(find "$prefix" -name kappalogConfig.cmake | head -n1)
test -n "$pc" && test -n "$cfg"
libdir=$(dirname "$(find "$prefix" -name 'libkappalog.so' | head -n1)")

cat >"$tmp/use.c" <<'C'
#include <kappalog.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    kl_log *log;
    char buf[16];
    size_t n = 0;
    kl_block b = {"installed", 9};
    if (argc < 2 || kl_log_create(argv[1], NULL) != 0 || kl_log_open(argv[1], NULL, &log) != 0 ||
        kl_log_append(log, &b, 1, NULL) != 0 || kl_log_get(log, 0, buf, sizeof buf, &n) != 0 ||
        n != 9 || memcmp(buf, "installed", 9) != 0) {
        fprintf(stderr, "use: %s\n", kl_last_error());
        return 1;
    }
    printf("%s %.*s\n", kl_version(), (int)n, buf);
    return kl_log_close(log);
}
C

# A sanitizer build of the library needs consumers built with the same runtime.
san=()
[[ "${KL_SANITIZE:-0}" == 1 ]] && san=(-fsanitize=address,undefined)

# 1. pkg-config
export PKG_CONFIG_PATH="$(dirname "$pc")"
cc -std=c11 -Wall -Werror "${san[@]}" "$tmp/use.c" $(pkg-config --cflags --libs kappalog) -o "$tmp/use-pc"
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/use-pc" "$tmp/log1")
[[ "$out" == *" installed" ]] || { echo "pkg-config consumer printed: $out" >&2; exit 1; }

# 2. CMake find_package
mkdir -p "$tmp/proj"
cp "$tmp/use.c" "$tmp/proj/use.c"
cat >"$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.22)
project(use C)
find_package(kappalog 0.1 REQUIRED)
add_executable(use use.c)
target_link_libraries(use PRIVATE kappalog::kappalog)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="${san[*]}" -DCMAKE_EXE_LINKER_FLAGS="${san[*]}" >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/proj/build/use" "$tmp/log2")
[[ "$out" == *" installed" ]] || { echo "CMake consumer printed: $out" >&2; exit 1; }
echo "install: header, library, pkg-config and CMake package all usable"
