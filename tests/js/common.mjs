// common.mjs - what hc_case.mjs and verify_proof.mjs share: loading the pinned
// JavaScript hypercore (from tests/js/node_modules or NODE_PATH), hex, the
// depth of a block under its full root, and the `data` message a JS peer
// sends for a request (the steps of Peer._getProof, ProofRequest.fulfill and
// Peer._fulfillRequest in hypercore/lib/replicator.js, request id 0, the
// core's own fork).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
export const PINNED = '11.37.1'

// A `die(msg, status)` that names the tool.
export function dieAs (tool) {
  return (msg, status = 1) => {
    process.stderr.write(tool + ': ' + msg + '\n')
    process.exit(status)
  }
}

// The packages, or die with what to do.
export function loadHypercore (die) {
  let pk
  try {
    pk = {
      Hypercore: require('hypercore'),
      hcrypto: require('hypercore-crypto'),
      c: require('compact-encoding'),
      m: require('hypercore/lib/messages.js'),
      caps: require('hypercore/lib/caps.js'),
      MerkleTree: require('hypercore/lib/merkle-tree.js').MerkleTree
    }
  } catch (err) {
    die('cannot load the JavaScript hypercore (' + err.message.split('\n')[0] + '): run `npm ci` in a copy of tests/js and point NODE_PATH at its node_modules')
  }
  const version = require('hypercore/package.json').version
  if (version !== PINNED) die('hypercore ' + version + ' is installed, this test pins ' + PINNED)
  return pk
}

export const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex'))

// How many levels block `index` lies below the full root that covers it at `length`.
export function depthUnderRoot (index, length) {
  let start = 0
  for (let d = 52; d >= 0; d--) {
    const size = 2 ** d
    if (length >= start + size) {
      if (index < start + size) return d
      start += size
    }
  }
  throw new Error('index beyond length')
}

// The encoded data message answering { block, upgrade, manifest } (manifest never for compat).
export async function dataMessage (pk, core, { block = null, upgrade = null, manifest = false }) {
  const state = core.core.state
  const req = { id: 0, fork: state.fork, block, hash: null, seek: null, upgrade, manifest, priority: 0 }
  const rx = core.core.storage.read(state.fork)
  const treeProof = pk.MerkleTree.proof(state, rx, req)
  const value = block ? rx.getBlock(block.index) : null
  treeProof.catch(() => {})
  if (value) value.catch(() => {})
  rx.tryFlush()
  const proof = await (await treeProof).settle()
  if (block) {
    proof.block.value = await value
    if (!proof.block.value) throw new Error('block ' + block.index + ' is not stored')
  }
  const man = manifest && !core.core.compat ? core.core.header.manifest : null
  return Buffer.from(pk.c.encode(pk.m.wire.data, { request: 0, fork: state.fork, block: proof.block, hash: proof.hash, seek: proof.seek, upgrade: proof.upgrade, manifest: man }))
}
