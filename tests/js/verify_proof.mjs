#!/usr/bin/env node
// verify_proof.mjs - checks hypercore `data` messages (proofs) with the real
// JavaScript hypercore's own verification code (the version pinned in
// tests/js/package-lock.json, 11.37.1). tests/test_hc_live.sh feeds it the
// proofs kappalog prints (`kappalog proof`).
//
//   node verify_proof.mjs [--compat] [--tamper] [--expect STATE.json] KEYHEX PROOF...
//
//   KEYHEX   the core key (64 hex digits).
//   PROOF    hex of one data message body: exactly what hypercore's
//            lib/messages.js wire.data encodes (flags, request, fork, block,
//            hash, seek, upgrade, manifest). Several joined with commas form a
//            group, fed in order to the same core (e.g. an upgrade, then a
//            block proof with `nodes` counting on the roots it brought).
//            @FILE instead of the hex reads the hex from FILE.
//   --compat  the core is a compat core: the key is the signer's public key
//            and a proof must not carry a manifest (a JS peer never sends one).
//   --tamper  for each group also build altered copies of its last proof (one
//            hex digit flipped in: a Merkle node hash, the signature, the block
//            value, the manifest's public key - those present) and require
//            hypercore to reject every one.
//   --expect STATE.json  the JSON line of hc_case.mjs: after each group the
//            verifier must be at that length, byte_length, fork, tree_hash
//            and signature.
//
//   node verify_proof.mjs --cases DIR...
//            test_hc_live.sh's check of its case directories, one Node
//            process for many cases. For each DIR (hc_case.mjs --generate
//            files with js.json, kappalog's kl.json and proof-P.hex): the
//            comparison of `hc_case.mjs --compare DIR` (MISMATCH lines), then
//            the checks of `verify_proof.mjs [--compat] --tamper --expect
//            DIR/js.json KEY GROUP...`, compat from the third word of
//            plan.txt's init line, KEY the key of js.json, the groups its
//            `verify P[,P...]` lines (proofs DIR/proof-P.hex). The case's
//            lines and its own count go to DIR/verify.log, PASS or FAIL to
//            DIR/verify.status; a missing or unreadable file is a FAIL. Prints
//            "DIR: PASS|FAIL" per case; exit 0 only if every case passed.
//
//   node verify_proof.mjs --self-test [VECTORS_DIR]
//            checks this script itself: proofs made by hypercore's own proof
//            code (the steps of Peer._getProof in lib/replicator.js) for
//            default, compat and truncated cores, and the recorded cases of
//            VECTORS_DIR/proofs.json (normally tests/data/hypercore), must
//            verify; tampered, truncated, padded, wrong-key, manifest-less and
//            too-few-nodes proofs must be rejected.
//
// How a group is verified, as a JS downloader does it: each group gets a
// fresh read-only core, new Hypercore(tmpdir, key) (no manifest: it has to
// come with the proof, or for compat be rebuilt from the key). Each proof is
// decoded with messages.js wire.data (it must decode with no bytes left over
// and re-encode to the same bytes: the encoding must be canonical), then
// handed to hypercore the way lib/replicator.js Peer._handleData does it for
// a matching request: data.fork equal to the core's fork -> core.core.verify
// (MerkleTree.verify, manifest and signature check, commit); data.fork
// greater (a truncated sender) -> core.core.verifyReorg (MerkleTree.reorg +
// signature check) and, when that proof is complete, core.core.reorg. A
// proof is accepted only if hypercore returns success; any exception or false
// is a rejection, printed with hypercore's reason. (Request ids are not
// matched: the replicator only uses them to pair data with its requests.)
//
// Prints one line per check ("ok ..." or "FAIL ..."); exit 0 only if every
// check passed, 1 otherwise, 2 for bad arguments (--cases: see above).

import { compareDir, dataMessage, depthUnderRoot, dieAs, hex, loadHypercore } from './common.mjs'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const die = dieAs('verify_proof')

let Hypercore, hcrypto, c, m, MerkleTree, pk
function loadPackages () {
  pk = loadHypercore(die)
  ;({ Hypercore, hcrypto, c, m, MerkleTree } = pk)
}

