#!/usr/bin/env node
// hypercore_compare.mjs - hypercore 11.37.1 as a peer of `kappalog-bench
// compare` (bench/compare/peer_hypercore.c runs it, one call per mode):
//
//   append   a fresh default core in DIR; one `await core.append(array)` per
//            batch of the pool's records, for SECONDS or CAP bytes
//   visible  a writer core in DIR/writer appends one record every PACE
//            microseconds for SECONDS; a replica (DIR/reader) in a worker
//            thread, replicating over a TCP socket on 127.0.0.1 (no Nagle),
//            downloads live (download({start: 0, end: -1})) and reads with a
//            live createReadStream; latency = seen - append started; one
//            record before the clock (the first request's setup) is not counted
//   load     RECORDS records into a fresh core in DIR (batches of the pool),
//            closed, opened again, CHECKS point reads compared byte for
//            byte, then core.core.audit({dryRun}) timed: every block and
//            tree node hashed again and compared with the stored tree
//   read     DIR opened (not timed), createReadStream over every block
//   get      DIR opened (not timed), `await core.get(i)` of the indexes in
//            IDX (uint64 LE, a power of two of them) for SECONDS
//
//   node bench/hypercore_compare.mjs MODE --dir DIR --pool FILE --record-bytes B
//        --batch M [--seconds S] [--cap-bytes N] [--records N] [--idx FILE]
//        [--checks N] [--pace-us P] [--lat FILE]
//
// The records are the C pool's bytes: FILE holds its variants of M records
// of B bytes back to back (bench/pool.c), read before any clock starts, so
// batch v is variant v mod variants, as in the C peers. Per-op latencies
// (append, get, visible) go to --lat as float64 nanoseconds, little-endian,
// one per op; one JSON line goes to stdout:
//   {"mode", "ops", "records", "bytes", "seconds", ..., "hypercore", "node"}
//
// What a reader would get wrong: `seconds` times the loop only, not starting
// Node, opening or closing the core (those are in *_seconds fields apart).

import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { dieWith, intArg, loadHypercore, strArg } from './hypercore_peer.mjs'

const die = dieWith('hypercore_compare')
const { Hypercore, version, req } = loadHypercore(die)
const b4a = req('b4a')

const now = () => Number(process.hrtime.bigint()) // CLOCK_MONOTONIC: the same in every thread

async function main () {
  const args = process.argv.slice(2)
  const mode = args[0]
  const a = {
    dir: strArg(args, '--dir', die),
    pool: strArg(args, '--pool', die),
    rec: intArg(args, '--record-bytes', 100, die),
    batch: intArg(args, '--batch', 1, die),
    seconds: Number(strArg(args, '--seconds', die) || '1'),
    cap: intArg(args, '--cap-bytes', Number.MAX_SAFE_INTEGER, die),
    records: intArg(args, '--records', 1, die),
    idx: strArg(args, '--idx', die),
    checks: intArg(args, '--checks', 1000, die),
    paceUs: Number(strArg(args, '--pace-us', die) || '1000'),
    lat: strArg(args, '--lat', die)
  }
  if (!a.dir || !a.pool) die('--dir and --pool are needed', 2)
  if (!(a.seconds > 0) || !(a.paceUs > 0)) die('--seconds and --pace-us must be > 0', 2)
  const modes = { append, visible, load, read, get }
  if (!modes[mode]) die('mode must be one of ' + Object.keys(modes).join(', '), 2)
  const pool = readPool(a)
  const line = await modes[mode](a, pool)
  process.stdout.write(JSON.stringify({ mode, ...line, hypercore: version, node: process.version }) + '\n')
  process.exit(0) // the worker and sockets, if any, are done with
}

// The pool's variants, each an array of `batch` records (views of one buffer).
function readPool (a) {
  const bytes = fs.readFileSync(a.pool)
  const per = a.batch * a.rec
  if (bytes.length === 0 || bytes.length % per !== 0) die(a.pool + ': ' + bytes.length + ' bytes, not variants of ' + a.batch + ' x ' + a.rec)
  const variants = []
  for (let off = 0; off < bytes.length; off += per) {
    const blocks = []
    for (let i = 0; i < a.batch; i++) blocks.push(bytes.subarray(off + i * a.rec, off + (i + 1) * a.rec))
    variants.push(blocks)
  }
  return { bytes, variants, records: bytes.length / a.rec }
}

