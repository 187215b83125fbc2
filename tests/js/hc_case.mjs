#!/usr/bin/env node
// hc_case.mjs - one compatibility case run through the real JavaScript
// hypercore (the version pinned in tests/js/package-lock.json, 11.37.1).
// tests/test_hc_live.sh drives it; kappalog must reach the same state.
//
//   node hc_case.mjs CASE.json
//       CASE.json = {"seed": HEX64, "compat": bool,
//                    "ops": [{"append": [base64 block, ...]}, {"truncate": n}, ...],
//                    "proofs": [request, ...]}          (proofs optional)
//       Builds the core in a temporary directory: key pair = hypercore-crypto
//       keyPair(seed), `compat: true` for a compat core, one core.append() per
//       append op (the op's blocks are one batch), core.truncate(n) per truncate.
//       Prints one JSON line: key, discovery_key, public_key (hex), compat,
//       length, byte_length, fork, tree_hash (hex of the BLAKE2b tree hash of
//       the full roots, what core.treeHash() returns), signature (hex of the
//       stored form core.core.state.signature: 68 bytes multisig for a default
//       core, the raw 64 bytes for a compat one; null before the first signed
//       operation) and, if the case has "proofs", proofs: the hex of the `data`
//       message body (hypercore/lib/messages.js wire.data, request id 0) that a
//       JS peer sends for each request. A request is {"block": {"index", "nodes"}
//       or null, "upgrade": {"start", "length"} or null, "manifest": bool}.
//
//   node hc_case.mjs --generate --base-seed S --index I --out DIR [--run]
//                    [--max-blocks 2000] [--max-size 10000]
//       Makes random case I of the run whose base seed is the string S,
//       reproducibly (every random choice comes from AES-256-CTR keyed with
//       SHA-256("kappalog hc_live case" | S | I)): random 32-byte seed,
//       default or compat (case 0 default, case 1 compat, then random),
//       1..max-blocks blocks in random batches, sizes 0..max-size with some
//       empty blocks, in half the cases one or two truncations mid-way, each
//       followed by more appends. Writes DIR/case.json (the format above,
//       proofs included), DIR/op-K.len32 (the blocks of append op K as len32
//       records: u32 LE length, bytes) and DIR/plan.txt, the steps for the
//       kappalog side, one per line:
//           init SEEDHEX default|compat
//           append op-K.len32 N          (N records, one append call)
//           truncate N
//           proof P ARGS...             (`kappalog proof DIR ARGS...` -> proof P)
//           verify P[,P...]             (a group for verify_proof.mjs)
//       With --run it also runs the case (as above) and prints its JSON line.
//
//   node hc_case.mjs --generate-many --base-seed S --indices I[,I...] --root DIR
//                    [--run] [--max-blocks 2000] [--max-size 10000]
//       The same for several cases in one process (test_hc_live.sh runs one
//       per parallel job): case I goes to DIR/case-I, exactly the files of
//       --generate --index I --out DIR/case-I, and with --run its JSON line
//       to DIR/case-I/js.json instead of stdout. A case that throws gets its
//       error in DIR/case-I/gen.err (and no js.json); the others still run.
//       Exit 0 only if every case was made (and run).
//
//   node hc_case.mjs --compare DIR
//       Compares DIR/js.json (this script's output) with DIR/kl.json
//       (`kappalog info --json`) field by field, and each DIR/proof-P.hex
//       (kappalog's proof) with the JS data message for the same request
//       (compareDir in common.mjs; verify_proof.mjs --cases does the same).
//       Prints one line per difference; exit 0 only if there is none.
//
//   node hc_case.mjs --self-test [VECTORS_DIR]
//       Runs the cases of the golden vectors (tree-abc, tree-sizes,
//       tree-1000, compat, fork .json in VECTORS_DIR, normally
//       tests/data/hypercore) step by step and checks that this script
//       reproduces each recorded state; rebuilds the 11-block core of
//       proofs.json from a case file and checks that its JS data messages
//       equal the recorded ones (request id aside); checks the generator
//       (deterministic, within bounds, truncations, compat, empty blocks).
//
// The packages are loaded with require(), so NODE_PATH may point at a
// node_modules installed elsewhere (test_hc_live.sh installs tests/js with
// npm ci into $KL_BUILD_DIR/hc-js). Exit status: 0 ok, 1 failure, 2 usage.