let tmpRoot = null
let tmpCount = 0
function freshDir () {
  if (tmpRoot === null) tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hc-verify-'))
  const d = path.join(tmpRoot, String(tmpCount++))
  fs.mkdirSync(d)
  return d
}

// Removes the verifier cores' directories (every core in them is closed).
function clearTmp () {
  if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true })
  tmpRoot = null
}

// ------------------------------------------------------------ verification

class Rejected extends Error {}

function decodeData (buf) {
  const state = { start: 0, end: buf.byteLength, buffer: buf }
  let data
  try {
    data = m.wire.data.decode(state)
  } catch (err) {
    throw new Rejected('does not decode as a data message: ' + err.message)
  }
  if (state.start !== state.end) throw new Rejected((state.end - state.start) + ' bytes left over after the data message')
  const again = Buffer.from(c.encode(m.wire.data, data))
  if (!again.equals(buf)) throw new Rejected('not the canonical encoding (re-encoding gives ' + again.toString('hex').slice(0, 120) + '...)')
  return data
}

// One proof into `core` the way the replicator does for a matching request.
async function feed (core, data, compat) {
  if (compat && data.manifest) throw new Rejected('a compat core\'s proof carries a manifest (a JS peer never sends one)')
  const st = core.core.state
  let ok
  try {
    if (data.fork === st.fork) {
      ok = await core.core.verify(data, null)
    } else if (data.fork > st.fork) {
      if (!data.upgrade) throw new Rejected('fork ' + data.fork + ' is newer than the verifier\'s ' + st.fork + ' but the proof has no upgrade')
      const batch = await core.core.verifyReorg(data)
      if (!batch.finished) throw new Rejected('the fork ' + data.fork + ' proof does not settle the truncation by itself')
      ok = await core.core.reorg(batch)
    } else {
      throw new Rejected('proof for fork ' + data.fork + ', older than the verifier\'s fork ' + st.fork)
    }
  } catch (err) {
    if (err instanceof Rejected) throw err
    throw new Rejected('hypercore: ' + (err.message || String(err)).split('\n')[0])
  }
  if (ok !== true) throw new Rejected('hypercore refused it (verify returned ' + ok + ')')
}

async function stateOf (core) {
  const st = core.core.state
  return {
    length: st.length,
    byte_length: st.byteLength,
    fork: st.fork,
    tree_hash: hex(hcrypto.tree(st.roots)),
    signature: st.signature ? hex(st.signature) : null,
    compat: !!core.core.compat
  }
}

// Feeds the proofs (Buffers) in order to a fresh core. Returns the final state; throws Rejected.
async function verifyGroup (key, proofs, { compat = false, expect = null } = {}) {
  const core = new Hypercore(freshDir(), key)
  try {
    await core.ready()
    for (let i = 0; i < proofs.length; i++) {
      let data
      try {
        data = decodeData(proofs[i])
        await feed(core, data, compat)
      } catch (err) {
        if (proofs.length > 1 && err instanceof Rejected) err.message = 'proof ' + (i + 1) + ' of ' + proofs.length + ': ' + err.message
        throw err
      }
    }
    const state = await stateOf(core)
    if (state.compat !== compat) throw new Rejected('the verifier took the core as ' + (state.compat ? 'compat' : 'default') + ', expected ' + (compat ? 'compat' : 'default'))
    if (expect) {
      for (const f of ['length', 'byte_length', 'fork', 'tree_hash', 'signature']) {
        if (expect[f] !== undefined && state[f] !== expect[f]) throw new Rejected('verified, but the verifier ends with ' + f + ' ' + JSON.stringify(state[f]) + ' where the JS core has ' + JSON.stringify(expect[f]))
      }
    }
    return state
  } finally {
    await core.close()
  }
}

