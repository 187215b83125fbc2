#!/usr/bin/env node
// hypercore_clone.mjs - the JavaScript peer's clone rate, for comparison with
// kl_clone's: one Node.js process makes a source core of N random blocks of
// B bytes (appended in batches of M, not timed) with the real hypercore
// 11.37.1 and serves it on 127.0.0.1 over TCP (Noise secret stream, the
// accepting side the responder); a second Node.js process (this script
// again, in the client role) opens an empty core of the same key, connects,
// and downloads all N blocks. Each process holds one core, as kl_serve and
// kl_clone do. The client's clock runs from just before it opens its core
// to the moment every block is stored (core.download({start: 0, end: N})
// done and core.contiguousLength === N); it prints its line to the server,
// which prints one JSON line:
//   {"blocks", "seconds", "blocks_per_s", "record_bytes", "batch", "open_seconds",
//    "build_seconds", "close_seconds", "hypercore", "node"}
// open_seconds is the part of seconds spent opening the empty core (its
// RocksDB storage) and connecting; build_seconds is the untimed append of
// the source, close_seconds the client's close after its clock stopped.
//
//   node bench/hypercore_clone.mjs [--blocks 1000000] [--record-bytes 100] [--batch 1000] [--work D]
//
// --work D is made by the script (anything there is removed first) and
// removed at the end: D/source holds the source core, D/replica the copy
// (default: a new directory under $TMPDIR). Neither core syncs per write.
//
// hypercore is loaded as bench/hypercore_append.mjs loads it
// (bench/hypercore_peer.mjs): from NODE_PATH, else from an install of
// tests/js ($KL_BUILD_DIR/hc-js or build/hc-js), e.g.
//   NODE_PATH=build/hc-js/node_modules node bench/hypercore_clone.mjs --blocks 200000

import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { dieWith, intArg, loadHypercore, strArg } from './hypercore_peer.mjs'

const self = fileURLToPath(import.meta.url)
const die = dieWith('hypercore_clone')

const seconds = (from) => Number(process.hrtime.bigint() - from) / 1e9

// Replicate core over a TCP socket: the secret stream runs on the socket itself (no pipe).
function replicateOn (SecretStream, core, socket, isInitiator) {
  const noise = new SecretStream(isInitiator, socket)
  core.replicate(noise)
  return noise
}

// The client role: open an empty core of `key`, download every block from host:port.
async function client (hc, dir, key, blocks, address) {
  const i = address.lastIndexOf(':')
  const host = address.slice(0, i)
  const port = Number(address.slice(i + 1))
  const start = process.hrtime.bigint()
  const core = new hc.Hypercore(dir, Buffer.from(key, 'hex'))
  await core.ready()
  const socket = net.connect({ host, port })
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const stream = replicateOn(hc.SecretStream, core, socket, true)
  const openSeconds = seconds(start)
  const closed = new Promise((resolve, reject) => {
    stream.once('close', () => reject(new Error('the connection closed at ' + core.contiguousLength + ' of ' + blocks + ' blocks')))
    stream.once('error', reject)
  })
  closed.catch(() => {})
  await Promise.race([core.download({ start: 0, end: blocks }).done(), closed])
  const secs = seconds(start)
  if (core.length !== blocks || core.contiguousLength !== blocks) {
    die('after the download: length ' + core.length + ', contiguous ' + core.contiguousLength + ', expected ' + blocks)
  }
  const closeStart = process.hrtime.bigint()
  stream.destroy()
  await core.close()
  process.stdout.write(JSON.stringify({ seconds: secs, open_seconds: openSeconds, close_seconds: seconds(closeStart) }) + '\n')
}

// Run this script in the client role; resolves to its one line, parsed.
function runClient (dir, key, blocks, address) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [self, '--client', address, '--key', key, '--blocks', String(blocks), '--replica', dir], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (code !== 0) return reject(new Error('the client exited with ' + (signal || code)))
      try {
        resolve(JSON.parse(out))
      } catch {
        reject(new Error('the client printed ' + JSON.stringify(out.slice(0, 200))))
      }
    })
  })
}

// The server role: build the source core, serve it, run the client, print the line.
async function server (hc, work, blocks, recordBytes, batch) {
  fs.rmSync(work, { recursive: true, force: true })
  fs.mkdirSync(work, { recursive: true })
  const core = new hc.Hypercore(path.join(work, 'source'))
  await core.ready()
  const buildStart = process.hrtime.bigint()
  for (let done = 0; done < blocks;) {
    const n = Math.min(batch, blocks - done)
    const data = crypto.randomBytes(n * recordBytes)
    const list = []
    for (let k = 0; k < n; k++) list.push(data.subarray(k * recordBytes, (k + 1) * recordBytes))
    await core.append(list)
    done += n
  }
  const buildSeconds = seconds(buildStart)
  if (core.length !== blocks) throw new Error('source core length ' + core.length + ' after appending ' + blocks + ' blocks')

  const sockets = new Set()
  const srv = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    replicateOn(hc.SecretStream, core, socket, false).on('error', () => {})
  })
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const address = '127.0.0.1:' + srv.address().port
  const line = await runClient(path.join(work, 'replica'), core.key.toString('hex'), blocks, address)
  srv.close()
  for (const s of sockets) s.destroy()
  await core.close()
  process.stdout.write(JSON.stringify({
    blocks,
    seconds: Number(line.seconds.toFixed(3)),
    blocks_per_s: Math.round(blocks / line.seconds),
    record_bytes: recordBytes,
    batch,
    open_seconds: Number(line.open_seconds.toFixed(3)),
    build_seconds: Number(buildSeconds.toFixed(3)),
    close_seconds: Number(line.close_seconds.toFixed(3)),
    hypercore: hc.version,
    node: process.version
  }) + '\n')
}

const args = process.argv.slice(2)
if (args.includes('--help')) {
  process.stdout.write('usage: node bench/hypercore_clone.mjs [--blocks N] [--record-bytes B] [--batch M] [--work D]\n')
  process.exit(0)
}
const blocks = intArg(args, '--blocks', 1000000, die)
const hc = loadHypercore(die)
hc.SecretStream = hc.req('@hyperswarm/secret-stream')

const address = strArg(args, '--client', die)
if (address !== null) {
  try {
    await client(hc, strArg(args, '--replica', die), strArg(args, '--key', die), blocks, address)
  } catch (err) {
    die('client: ' + err.message)
  }
  process.exit(0)
}

const workArg = strArg(args, '--work', die)
const work = workArg || fs.mkdtempSync(path.join(os.tmpdir(), 'hypercore-clone-'))
let status = 0
try {
  await server(hc, work, blocks, intArg(args, '--record-bytes', 100, die), intArg(args, '--batch', 1000, die))
} catch (err) {
  process.stderr.write('hypercore_clone: ' + err.message + '\n')
  status = 1
} finally {
  fs.rmSync(work, { recursive: true, force: true })
}
process.exit(status)