// Latencies (ns) of up to `cap` ops, kept in a growing Float64Array.
class Lat {
  constructor () { this.a = new Float64Array(1 << 16); this.n = 0 }
  add (ns) {
    if (this.n === this.a.length) { const b = new Float64Array(this.a.length * 2); b.set(this.a); this.a = b }
    this.a[this.n++] = ns
  }

  write (file) {
    if (!file) return
    const out = this.a.subarray(0, this.n)
    fs.writeFileSync(file, new Uint8Array(out.buffer, out.byteOffset, out.byteLength))
  }
}

async function timed (fn) {
  const t = now()
  const v = await fn()
  return [v, round((now() - t) / 1e9)]
}

function round (s) { return Number(s.toFixed(6)) }

async function append (a, pool) {
  const core = new Hypercore(a.dir)
  await core.ready()
  const lat = new Lat()
  const per = a.batch * a.rec
  let ops = 0
  const start = now()
  const end = start + a.seconds * 1e9
  let t = start
  while (t < end && ops * per < a.cap) {
    await core.append(pool.variants[ops % pool.variants.length])
    const t1 = now()
    lat.add(t1 - t)
    t = t1
    ops++
  }
  const seconds = (t - start) / 1e9
  if (core.length !== ops * a.batch) die('core length ' + core.length + ' after appending ' + ops * a.batch + ' records')
  const [, closeSeconds] = await timed(() => core.close())
  lat.write(a.lat)
  return { ops, records: ops * a.batch, bytes: ops * per, seconds: round(seconds), close_seconds: closeSeconds }
}

async function load (a, pool) {
  const [, loadSeconds] = await timed(async () => {
    const core = new Hypercore(a.dir)
    await core.ready()
    for (let v = 0; core.length < a.records; v++) {
      const blocks = pool.variants[v % pool.variants.length]
      await core.append(core.length + blocks.length <= a.records ? blocks : blocks.slice(0, a.records - core.length))
    }
    await core.close()
  })
  const core = await open(a)
  if (core.length !== a.records) die('the loaded core has ' + core.length + ' blocks, ' + a.records + ' were appended')
  const idx = readIdx(a)
  for (let j = 0; j < a.checks; j++) {
    const at = idx[j % idx.length]
    const got = await core.get(at)
    const want = pool.bytes.subarray((at % pool.records) * a.rec, (at % pool.records + 1) * a.rec)
    if (!got || !b4a.equals(got, want)) die('core.get(' + at + ') returned other bytes than were appended')
  }
  // hypercore's own check of what it stores (lib/audit.js, not public API): every block's
  // leaf hash and every parent hash recomputed from storage and compared with the tree
  const [stats, auditSeconds] = await timed(() => core.core.audit({ dryRun: true, bitfield: false }))
  if (!stats || stats.corrupt || stats.blocks !== a.records || stats.droppedBlocks || stats.droppedTreeNodes) {
    die('audit of the loaded core: ' + JSON.stringify(stats))
  }
  await core.close()
  return {
    ops: 0,
    records: a.records,
    bytes: a.records * a.rec,
    seconds: 0,
    load_seconds: loadSeconds,
    checked: a.checks,
    audit_seconds: auditSeconds,
    audit_blocks: stats.blocks,
    audit_tree_nodes: stats.treeNodes
  }
}

async function open (a) {
  const core = new Hypercore(a.dir)
  await core.ready()
  return core
}

function readIdx (a) {
  if (!a.idx) die('--idx is needed', 2)
  const b = fs.readFileSync(a.idx)
  const n = b.length / 8
  if (n === 0 || (n & (n - 1)) !== 0) die(a.idx + ': not a power of two of uint64 indexes')
  const out = new Array(n)
  for (let i = 0; i < n; i++) out[i] = Number(b.readBigUInt64LE(i * 8))
  return out
}

async function read (a) {
  const [core, openSeconds] = await timed(() => open(a))
  let records = 0
  let bytes = 0
  let sink = 0
  const start = now()
  for await (const block of core.createReadStream()) {
    records++
    bytes += block.byteLength
    sink += block[block.byteLength - 1]
  }
  const seconds = (now() - start) / 1e9
  if (records !== a.records) die('read ' + records + ' blocks of ' + a.records)
  await core.close()
  return { ops: records, records, bytes, seconds: round(seconds), open_seconds: openSeconds, sink: sink & 0xff }
}

