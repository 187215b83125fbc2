// common.mjs - what hc_case.mjs and verify_proof.mjs share: loading the pinned
// JavaScript hypercore (from tests/js/node_modules or NODE_PATH), hex, the
// depth of a block under its full root, the `data` message a JS peer sends
// for a request (the steps of Peer._getProof, ProofRequest.fulfill and
// Peer._fulfillRequest in hypercore/lib/replicator.js, request id 0, the
// core's own fork), and the comparison of a case directory's kappalog output
// with the JS core (compareDir: `hc_case.mjs --compare DIR` and
// `verify_proof.mjs --cases DIR...`). Functions that need the packages take
// what loadHypercore returned as their first argument.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

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

// The `kappalog proof` arguments for request r (a plan.txt `proof` line).
export function proofArgs (r) {
  const a = []
  if (r.block) {
    a.push('--block', String(r.block.index))
    if (r.block.nodes) a.push('--nodes', String(r.block.nodes))
  }
  if (r.upgrade) a.push('--upgrade', r.upgrade.start + ':' + r.upgrade.length)
  if (r.manifest) a.push('--manifest')
  return a.join(' ')
}

// ------------------------------------------------------------ comparing a case

export const HEX_FIELDS = ['key', 'discovery_key', 'public_key', 'tree_hash', 'signature']
export const NUM_FIELDS = ['length', 'byte_length', 'fork']

// The differences between case directory `dir`'s js.json (hc_case.mjs's JSON
// line) and kl.json (`kappalog info --json`), field by field, and between
// each proof-P.hex (kappalog's proof for request P of case.json) and the JS
// data message for it: one message per difference, none if they agree.
export function compareDir (pk, dir) {
  const read = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))
  const diffs = []
  let js, kl
  try {
    js = read('js.json')
  } catch (err) {
    return ['cannot read js.json: ' + err.message]
  }
  try {
    kl = read('kl.json')
  } catch (err) {
    return ['`kappalog info --json` did not print a JSON object (' + err.message + ')']
  }
  for (const f of NUM_FIELDS) {
    const v = kl[f]
    if (v === undefined) diffs.push(f + ': missing in kappalog info --json')
    else if (typeof v !== 'number' || v !== js[f]) diffs.push(f + ': kappalog ' + JSON.stringify(v) + ', JS ' + js[f])
  }
  for (const f of HEX_FIELDS) {
    const v = kl[f]
    if (v === undefined) diffs.push(f + ': missing in kappalog info --json')
    else if (v !== js[f]) diffs.push(f + ': kappalog ' + JSON.stringify(v) + ', JS ' + JSON.stringify(js[f]))
  }
  const requests = read('case.json').proofs || []
  requests.forEach((r, p) => {
    const file = path.join(dir, 'proof-' + p + '.hex')
    let got = null
    try {
      got = fs.readFileSync(file, 'utf8').trim()
    } catch {
      diffs.push('proof ' + p + ' (' + proofArgs(r) + '): kappalog printed nothing')
      return
    }
    const want = js.proofs[p]
    if (got === want) return
    const n = Math.min(got.length, want.length)
    let i = 0
    while (i < n && got[i] === want[i]) i++
    const from = Math.max(0, i - 64)
    const window = (h) => (from > 0 ? '...' : '') + h.slice(from, i + 136) + (h.length > i + 136 ? '...' : '')
    diffs.push('proof ' + p + ' (' + proofArgs(r) + '): not the bytes a JS peer sends; first difference at hex digit ' +
      i + ' (kappalog ' + got.length + ' digits, JS ' + want.length + ')' + fieldDiff(pk, got, want) +
      '\n  kappalog ' + window(got) + '\n  JS       ' + window(want))
  })
  return diffs
}

// Which fields of the two data messages differ, as " [path: kappalog X, JS Y; ...]".
export function fieldDiff (pk, gotHex, wantHex) {
  const decode = (h) => {
    const b = Buffer.from(h, 'hex')
    const st = { start: 0, end: b.length, buffer: b }
    const d = pk.m.wire.data.decode(st)
    if (st.start !== st.end) d.trailing_bytes = st.end - st.start
    return d
  }
  let got
  try {
    if (!/^([0-9a-f]{2})*$/.test(gotHex)) throw new Error('not lowercase hex bytes')
    got = decode(gotHex)
  } catch (err) {
    return ' [kappalog\'s does not decode: ' + err.message + ']'
  }
  const want = decode(wantHex)
  const out = []
  const show = (v) => (v && v.buffer instanceof ArrayBuffer && v.byteLength !== undefined ? hex(v) : JSON.stringify(v))
  const walk = (a, b, where) => {
    if (out.length >= 6) return
    const leaf = (v) => v === null || typeof v !== 'object' || v.byteLength !== undefined
    if (leaf(a) || leaf(b)) {
      if (show(a) !== show(b)) out.push(where + ': kappalog ' + String(show(a)).slice(0, 80) + ', JS ' + String(show(b)).slice(0, 80))
      return
    }
    for (const k of new Set(Object.keys(a).concat(Object.keys(b)))) walk(a[k], b[k], where ? where + '.' + k : k)
  }
  walk(got, want, '')
  return out.length ? ' [' + out.join('; ') + ']' : ''
}