// Altered copies of one proof: [{what, buf}], one hex digit flipped in each.
function tamperedCopies (buf) {
  const data = decodeData(buf)
  const out = []
  const flip = (offset, what) => {
    const b = Buffer.from(buf)
    b[offset] ^= 0x01 // changes the low hex digit of that byte only
    out.push({ what, buf: b })
  }
  const nodes = []
  if (data.block) for (const n of data.block.nodes) nodes.push(['block node', n])
  if (data.hash) for (const n of data.hash.nodes) nodes.push(['hash node', n])
  if (data.upgrade) for (const n of data.upgrade.nodes) nodes.push(['upgrade node', n])
  if (data.upgrade) for (const n of data.upgrade.additionalNodes) nodes.push(['additional node', n])
  const picks = nodes.length ? [nodes[0], nodes[nodes.length - 1]] : []
  if (picks.length === 2 && picks[0][1] === picks[1][1]) picks.pop()
  for (const [kind, n] of picks) {
    const at = buf.indexOf(Buffer.from(n.hash))
    if (at >= 0) flip(at + 7, kind + ' ' + n.index + ' hash')
  }
  if (data.upgrade) {
    const sig = Buffer.from(data.upgrade.signature)
    const at = buf.indexOf(sig)
    if (at >= 0) flip(at + sig.byteLength - 20, 'signature')
  }
  if (data.block && data.block.value.byteLength > 0) {
    // the value follows flags, request, fork, block index and its length prefix
    const st = { start: 0, end: buf.byteLength, buffer: buf }
    for (let i = 0; i < 5; i++) c.uint.decode(st)
    flip(st.start + Math.floor(data.block.value.byteLength / 2), 'block ' + data.block.index + ' value')
  }
  if (data.manifest) {
    const pk = Buffer.from(data.manifest.signers[0].publicKey)
    const at = buf.lastIndexOf(pk)
    if (at >= 0) flip(at + 3, 'manifest public key')
  }
  return out
}

// ------------------------------------------------------------ reporting

// Where the check lines go and how many checks passed and failed: stdout and
// one count for the whole run, except under --cases, where each case
// directory gets its own while it is checked (one case at a time).
const newTally = (write) => ({ write, passes: 0, failures: 0 })
const stdoutTally = newTally((line) => process.stdout.write(line))
let tally = stdoutTally

function report (ok, what, detail) {
  if (ok) tally.passes++
  else tally.failures++
  tally.write((ok ? 'ok   ' : 'FAIL ') + what + (detail ? ': ' + detail : '') + '\n')
}

const summary = () => 'verify_proof: ' + tally.passes + ' checks passed, ' + tally.failures + ' failed\n'

const describe = (s) => 'length ' + s.length + ', byte_length ' + s.byte_length + ', fork ' + s.fork + ', tree hash ' + s.tree_hash.slice(0, 16) + '...'

// A group that must verify (and optionally its tampered copies must not).
async function mustVerify (what, key, proofs, opts = {}) {
  let state = null
  try {
    state = await verifyGroup(key, proofs, opts)
    report(true, what, 'verified, ' + describe(state))
  } catch (err) {
    if (!(err instanceof Rejected)) throw err
    report(false, what, 'rejected: ' + err.message)
    return null
  }
  if (opts.tamper) {
    const last = proofs[proofs.length - 1]
    const copies = tamperedCopies(last)
    if (!copies.length) report(true, what + ', tampered', 'nothing to tamper with (no node, signature, value or manifest)')
    for (const t of copies) {
      await mustReject(what + ', ' + t.what + ' altered', key, proofs.slice(0, -1).concat([t.buf]), { compat: opts.compat })
    }
  }
  return state
}

async function mustReject (what, key, proofs, opts = {}) {
  try {
    const state = await verifyGroup(key, proofs, opts)
    report(false, what, 'ACCEPTED, must be rejected (' + describe(state) + ')')
  } catch (err) {
    if (!(err instanceof Rejected)) throw err
    report(true, what, 'rejected (' + err.message + ')')
  }
}

// Groups of proofs, each a list of hex strings or @FILE (read from FILE),
// numbered from 1, fed to fresh cores under key (a Buffer).
async function verifyGroups (key, groups, opts) {
  for (let g = 0; g < groups.length; g++) {
    const parts = groups[g]
    const proofs = []
    let bad = null
    parts.forEach((p, i) => {
      if (p.startsWith('@')) {
        try {
          p = fs.readFileSync(p.slice(1), 'utf8').trim()
        } catch (err) {
          bad = 'cannot read proof ' + (i + 1) + ': ' + err.message
          return
        }
      }
      if (!/^([0-9a-fA-F]{2})+$/.test(p)) bad = 'proof ' + (i + 1) + ' is not an even number of hex digits (' + JSON.stringify(p.slice(0, 40)) + ')'
      proofs.push(Buffer.from(p, 'hex'))
    })
    const what = 'group ' + (g + 1) + ' (' + parts.length + (parts.length > 1 ? ' proofs' : ' proof') + ')'
    if (bad) report(false, what, bad)
    else await mustVerify(what, key, proofs, opts)
  }
}