import { HEX_FIELDS, NUM_FIELDS, compareDir, dataMessage, depthUnderRoot, dieAs, hex, loadHypercore, proofArgs } from './common.mjs'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const die = dieAs('hc_case')

let Hypercore, hcrypto, c, m, caps, MerkleTree, pk
function loadPackages () {
  pk = loadHypercore(die)
  ;({ Hypercore, hcrypto, c, m, caps, MerkleTree } = pk)
}

// ------------------------------------------------------------ running a case

function normalRequest (r) {
  return {
    id: 0,
    fork: 0,
    block: r.block ? { index: r.block.index, nodes: r.block.nodes || 0 } : null,
    hash: null,
    seek: null,
    upgrade: r.upgrade ? { start: r.upgrade.start, length: r.upgrade.length } : null,
    manifest: !!r.manifest,
    priority: 0
  }
}

// The data message a JS peer answers request r with (common.mjs).
async function jsDataMessage (core, r) {
  const req = normalRequest(r)
  return hex(await dataMessage(pk, core, { block: req.block, upgrade: req.upgrade, manifest: req.manifest }))
}

// The stored signature, checked against the signable we believe in, so a
// wrong idea of which field holds it stops the run instead of passing.
function checkSignature (core, treeHash) {
  const st = core.core.state
  if (!st.signature) return
  const stored = Buffer.from(st.signature)
  let raw = stored
  if (!core.core.compat) {
    const ms = c.decode(m.multiSignature, stored)
    if (ms.proofs.length !== 1 || ms.patch.length !== 0) throw new Error('unexpected multisig shape')
    raw = Buffer.from(ms.proofs[0].signature)
  }
  const signable = core.core.compat
    ? caps.treeSignableCompat(treeHash, st.length, st.fork, false)
    : caps.treeSignable(core.key, treeHash, st.length, st.fork)
  if (!hcrypto.verify(signable, raw, core.core.header.manifest.signers[0].publicKey)) {
    throw new Error('the stored signature does not verify over the tree signable')
  }
}

async function coreState (core) {
  const st = core.core.state
  const treeHash = Buffer.from(await core.treeHash())
  if (!treeHash.equals(Buffer.from(hcrypto.tree(st.roots)))) throw new Error('core.treeHash() disagrees with the state roots')
  checkSignature(core, treeHash)
  return {
    key: hex(core.key),
    discovery_key: hex(core.discoveryKey),
    public_key: hex(core.core.header.manifest.signers[0].publicKey),
    compat: !!core.core.compat,
    length: st.length,
    byte_length: st.byteLength,
    fork: st.fork,
    tree_hash: hex(treeHash),
    signature: st.signature ? hex(st.signature) : null
  }
}