async function get (a) {
  const [core, openSeconds] = await timed(() => open(a))
  const idx = readIdx(a)
  const mask = idx.length - 1
  const lat = new Lat()
  let ops = 0
  let bytes = 0
  const start = now()
  const end = start + a.seconds * 1e9
  let t = start
  while (t < end) {
    const block = await core.get(idx[ops & mask])
    const t1 = now()
    lat.add(t1 - t)
    t = t1
    bytes += block.byteLength
    ops++
  }
  const seconds = (t - start) / 1e9
  await core.close()
  lat.write(a.lat)
  return { ops, records: ops, bytes, seconds: round(seconds), open_seconds: openSeconds }
}

function sleep (ms) { return new Promise(resolve => setTimeout(resolve, ms)) }

// Until now() >= t: timers for the long part, then turns of the event loop (its I/O goes on).
async function until (t) {
  for (;;) {
    const rem = t - now()
    if (rem <= 0) return
    if (rem > 2e6) await sleep(Math.floor((rem - 1e6) / 1e6))
    else await new Promise(resolve => setImmediate(resolve))
  }
}

// One message of the worker, or die after ms.
function message (worker, ms, what) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => die('the reader did not ' + what + ' within ' + ms / 1000 + ' s'), ms)
    worker.once('message', (m) => { clearTimeout(timer); resolve(m) })
  })
}

async function visible (a, pool) {
  if (a.batch !== 1) die('visible appends single records (--batch 1)', 2)
  const core = new Hypercore(path.join(a.dir, 'writer'))
  await core.ready()
  const server = net.createServer({ noDelay: true }, (socket) => socket.pipe(core.replicate(true)).pipe(socket))
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { dir: path.join(a.dir, 'reader'), key: b4a.toString(core.key, 'hex'), port: server.address().port }
  })
  worker.on('error', (err) => die('reader: ' + (err && err.stack ? err.stack.split('\n')[0] : err)))
  const ready = message(worker, 30000, 'connect')
  await ready
  // one record, not timed, so the first timed one does not carry the first request's setup
  const warm = message(worker, 10000, 'see the first record')
  await core.append(pool.variants[0])
  await warm
  const starts = new Lat()
  const pace = a.paceUs * 1e3
  const start = now()
  const end = start + a.seconds * 1e9
  for (let n = 0; ; n++) {
    const due = start + n * pace
    if (due >= end) break
    await until(due)
    starts.add(now())
    await core.append(pool.variants[(n + 1) % pool.variants.length])
  }
  const seconds = (now() - start) / 1e9
  const total = 1 + starts.n
  worker.postMessage({ total })
  const seen = await message(worker, 10000 + a.seconds * 1000, 'see every record')
  if (seen.length !== total) die('the reader saw ' + seen.length + ' of ' + total + ' records')
  const lat = new Lat()
  for (let i = 0; i < starts.n; i++) lat.add(seen[i + 1] - starts.a[i])
  lat.write(a.lat)
  await core.close()
  server.close()
  return {
    ops: starts.n,
    records: starts.n,
    bytes: starts.n * a.rec,
    seconds: round(seconds),
    reader: 'replica in a worker thread, TCP on 127.0.0.1, live createReadStream'
  }
}

// The worker: a replica of the writer's core; posts 'connected', then the
// time each block arrived once the writer has said how many there are.
async function reader ({ dir, key, port }) {
  const clone = new Hypercore(dir, b4a.from(key, 'hex'))
  await clone.ready()
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
  socket.pipe(clone.replicate(false)).pipe(socket)
  await new Promise(resolve => clone.once('peer-add', resolve))
  parentPort.postMessage('connected')
  clone.download({ start: 0, end: -1 }) // a full live replica: blocks are fetched as they come
  const seen = []
  let total = -1
  let first = true
  await new Promise((resolve, reject) => {
    const stream = clone.createReadStream({ live: true })
    const check = () => {
      if (total >= 0 && seen.length >= total) {
        stream.destroy()
        resolve()
      }
    }
    stream.on('data', (block) => {
      seen.push(now())
      if (block.byteLength === 0) reject(new Error('empty block ' + (seen.length - 1)))
      if (first) parentPort.postMessage('first')
      first = false
      check()
    })
    stream.on('error', reject)
    parentPort.on('message', (m) => { total = m.total; check() })
  })
  parentPort.postMessage(seen)
  socket.destroy()
  await clone.close()
}

// Last: the classes above are initialized before either runs.
if (!isMainThread) {
  await reader(workerData)
} else {
  await main()
}