// ------------------------------------------------------------ case directories

class BadCase extends Error {}

// What a case directory's plan.txt says about verifying: compat (the third
// word of its init line) and the groups (its `verify P[,P...]` lines).
function readPlan (dir) {
  const file = path.join(dir, 'plan.txt')
  let text
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new BadCase('cannot read plan.txt: ' + err.message)
  }
  let compat = null
  const groups = []
  for (const line of text.split('\n')) {
    const w = line.split(' ')
    if (w[0] === 'init') compat = w[2] === 'compat'
    else if (w[0] === 'verify') {
      if (w.length !== 2 || !/^\d+(,\d+)*$/.test(w[1])) throw new BadCase('bad plan.txt line: ' + line)
      groups.push(w[1])
    }
  }
  if (compat === null) throw new BadCase('plan.txt has no init line')
  if (!groups.length) throw new BadCase('plan.txt has no verify lines')
  return { compat, groups }
}

// One case directory of test_hc_live.sh (hc_case.mjs --generate files,
// js.json, kappalog's kl.json and proof-P.hex): what `hc_case.mjs --compare
// DIR` does, then what `verify_proof.mjs [--compat] --tamper --expect
// DIR/js.json KEY GROUP...` does, KEY the key of js.json and each GROUP the
// proofs of a plan `verify` line. The lines go to DIR/verify.log, then PASS
// or FAIL (no difference, no failed check) to DIR/verify.status. Returns
// whether it passed.
async function checkCase (dir) {
  const lines = []
  const write = (line) => lines.push(line)
  tally = newTally(write)
  let ok = false
  try {
    write('+ compare with JS (as hc_case.mjs --compare DIR)\n')
    const diffs = compareDir(pk, dir)
    for (const d of diffs) write('MISMATCH ' + d + '\n')
    const { compat, groups } = readPlan(dir)
    let expect
    try {
      expect = JSON.parse(fs.readFileSync(path.join(dir, 'js.json'), 'utf8'))
    } catch (err) {
      throw new BadCase('cannot read js.json: ' + err.message)
    }
    if (typeof expect.key !== 'string' || !/^[0-9a-fA-F]{64}$/.test(expect.key)) throw new BadCase('js.json has no key of 64 hex digits')
    write('+ verify (as verify_proof.mjs ' + (compat ? '--compat ' : '') + '--tamper --expect js.json KEY ' + groups.join(' ') + ')\n')
    const files = groups.map((g) => g.split(',').map((p) => '@' + path.join(dir, 'proof-' + p + '.hex')))
    await verifyGroups(Buffer.from(expect.key, 'hex'), files, { compat, tamper: true, expect })
    write(summary())
    ok = diffs.length === 0 && tally.failures === 0
  } catch (err) {
    write('FAIL ' + (err instanceof BadCase ? err.message : 'verify_proof: ' + ((err && err.stack) || String(err))) + '\n')
  } finally {
    tally = stdoutTally
    clearTmp()
  }
  fs.writeFileSync(path.join(dir, 'verify.log'), lines.join(''))
  fs.writeFileSync(path.join(dir, 'verify.status'), ok ? 'PASS\n' : 'FAIL\n')
  return ok
}

// ------------------------------------------------------------ self-test

// The data message a JS peer answers `req` with (request id 0, the core's
// fork): the steps of Peer._getProof and ProofRequest.fulfill.
function jsProof (core, ask) {
  return dataMessage(pk, core, ask)
}


