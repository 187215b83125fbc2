# hc_js.sh - what the shell tests that run the real JavaScript hypercore
# share (sourced, not a test itself): Node must be on PATH (scripts/deps.sh
# test installs it; a missing node is a failure, never a skip), and
# tests/js/package.json with its lock file (hypercore 11.37.1 and its
# helpers, exact versions) is installed with `npm ci` into
# $KL_BUILD_DIR/hc-js once per lock file, under a lock so that two tests
# sharing a build tree never install at the same time. hc_js_install
# exports NODE_PATH there. Needs KL_SOURCE_DIR, KL_BUILD_DIR and a die().

# shellcheck shell=bash

HC_JS_SRC="$KL_SOURCE_DIR/tests/js"
HCJS="$KL_BUILD_DIR/hc-js"

hc_js_lock_ok() {
    [ -f "$HCJS/node_modules/hypercore/package.json" ] &&
        cmp -s "$HCJS/node_modules/.kl-package-lock.json" "$HC_JS_SRC/package-lock.json" &&
        cmp -s "$HCJS/package.json" "$HC_JS_SRC/package.json"
}

hc_js_npm_ci() {
    hc_js_lock_ok && return 0
    command -v npm >/dev/null ||
        die "npm is not on PATH: it installs tests/js (hypercore 11.37.1); scripts/deps.sh test installs it"
    echo "$(basename "$0"): npm ci of tests/js into $HCJS" >&2
    rm -rf "$HCJS/node_modules"
    cp "$HC_JS_SRC/package.json" "$HC_JS_SRC/package-lock.json" "$HCJS/" ||
        die "cannot copy tests/js/package*.json to $HCJS"
    if ! (cd "$HCJS" && npm ci --no-audit --no-fund --loglevel=error) >"$HCJS/npm-ci.log" 2>&1; then
        cat "$HCJS/npm-ci.log" >&2
        die "npm ci in $HCJS failed (network? registry?): see above"
    fi
    cp "$HC_JS_SRC/package-lock.json" "$HCJS/node_modules/.kl-package-lock.json"
}

hc_js_install() {
    command -v node >/dev/null ||
        die "node is not on PATH: this test runs the real JavaScript hypercore and needs Node.js (>= 18) and npm; scripts/deps.sh test installs them"
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
        die "node $(node --version) is too old: Node.js >= 18 is needed"
    mkdir -p "$HCJS" || die "cannot create $HCJS"
    if command -v flock >/dev/null; then
        exec 9>"$HCJS/.install.lock"
        flock 9
        hc_js_npm_ci
        flock -u 9
        exec 9>&-
    else
        hc_js_npm_ci
    fi
    export NODE_PATH="$HCJS/node_modules"
}
