// hypercore_peer.mjs - what the JavaScript peers of kappalog-bench share
// (hypercore_append.mjs, hypercore_clone.mjs): finding hypercore, reading
// their arguments, failing with one line on stderr.
//
// hypercore is loaded with require(), from the first place that has it:
// NODE_PATH (normal resolution from this directory), then the installs of
// tests/js: tests/js/node_modules, $KL_BUILD_DIR/hc-js/node_modules and
// build/hc-js/node_modules (where tests/test_hc_live.sh and
// bench/hypercore.c put it).

import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

// A function that prints "name: msg" on stderr and exits with status (1 unless given).
export function dieWith (name) {
  return (msg, status = 1) => {
    process.stderr.write(name + ': ' + msg + '\n')
    process.exit(status)
  }
}

// { Hypercore, version, req } from the first place that has hypercore (req
// resolves further packages from that same place), or die.
export function loadHypercore (die) {
  const places = [
    import.meta.url,
    path.join(here, '..', 'tests', 'js', 'package.json'),
    process.env.KL_BUILD_DIR ? path.join(process.env.KL_BUILD_DIR, 'hc-js', 'package.json') : null,
    path.join(here, '..', 'build', 'hc-js', 'package.json')
  ].filter(Boolean)
  for (const from of places) {
    const req = createRequire(from)
    try {
      return { Hypercore: req('hypercore'), version: req('hypercore/package.json').version, req }
    } catch {}
  }
  die('cannot find hypercore: set NODE_PATH to a node_modules with tests/js installed (npm ci), e.g. build/hc-js/node_modules after ctest -R test_hc_live')
}

// The positive integer after `name` in args (underscores allowed), fallback if absent.
export function intArg (args, name, fallback, die) {
  const i = args.indexOf(name)
  if (i < 0) return fallback
  const v = args[i + 1]
  if (v === undefined || !/^\d+$/.test(v.replace(/_/g, '')) || Number(v.replace(/_/g, '')) < 1) die(name + ' needs a positive integer', 2)
  return Number(v.replace(/_/g, ''))
}

// The string after `name` in args, null if absent.
export function strArg (args, name, die) {
  const i = args.indexOf(name)
  if (i < 0) return null
  if (args[i + 1] === undefined) die(name + ' needs a value', 2)
  return args[i + 1]
}
