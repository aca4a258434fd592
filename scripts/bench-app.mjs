// Benchmarks of the desktop app under Xvfb (docs/benchmarks.md):
//  - cold start: from the app process's start (kernel start time) to the first frame
//    after the first state was rendered (performance mark 'thinkube:first-state'),
//    each run with a fresh installer home and fresh WebKit storage;
//  - resident memory after a demo deployment: the app process, and with its WebKit
//    helper processes.
// Usage: node scripts/bench-app.mjs [runs]   (THINKUBE_APP=target/release/thinkube-installer)
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import {
  app, configureThisMachine, freePort, launch, newWorld, stopDisplay, waitForText,
} from '../tests/e2e/harness.mjs'

const runs = Number(process.argv[2] ?? 5)
const TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim())
const btime = Number(/btime (\d+)/.exec(readFileSync('/proc/stat', 'utf8'))[1])

function startEpochMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (btime + Number(fields[19]) / TICKS) * 1000
}
function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : 0
}
function children(pid) {
  const out = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(d), ...children(Number(d)))
    } catch {
      // gone
    }
  }
  return out
}
const appPid = (world) => Number(readFileSync(join(world.home, 'app.lock'), 'utf8').trim())
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const starts = []
for (let i = 0; i < runs; i++) {
  const world = newWorld(`bench-start-${i}`)
  const { browser, close } = await launch(world)
  try {
    const mark = await browser.waitUntil(
      () => browser.execute(() => {
        const m = performance.getEntriesByName('thinkube:first-state')[0]
        return m ? performance.timeOrigin + m.startTime : null
      }),
      { timeout: 30_000, interval: 20 },
    )
    starts.push(mark - startEpochMs(appPid(world)))
  } finally {
    await close()
  }
}

const world = newWorld('bench-memory')
const { browser, close } = await launch(world)
let own = 0
let total = 0
try {
  await waitForText(browser, 'main', 'No deployment yet')
  await configureThisMachine(browser, { vars: { demo_port: String(await freePort()) } })
  await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 240_000)
  const pid = appPid(world)
  own = rssKiB(pid)
  total = [pid, ...children(pid)].reduce((sum, p) => sum + rssKiB(p), 0)
} finally {
  await close()
  spawnSync('sh', [join(world.home, 'demo/bin/demo-server.sh'), 'stop', join(world.home, 'demo')])
  stopDisplay()
}

const ms = (x) => `${Math.round(x)} ms`
console.log(`app: ${app}`)
console.log(`| measure | value | target |`)
console.log(`|---|---|---|`)
console.log(`| cold start to first rendered state, median of ${runs} (min ${ms(Math.min(...starts))}, max ${ms(Math.max(...starts))}) | ${ms(median(starts))} | < 1500 ms |`)
console.log(`| resident memory after the demo deployment: the app process | ${(own / 1024).toFixed(0)} MB | < 200 MB |`)
console.log(`| the same with WebKit's web and network processes | ${(total / 1024).toFixed(0)} MB | |`)