// ops: [{append: [Buffer...]}, {truncate: n}]; returns the state after each
// op when `every` is set, else the final state (plus proofs).
async function runCase ({ seed, compat, ops, proofs = [] }, { every = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hc-case-'))
  let core = null
  try {
    const keyPair = hcrypto.keyPair(seed)
    core = new Hypercore(dir, compat ? { keyPair, compat: true } : { keyPair })
    await core.ready()
    if (!!core.core.compat !== !!compat) throw new Error('compat option not honoured')
    const states = []
    for (const op of ops) {
      if (op.append) await core.append(op.append)
      else if (op.truncate !== undefined) await core.truncate(op.truncate)
      else throw new Error('unknown op ' + JSON.stringify(Object.keys(op)))
      if (every) states.push(await coreState(core))
    }
    if (every) return states
    const out = await coreState(core)
    if (proofs.length) {
      out.proofs = []
      for (const r of proofs) out.proofs.push(await jsDataMessage(core, r))
    }
    return out
  } finally {
    if (core) await core.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

function parseCaseFile (file) {
  let j
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    die('cannot read case ' + file + ': ' + err.message)
  }
  if (typeof j.seed !== 'string' || !/^[0-9a-f]{64}$/i.test(j.seed)) die(file + ': seed must be 64 hex digits')
  if (!Array.isArray(j.ops)) die(file + ': ops must be a list')
  const ops = j.ops.map((op) => {
    if (Array.isArray(op.append)) return { append: op.append.map((b) => Buffer.from(b, 'base64')) }
    if (Number.isSafeInteger(op.truncate) && op.truncate >= 0) return { truncate: op.truncate }
    die(file + ': bad op ' + JSON.stringify(op).slice(0, 80))
  })
  return { seed: Buffer.from(j.seed, 'hex'), compat: j.compat === true, ops, proofs: j.proofs || [] }
}

// ------------------------------------------------------------ random cases

class Rand {
  constructor (key) {
    this.cipher = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  }

  bytes (n) {
    return this.cipher.update(Buffer.alloc(n))
  }

  below (n) { // uniform enough in 0..n-1 for n far below 2^32
    return Math.floor((this.bytes(4).readUInt32LE(0) / 4294967296) * n)
  }

  int (lo, hi) {
    return lo + this.below(hi - lo + 1)
  }

  chance (p) {
    return this.bytes(4).readUInt32LE(0) < p * 4294967296
  }

  // n split into `parts` positive integers (in order)
  split (n, parts) {
    const cuts = Array.from({ length: n - 1 }, (_, i) => i + 1)
    for (let i = 0; i < parts - 1; i++) {
      const j = i + this.below(cuts.length - i)
      const t = cuts[i]
      cuts[i] = cuts[j]
      cuts[j] = t
    }
    const chosen = cuts.slice(0, parts - 1).sort((a, b) => a - b)
    const out = []
    let prev = 0
    for (const x of chosen.concat([n])) {
      out.push(x - prev)
      prev = x
    }
    return out
  }
}

// Depth below its full root of leaf `index` in a tree of `length` blocks:
// the `nodes` a requester holding only the roots asks for (README 7.3).

function generate ({ baseSeed, index, maxBlocks, maxSize }) {
  const idx = Buffer.alloc(4)
  idx.writeUInt32LE(index)
  const key = crypto.createHash('sha256').update('kappalog hc_live case').update('|').update(baseSeed).update('|').update(idx).digest()
  const rnd = new Rand(key)

  const seed = rnd.bytes(32)
  const compatBit = rnd.chance(0.5)
  const compat = index === 0 ? false : index === 1 ? true : compatBit
  const total = rnd.chance(0.2) ? rnd.int(1, Math.min(16, maxBlocks)) : rnd.int(1, maxBlocks)
  const truncations = total >= 2 && rnd.chance(0.5) ? rnd.int(1, Math.min(2, total - 1)) : 0
  const segments = rnd.split(total, truncations + 1)

  const ops = []
  let length = 0
  segments.forEach((segLen, s) => {
    let nb = rnd.int(1, Math.min(segLen, 6))
    if (segLen <= 8 && rnd.chance(0.3)) nb = segLen
    for (const count of rnd.split(segLen, nb)) {
      const sizes = []
      for (let i = 0; i < count; i++) {
        const r = rnd.below(100)
        sizes.push(r < 10 ? 0 : r < 25 ? rnd.int(1, Math.min(64, maxSize)) : rnd.int(0, maxSize))
      }
      const data = rnd.bytes(sizes.reduce((a, b) => a + b, 0))
      const blocks = []
      let off = 0
      for (const sz of sizes) {
        blocks.push(data.subarray(off, off + sz))
        off += sz
      }
      ops.push({ append: blocks })
      length += count
    }
    if (s < segments.length - 1) {
      const to = rnd.chance(0.2) ? 0 : rnd.int(0, length - 1)
      ops.push({ truncate: to })
      length = to
    }
  })

  // Proof requests against the final state (length >= 1: the last op appends).
  const L = length
  const manifest = !compat
  const proofs = [
    { block: null, upgrade: { start: 0, length: L }, manifest },
    { block: { index: rnd.below(L), nodes: 0 }, upgrade: { start: 0, length: L }, manifest }
  ]
  const groups = [[0], [1]]
  if (L >= 2) {
    const S = rnd.int(1, L - 1)
    proofs.push({ block: { index: rnd.below(S), nodes: 0 }, upgrade: { start: 0, length: S }, manifest })
    groups.push([proofs.length - 1])
  }
  const J = rnd.below(L)
  proofs.push({ block: { index: J, nodes: depthUnderRoot(J, L) }, upgrade: null, manifest: false })
  groups.push([0, proofs.length - 1])
  return { seed, compat, ops, proofs, groups, length: L }
}

function writeCase (dir, g) {
  fs.mkdirSync(dir, { recursive: true })
  const plan = ['init ' + hex(g.seed) + ' ' + (g.compat ? 'compat' : 'default')]
  const jsonOps = []
  g.ops.forEach((op, k) => {
    if (op.append) {
      const name = 'op-' + k + '.len32'
      const parts = []
      for (const b of op.append) {
        const len = Buffer.alloc(4)
        len.writeUInt32LE(b.byteLength)
        parts.push(len, b)
      }
      fs.writeFileSync(path.join(dir, name), Buffer.concat(parts))
      plan.push('append ' + name + ' ' + op.append.length)
      jsonOps.push({ append: op.append.map((b) => Buffer.from(b).toString('base64')) })
    } else {
      plan.push('truncate ' + op.truncate)
      jsonOps.push({ truncate: op.truncate })
    }
  })
  g.proofs.forEach((r, p) => plan.push('proof ' + p + ' ' + proofArgs(r)))
  for (const grp of g.groups) plan.push('verify ' + grp.join(','))
  fs.writeFileSync(path.join(dir, 'plan.txt'), plan.join('\n') + '\n')
  fs.writeFileSync(path.join(dir, 'case.json'), JSON.stringify({ seed: hex(g.seed), compat: g.compat, ops: jsonOps, proofs: g.proofs }) + '\n')
}

// Makes case `index` into directory `out` (writeCase); with `run` also runs
// it and returns its JSON line, else returns null.
async function generateCase ({ baseSeed, index, maxBlocks, maxSize, out, run }) {
  const g = generate({ baseSeed, index, maxBlocks, maxSize })
  writeCase(out, g)
  return run ? JSON.stringify(await runCase(g)) + '\n' : null
}

// ------------------------------------------------------------ self-test

function blockOf (d) {
  if (d.hex !== undefined) return Buffer.from(d.hex, 'hex')
  const { length, offset } = d.rule.pattern
  const b = Buffer.alloc(length)
  for (let j = 0; j < length; j++) b[j] = (j + offset) % 251
  return b
}

function parseStepOp (op) {
  let mm = /^truncate\((\d+)\)$/.exec(op)
  if (mm) return { truncate: Number(mm[1]) }
  mm = /^append (.*)$/.exec(op)
  if (mm) return { append: mm[1].split(',').map((s) => Buffer.from(s)) }
  throw new Error('unknown vector op ' + op)
}

async function selfTest (vdir) {
  let checks = 0
  const fails = []
  const same = (what, got, want) => {
    checks++
    for (const f of NUM_FIELDS.concat(HEX_FIELDS)) {
      if (want[f] !== undefined && got[f] !== want[f]) fails.push(what + ': ' + f + ' ' + JSON.stringify(got[f]) + ' != vector ' + JSON.stringify(want[f]))
    }
  }
  const load = (f) => JSON.parse(fs.readFileSync(path.join(vdir, f), 'utf8'))
  const ident = (v) => ({ key: v.key, discovery_key: v.discovery_key, public_key: v.public_key })

  // one block per append
  for (const [file, compat] of [['tree-abc.json', false], ['tree-sizes.json', false], ['compat.json', true]]) {
    const v = load(file)
    const ops = v.blocks.map((d) => ({ append: [blockOf(d)] }))
    const states = await runCase({ seed: Buffer.from(v.seed, 'hex'), compat, ops }, { every: true })
    states.forEach((s, i) => same(file + ' after block ' + i, s, { ...v.states[i], ...ident(v) }))
  }
  { // batches ending at the checkpoints
    const v = load('tree-1000.json')
    const ops = []
    let done = 0
    for (const st of v.states) {
      const batch = []
      for (let i = done; i < st.length; i++) {
        const b = Buffer.alloc(i % 61)
        for (let j = 0; j < b.length; j++) b[j] = (i + j) % 251
        batch.push(b)
      }
      ops.push({ append: batch })
      done = st.length
    }
    const states = await runCase({ seed: Buffer.from(v.seed, 'hex'), compat: false, ops }, { every: true })
    states.forEach((s, i) => same('tree-1000.json at ' + v.states[i].length, s, { ...v.states[i], ...ident(v) }))
  }
  { // appends and truncations, fork ids
    const v = load('fork.json')
    const ops = v.steps.map((s) => parseStepOp(s.op))
    const states = await runCase({ seed: Buffer.from(v.seed, 'hex'), compat: false, ops }, { every: true })
    states.forEach((s, i) => same('fork.json step ' + i + ' (' + v.steps[i].op + ')', s, { ...v.steps[i].state, ...ident(v) }))
  }
  { // the case file round trip and proofs equal the recorded JS data messages
    const v = load('proofs.json')
    const blocks = v.blocks.map(blockOf)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hc-case-self-'))
    try {
      const wanted = v.cases.filter((k) => k.sender_length === 11 && !k.request.hash)
      const file = path.join(dir, 'case.json')
      fs.writeFileSync(file, JSON.stringify({
        seed: v.seed,
        compat: false,
        ops: [{ append: blocks.slice(0, 4).map((b) => b.toString('base64')) }, { append: blocks.slice(4).map((b) => b.toString('base64')) }],
        proofs: wanted.map((k) => ({ block: k.request.block, upgrade: k.request.upgrade, manifest: k.request.manifest }))
      }))
      const out = await runCase(parseCaseFile(file))
      same('proofs.json final state', out, { ...v.final_state, ...ident(v) })
      wanted.forEach((k, i) => {
        checks++
        // the vector's request ids are not 0: compare after the leading flags and id
        const strip = (h) => {
          const b = Buffer.from(h, 'hex')
          const st = { start: 0, end: b.length, buffer: b }
          c.uint.decode(st)
          c.uint.decode(st)
          return b.subarray(st.start).toString('hex')
        }
        if (strip(out.proofs[i]) !== strip(k.data_bytes) || out.proofs[i].slice(0, 2) !== k.data_bytes.slice(0, 2)) fails.push('proofs.json "' + k.name + '": JS data message differs from the vector')
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  { // the generator: deterministic, within bounds, truncations and compat appear
    const a = generate({ baseSeed: 'self-test', index: 7, maxBlocks: 300, maxSize: 500 })
    const b = generate({ baseSeed: 'self-test', index: 7, maxBlocks: 300, maxSize: 500 })
    checks++
    if (JSON.stringify(a.ops.map((o) => o.truncate ?? o.append.map(hex))) !== JSON.stringify(b.ops.map((o) => o.truncate ?? o.append.map(hex)))) fails.push('generator is not deterministic')
    let truncs = 0
    let compats = 0
    let empties = 0
    for (let i = 0; i < 40; i++) {
      const g = generate({ baseSeed: 'self-test', index: i, maxBlocks: 2000, maxSize: 10000 })
      const appended = g.ops.reduce((n, o) => n + (o.append ? o.append.length : 0), 0)
      checks++
      if (appended < 1 || appended > 2000) fails.push('case ' + i + ': ' + appended + ' blocks')
      if (!g.ops[g.ops.length - 1].append) fails.push('case ' + i + ' does not end with an append')
      truncs += g.ops.filter((o) => o.truncate !== undefined).length
      compats += g.compat ? 1 : 0
      for (const o of g.ops) if (o.append) for (const blk of o.append) if (blk.byteLength > 10000) fails.push('case ' + i + ': block of ' + blk.byteLength + ' bytes'); else if (blk.byteLength === 0) empties++
    }
    checks++
    if (!truncs || !compats || compats === 40 || !empties) fails.push('generator: ' + truncs + ' truncations, ' + compats + ' compat cores, ' + empties + ' empty blocks in 40 cases')
  }
  return { checks, fails }
}

// ------------------------------------------------------------ command line

function option (args, name, fallback) {
  const i = args.indexOf(name)
  if (i < 0) return fallback
  if (i + 1 >= args.length) die(name + ' needs a value', 2)
  return args[i + 1]
}

function intOption (args, name, fallback) {
  const v = option(args, name, null)
  if (v === null) return fallback
  if (!/^\d+$/.test(v)) die(name + ' must be a non-negative integer', 2)
  return Number(v)
}

async function main () {
  const args = process.argv.slice(2)
  if (!args.length || args.includes('--help')) {
    process.stdout.write('usage: node hc_case.mjs CASE.json\n' +
      '       node hc_case.mjs --generate --base-seed S --index I --out DIR [--run] [--max-blocks N] [--max-size N]\n' +
      '       node hc_case.mjs --generate-many --base-seed S --indices I[,I...] --root DIR [--run] [--max-blocks N] [--max-size N]\n' +
      '       node hc_case.mjs --compare DIR\n' +
      '       node hc_case.mjs --self-test [VECTORS_DIR]\n')
    process.exit(args.length ? 0 : 2)
  }
  if (args[0] === '--compare') {
    if (!args[1]) die('--compare needs a directory', 2)
    loadPackages()
    const diffs = compareDir(pk, args[1])
    for (const d of diffs) process.stdout.write('MISMATCH ' + d + '\n')
    process.exit(diffs.length ? 1 : 0)
  }
  loadPackages()
  if (args[0] === '--self-test') {
    const vdir = args[1] || path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'data', 'hypercore')
    if (!fs.existsSync(path.join(vdir, 'fork.json'))) die('no golden vectors in ' + vdir)
    const { checks, fails } = await selfTest(vdir)
    for (const f of fails) process.stdout.write('FAIL ' + f + '\n')
    process.stdout.write('hc_case self-test: ' + checks + ' checks, ' + fails.length + ' failures\n')
    process.exit(fails.length ? 1 : 0)
  }
  if (args[0] === '--generate' || args[0] === '--generate-many') {
    const many = args[0] === '--generate-many'
    const baseSeed = option(args, '--base-seed', null)
    const maxBlocks = intOption(args, '--max-blocks', 2000)
    const maxSize = intOption(args, '--max-size', 10000)
    if (maxBlocks < 1) die('--max-blocks must be at least 1', 2)
    const run = args.includes('--run')
    if (!many) {
      const index = intOption(args, '--index', null)
      const out = option(args, '--out', null)
      if (baseSeed === null || index === null || out === null) die('--generate needs --base-seed, --index and --out', 2)
      const line = await generateCase({ baseSeed, index, maxBlocks, maxSize, out, run })
      if (line !== null) process.stdout.write(line)
      return
    }
    const indices = option(args, '--indices', null)
    const root = option(args, '--root', null)
    if (baseSeed === null || indices === null || root === null) die('--generate-many needs --base-seed, --indices and --root', 2)
    if (!/^\d+(,\d+)*$/.test(indices)) die('--indices must be case indices joined with commas', 2)
    let failed = 0
    for (const index of indices.split(',').map(Number)) {
      const out = path.join(root, 'case-' + index)
      try {
        const line = await generateCase({ baseSeed, index, maxBlocks, maxSize, out, run })
        if (line !== null) fs.writeFileSync(path.join(out, 'js.json'), line)
      } catch (err) {
        // this case fails alone; the others still run
        failed++
        const msg = 'hc_case: ' + ((err && err.stack) || String(err)) + '\n'
        try {
          fs.mkdirSync(out, { recursive: true })
          fs.writeFileSync(path.join(out, 'gen.err'), msg)
        } catch {
          process.stderr.write('case ' + index + ': ' + msg)
        }
      }
    }
    process.exitCode = failed ? 1 : 0
    return
  }
  if (args.length !== 1 || args[0].startsWith('--')) die('unknown arguments: ' + args.join(' '), 2)
  process.stdout.write(JSON.stringify(await runCase(parseCaseFile(args[0]))) + '\n')
}

main().catch((err) => die((err && err.stack) || String(err)))