async function selfTestCore (name, { seedByte, compat, truncations }) {
  // every choice and every block byte from AES-256-CTR keyed with SHA-256(name)
  const stream = crypto.createCipheriv('aes-256-ctr', crypto.createHash('sha256').update(name).digest(), Buffer.alloc(16))
  const bytes = (n) => stream.update(Buffer.alloc(n))
  const next = (n) => bytes(4).readUInt32LE(0) % n
  const keyPair = hcrypto.keyPair(Buffer.alloc(32, seedByte))
  const core = new Hypercore(freshDir(), compat ? { keyPair, compat: true } : { keyPair })
  await core.ready()
  const appendSome = async (n) => {
    const blocks = []
    for (let i = 0; i < n; i++) blocks.push(next(5) === 0 ? Buffer.alloc(0) : bytes(next(3000)))
    await core.append(blocks)
  }
  await appendSome(150)
  await appendSome(90)
  for (let t = 0; t < truncations; t++) {
    await core.truncate(next(core.length))
    await appendSome(40 + next(60))
  }
  const L = core.length
  const expect = await stateOf(core)
  const key = core.key
  const manifest = !compat
  const opts = { compat, expect, tamper: true }
  const tag = name + ' (L=' + L + ', fork ' + core.fork + ')'
  if (core.fork !== truncations) throw new Error('unexpected fork')

  const up = await jsProof(core, { upgrade: { start: 0, length: L }, manifest })
  await mustVerify(tag + ' upgrade 0:' + L, key, [up], opts)
  const bi = next(L)
  await mustVerify(tag + ' block ' + bi + ' + upgrade 0:' + L, key, [await jsProof(core, { block: { index: bi, nodes: 0 }, upgrade: { start: 0, length: L }, manifest })], opts)
  const last = L - 1
  await mustVerify(tag + ' block ' + last + ' (last) + upgrade 0:' + L, key, [await jsProof(core, { block: { index: last, nodes: 0 }, upgrade: { start: 0, length: L }, manifest })], opts)
  const S = 1 + next(L - 1)
  const bs = next(S)
  await mustVerify(tag + ' block ' + bs + ' + upgrade 0:' + S + ' (additional nodes)', key, [await jsProof(core, { block: { index: bs, nodes: 0 }, upgrade: { start: 0, length: S }, manifest })], opts)
  await mustVerify(tag + ' upgrade 0:1 (additional nodes)', key, [await jsProof(core, { upgrade: { start: 0, length: 1 }, manifest })], opts)
  for (const j of [0, next(L), L - 1]) {
    const k = depthUnderRoot(j, L)
    const bp = await jsProof(core, { block: { index: j, nodes: k } })
    await mustVerify(tag + ' upgrade, then block ' + j + ' nodes ' + k, key, [up, bp], opts)
    if (k > 0) {
      await mustReject(tag + ' upgrade, then block ' + j + ' with nodes ' + (k - 1) + ' (one too few)', key, [up, await jsProof(core, { block: { index: j, nodes: k - 1 } })], { compat })
    }
  }
  await mustReject(tag + ' block proof alone (nothing to check it against)', key, [await jsProof(core, { block: { index: bi, nodes: depthUnderRoot(bi, L) } })], { compat })
  await mustReject(tag + ' upgrade proof with its last byte cut', key, [up.subarray(0, up.byteLength - 1)], { compat })
  await mustReject(tag + ' upgrade proof with a byte appended', key, [Buffer.concat([up, Buffer.from([0])])], { compat })
  const otherKey = compat ? hcrypto.keyPair(Buffer.alloc(32, seedByte + 100)).publicKey : Hypercore.key(hcrypto.keyPair(Buffer.alloc(32, seedByte + 100)).publicKey)
  await mustReject(tag + ' upgrade proof under another core\'s key', otherKey, [up], { compat })
  if (!compat) {
    await mustReject(tag + ' upgrade without the manifest on a fresh verifier', key, [await jsProof(core, { upgrade: { start: 0, length: L }, manifest: false })], { compat })
    await mustReject(tag + ' upgrade proof checked as a compat core', key, [up], { compat: true })
  } else {
    const withManifest = c.decode(m.wire.data, up)
    withManifest.manifest = core.core.header.manifest
    await mustReject(tag + ' upgrade proof carrying a manifest', key, [Buffer.from(c.encode(m.wire.data, withManifest))], { compat })
  }
  await core.close()
}

