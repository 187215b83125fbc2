#!/usr/bin/env node
// hypercore_append.mjs - the JavaScript peer's append rate, for comparison
// with kappalog's: appends N records of B bytes, in batches of M records
// (one core.append() call per batch), to a fresh default core of the real
// hypercore 11.37.1 (new Hypercore(tmpdir, {keyPair}): Merkle tree, one
// Ed25519 signature per batch, RocksDB storage) in a temporary directory
// under $TMPDIR (or --dir), and prints one JSON line:
//   {"blocks", "seconds", "blocks_per_s", "record_bytes", "batch", "close_seconds", "hypercore", "node"}
// seconds times the appends only: 16 distinct batches of random records are
// made before the clock starts (batch v appends batch v mod 16, as the C
// benchmark's pool does), and closing the core is timed apart.
//
//   node bench/hypercore_append.mjs [--records 1000000] [--record-bytes 100] [--batch 1000] [--dir D]
//
// hypercore is loaded with require(): from NODE_PATH, else from an install
// of tests/js (tests/js/node_modules, $KL_BUILD_DIR/hc-js/node_modules or
// build/hc-js/node_modules, where tests/test_hc_live.sh puts it), e.g.
//   NODE_PATH=build/hc-js/node_modules node bench/hypercore_append.mjs

import { createRequire } from 'node:module'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

function die (msg, status = 1) {
  process.stderr.write('hypercore_append: ' + msg + '\n')
  process.exit(status)
}

// The first place that has hypercore: normal resolution (NODE_PATH), then the tests/js installs.
function loadHypercore () {
  const places = [
    import.meta.url,
    path.join(here, '..', 'tests', 'js', 'package.json'),
    process.env.KL_BUILD_DIR ? path.join(process.env.KL_BUILD_DIR, 'hc-js', 'package.json') : null,
    path.join(here, '..', 'build', 'hc-js', 'package.json')
  ].filter(Boolean)
  for (const from of places) {
    const req = createRequire(from)
    try {
      return { Hypercore: req('hypercore'), hcrypto: req('hypercore-crypto'), version: req('hypercore/package.json').version }
    } catch {}
  }
  die('cannot find hypercore: set NODE_PATH to a node_modules with tests/js installed (npm ci), e.g. build/hc-js/node_modules after ctest -R test_hc_live')
}

function intArg (args, name, fallback) {
  const i = args.indexOf(name)
  if (i < 0) return fallback
  const v = args[i + 1]
  if (v === undefined || !/^\d+$/.test(v.replace(/_/g, '')) || Number(v.replace(/_/g, '')) < 1) die(name + ' needs a positive integer', 2)
  return Number(v.replace(/_/g, ''))
}

const args = process.argv.slice(2)
if (args.includes('--help')) {
  process.stdout.write('usage: node bench/hypercore_append.mjs [--records N] [--record-bytes B] [--batch M] [--dir D]\n')
  process.exit(0)
}
const records = intArg(args, '--records', 1000000)
const recordBytes = intArg(args, '--record-bytes', 100)
const batch = intArg(args, '--batch', 1000)
const dirArg = args.includes('--dir') ? args[args.indexOf('--dir') + 1] : null

const { Hypercore, hcrypto, version } = loadHypercore()

const POOL = 16
const pool = []
for (let v = 0; v < POOL; v++) {
  const data = crypto.randomBytes(batch * recordBytes)
  const blocks = []
  for (let i = 0; i < batch; i++) blocks.push(data.subarray(i * recordBytes, (i + 1) * recordBytes))
  pool.push(blocks)
}

const root = fs.mkdtempSync(path.join(dirArg || os.tmpdir(), 'hypercore-append-'))
try {
  const core = new Hypercore(root, { keyPair: hcrypto.keyPair(crypto.randomBytes(32)) })
  await core.ready()

  let done = 0
  let v = 0
  const start = process.hrtime.bigint()
  while (done < records) {
    const n = Math.min(batch, records - done)
    const blocks = pool[v++ % POOL]
    await core.append(n === batch ? blocks : blocks.slice(0, n))
    done += n
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  if (core.length !== records) die('core length ' + core.length + ' after appending ' + records + ' records')

  const closeStart = process.hrtime.bigint()
  await core.close()
  const closeSeconds = Number(process.hrtime.bigint() - closeStart) / 1e9

  process.stdout.write(JSON.stringify({
    blocks: records,
    seconds: Number(seconds.toFixed(3)),
    blocks_per_s: Math.round(records / seconds),
    record_bytes: recordBytes,
    batch,
    close_seconds: Number(closeSeconds.toFixed(3)),
    hypercore: version,
    node: process.version
  }) + '\n')
} finally {
  fs.rmSync(root, { recursive: true, force: true })
}
