// How fast the window answers a click while a step streams 50,000 lines a second, and
// how much memory WebKit's web process holds over the stream (docs/benchmarks.md,
// issue #14). The plan: a quick step, then one that prints LINES_PER_S lines a second
// for SECONDS seconds. While it streams, the script clicks the two steps' names in
// turn (each click shows that step's log) and times each click from just before the
// WebDriver click is sent to the first frame painted with the other log's heading
// (both clocks are this machine's `Date.now()`; the WebDriver round trip is counted
// in, so the numbers are an upper bound). The same clicks are timed again once the
// run has ended, for comparison. WebKit's memory: the resident set of the app's
// WebKitWebProcess children, sampled once a second.
// Usage: node scripts/bench-click.mjs [seconds] [lines_per_s]
//        (THINKUBE_APP=target/release/thinkube-installer for release numbers)
import { readFileSync, readdirSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { appPid, cli, launch, newWorld, stopDisplay, waitForText, writePlan } from '../tests/e2e/harness.mjs'

const seconds = Number(process.argv[2] ?? 30)
const rate = Number(process.argv[3] ?? 50_000)
if (!(seconds > 0) || !(rate > 0)) throw new Error('usage: bench-click.mjs [seconds] [lines_per_s]')

const STREAM = `
import sys, time
rate, seconds = ${rate}, ${seconds}
burst = rate // 20
start = time.monotonic()
n = 0
for tick in range(seconds * 20):
    sys.stdout.write(''.join('line %08d of the stream, with some text to make it a usual length\\n' % (n + i) for i in range(burst)))
    sys.stdout.flush()
    n += burst
    wait = start + (tick + 1) / 20 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
`

const PLAN = `id: stream
title: A step that streams
phases:
  - id: one
    title: One phase
    steps:
      - id: before
        title: Quick step
        command: ["true"]
      - id: stream
        title: Streaming step
        command: ["python3", "-c", ${JSON.stringify(STREAM)}]
`

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

/** Resident memory (MiB) of the WebKitWebProcess processes descended from `pid`. */
function webProcessMiB(pid) {
  const procs = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      procs.push({ pid: Number(d), ppid, comm })
    } catch {
      // gone meanwhile
    }
  }
  const ours = new Set([pid])
  for (let grew = true; grew;) {
    grew = false
    for (const p of procs) if (!ours.has(p.pid) && ours.has(p.ppid)) { ours.add(p.pid); grew = true }
  }
  let kib = 0
  for (const p of procs) {
    if (!ours.has(p.pid) || !p.comm.startsWith('WebKitWebProc')) continue
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))
      if (m) kib += Number(m[1])
    } catch {
      // gone meanwhile
    }
  }
  return kib / 1024
}

/** Clicks `step`'s name and returns the ms until a frame shows its log's heading. */
async function timedClick(browser, title) {
  const button = await browser.$(`button[aria-label="Show the log of ${title}"]`)
  await browser.execute((expected) => {
    window.__click = null
    const check = () => {
      const h = document.querySelector('[data-testid=log-heading]')
      if (h && h.textContent.includes(`Log of ${expected}`)) {
        // rAF runs before the frame is painted; a task queued from it runs after.
        setTimeout(() => { window.__click = Date.now() }, 0)
      } else {
        requestAnimationFrame(check)
      }
    }
    requestAnimationFrame(check)
  }, title)
  const t0 = Date.now()
  await button.click()
  let painted = null
  while ((painted = await browser.execute(() => window.__click)) === null) await sleep(5)
  return painted - t0
}

const world = newWorld('bench-click')
const plan = writePlan(world, 'stream', { 'plan.yaml': PLAN })
const configured = await cli(world, ['configure', '--target', 'local', '--plan', plan])
if (configured.code !== 0) throw new Error(`configure failed: ${configured.stderr}`)
const { browser, close } = await launch(world, ['--skip-config'])
const streaming = []
const idle = []
const memory = []
try {
  await waitForText(browser, 'h2', 'Deploy')
  const pid = appPid(world)
  memory.push({ at_s: 0, mib: webProcessMiB(pid) })
  const start = await browser.$('button=Start deployment')
  await start.waitForClickable({ timeout: 60_000 })
  await start.click()
  await waitForText(browser, '[data-testid=log-heading]', 'Log of Streaming step', 60_000)
  const began = Date.now()
  let which = 0
  let lastSample = began
  // Leave the stream's last two seconds alone: a click then may land after its end.
  while (Date.now() - began < (seconds - 2) * 1000) {
    streaming.push(await timedClick(browser, which++ % 2 ? 'Streaming step' : 'Quick step'))
    if (Date.now() - lastSample >= 1000) {
      lastSample = Date.now()
      memory.push({ at_s: Math.round((lastSample - began) / 1000), mib: webProcessMiB(pid) })
    }
    await sleep(250)
  }
  await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 120_000)
  memory.push({ at_s: Math.round((Date.now() - began) / 1000), mib: webProcessMiB(pid) })
  for (let i = 0; i < 40; i++) {
    idle.push(await timedClick(browser, i % 2 ? 'Streaming step' : 'Quick step'))
    await sleep(100)
  }
} finally {
  await close()
  await stopDisplay()
}
const mibs = memory.map((m) => m.mib)
console.log(JSON.stringify({
  lines_per_s: rate,
  stream_s: seconds,
  streaming_clicks: streaming.length,
  streaming_ms: { median: pct(streaming, 50), p95: pct(streaming, 95), max: Math.max(...streaming) },
  idle_ms: { median: pct(idle, 50), p95: pct(idle, 95), max: Math.max(...idle) },
  web_process_mib: {
    before_run: +mibs[0].toFixed(0),
    peak: +Math.max(...mibs).toFixed(0),
    end: +mibs[mibs.length - 1].toFixed(0),
    samples: memory.map((m) => `${m.at_s}s:${m.mib.toFixed(0)}`).join(' '),
  },
}))
