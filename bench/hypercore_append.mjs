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
// hypercore is loaded with require() (bench/hypercore_peer.mjs): from
// NODE_PATH, else from an install of tests/js (tests/js/node_modules,
// $KL_BUILD_DIR/hc-js/node_modules or build/hc-js/node_modules, where
// tests/test_hc_live.sh puts it), e.g.
//   NODE_PATH=build/hc-js/node_modules node bench/hypercore_append.mjs

import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { dieWith, intArg, loadHypercore } from './hypercore_peer.mjs'

const die = dieWith('hypercore_append')

const args = process.argv.slice(2)
if (args.includes('--help')) {
  process.stdout.write('usage: node bench/hypercore_append.mjs [--records N] [--record-bytes B] [--batch M] [--dir D]\n')
  process.exit(0)
}
const records = intArg(args, '--records', 1000000, die)
const recordBytes = intArg(args, '--record-bytes', 100, die)
const batch = intArg(args, '--batch', 1000, die)
const dirArg = args.includes('--dir') ? args[args.indexOf('--dir') + 1] : null

const { Hypercore, version, req } = loadHypercore(die)
const hcrypto = req('hypercore-crypto')

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