async function selfTest (vdir) {
  await selfTestCore('default core', { seedByte: 11, compat: false, truncations: 0 })
  await selfTestCore('compat core', { seedByte: 12, compat: true, truncations: 0 })
  await selfTestCore('default core truncated once', { seedByte: 13, compat: false, truncations: 1 })
  await selfTestCore('compat core truncated twice', { seedByte: 14, compat: true, truncations: 2 })

  const file = path.join(vdir, 'proofs.json')
  if (!fs.existsSync(file)) {
    report(false, 'golden proofs', file + ' not found')
    return
  }
  const v = JSON.parse(fs.readFileSync(file, 'utf8'))
  const key = Buffer.from(v.key, 'hex')
  const byName = new Map(v.cases.map((k) => [k.name, Buffer.from(k.data_bytes, 'hex')]))
  const fin = { length: v.final_state.length, byte_length: v.final_state.byte_length, fork: v.final_state.fork, tree_hash: v.final_state.tree_hash, signature: v.final_state.signature }
  let n = 0
  for (const k of v.cases) {
    const data = Buffer.from(k.data_bytes, 'hex')
    const label = 'proofs.json "' + k.name + '"'
    if (k.receiver.startsWith('empty clone')) {
      await mustVerify(label, key, [data], { tamper: true, expect: k.sender_length === 11 ? fin : null })
      n++
    } else if (k.receiver.startsWith('clone at length 11')) {
      await mustVerify(label + ' after "upgrade 0+11 with manifest"', key, [byName.get('upgrade 0+11 with manifest'), data], { tamper: true, expect: fin })
      n++
    } else if (k.receiver.startsWith('clone at length 4')) {
      await mustVerify(label + ' after "upgrade 0+4"', key, [byName.get('upgrade 0+4 (sender at length 4)'), data], { tamper: true, expect: fin })
      n++
    }
  }
  report(n === v.cases.length, 'golden proofs', n + ' of ' + v.cases.length + ' recorded cases run')
}

// ------------------------------------------------------------ command line

async function main () {
  const args = process.argv.slice(2)
  if (!args.length || args.includes('--help')) {
    process.stdout.write('usage: node verify_proof.mjs [--compat] [--tamper] [--expect STATE.json] KEYHEX PROOF[,PROOF...]...   (PROOF: hex or @FILE)\n' +
      '       node verify_proof.mjs --cases DIR...\n' +
      '       node verify_proof.mjs --self-test [VECTORS_DIR]\n')
    process.exit(args.length ? 0 : 2)
  }
  loadPackages()
  if (args[0] === '--cases') {
    const dirs = args.slice(1)
    if (!dirs.length) die('--cases needs at least one directory', 2)
    let passed = 0
    for (const dir of dirs) {
      const ok = await checkCase(dir)
      if (ok) passed++
      process.stdout.write(dir + ': ' + (ok ? 'PASS' : 'FAIL') + '\n')
    }
    process.stdout.write('verify_proof --cases: ' + passed + ' of ' + dirs.length + ' cases passed\n')
    process.exitCode = passed === dirs.length ? 0 : 1
    return
  }
  if (args[0] === '--self-test') {
    const vdir = args[1] || path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'data', 'hypercore')
    await selfTest(vdir)
  } else {
    let compat = false
    let tamper = false
    let expect = null
    const rest = []
    for (let i = 0; i < args.length; i++) {
      const a = args[i]
      if (a === '--compat') compat = true
      else if (a === '--tamper') tamper = true
      else if (a === '--expect') {
        if (i + 1 >= args.length) die('--expect needs a file', 2)
        try {
          expect = JSON.parse(fs.readFileSync(args[++i], 'utf8'))
        } catch (err) {
          die('cannot read ' + args[i] + ': ' + err.message, 2)
        }
      } else if (a.startsWith('--')) die('unknown option ' + a, 2)
      else rest.push(a)
    }
    if (rest.length < 2) die('need KEYHEX and at least one PROOF', 2)
    if (!/^[0-9a-fA-F]{64}$/.test(rest[0])) die('KEYHEX must be 64 hex digits', 2)
    await verifyGroups(Buffer.from(rest[0], 'hex'), rest.slice(1).map((g) => g.split(',')), { compat, tamper, expect })
  }
  process.stdout.write(summary())
  process.exitCode = tally.failures ? 1 : 0
}

try {
  await main()
} catch (err) {
  process.stderr.write('verify_proof: ' + ((err && err.stack) || String(err)) + '\n')
  process.exitCode = 1
} finally {
  clearTmp()
}
