// Benchmark of a second launch (docs/benchmarks.md, issue #17): the README's first
// command, `scripts/run-installer`, with nothing changed since the last launch, timed
// from the command's start to the app's window being viewable on the display (polled
// with xwininfo every 20 ms). Each launch is then stopped with SIGTERM and waited for.
//
// Before the measured launches it launches once, unmeasured, in the same installer
// home: that one builds whatever changed and installs ansible-core into the home.
// The installer home and XDG folders are fresh temporary ones; the builds are the
// project's own (ui/dist, target/release).
// Usage: node scripts/bench-launch.mjs [runs]
import { spawn, spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { display, newWorld, stopDisplay, worldEnv } from '../tests/e2e/harness.mjs'

const runs = Number(process.argv[2] ?? 5)
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const TITLE = 'Thinkube Installer'
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms))

/** The id of a viewable top-level window whose name starts with TITLE, or null. */
function viewableWindow(dpy) {
  const tree = spawnSync('xwininfo', ['-display', dpy, '-root', '-tree'], { encoding: 'utf8' }).stdout
  for (const line of tree.split('\n')) {
    const m = /^\s*(0x[0-9a-f]+) "([^"]*)"/.exec(line)
    if (!m || !m[2].startsWith(TITLE)) continue
    const info = spawnSync('xwininfo', ['-display', dpy, '-id', m[1]], { encoding: 'utf8' }).stdout
    if (/Map State: IsViewable/.test(info)) return m[1]
  }
  return null
}

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/** Launches the installer; resolves with the milliseconds until its window is viewable. */
async function launchOnce(world, dpy) {
  const started = performance.now()
  const child = spawn(join(root, 'scripts', 'run-installer'), ['--skip-config'], {
    env: { ...worldEnv(world), DISPLAY: dpy },
    stdio: ['ignore', 'ignore', 'inherit'],
    detached: true,
  })
  let exited = null
  child.once('exit', (code, signal) => (exited = signal ?? code))
  try {
    while (viewableWindow(dpy) === null) {
      if (exited !== null) throw new Error(`scripts/run-installer ended (${exited}) before its window showed`)
      if (performance.now() - started > 900_000) throw new Error('no window after 15 minutes')
      await sleep(20)
    }
    return performance.now() - started
  } finally {
    if (groupAlive(child.pid)) process.kill(-child.pid, 'SIGTERM')
    while (groupAlive(child.pid)) await sleep(20)
  }
}

const dpy = await display()
const world = newWorld('bench-launch')
const times = []
try {
  const first = await launchOnce(world, dpy)
  console.log(`first launch in this home (builds what changed, installs ansible-core): ${Math.round(first)} ms`)
  for (let i = 0; i < runs; i++) times.push(await launchOnce(world, dpy))
} finally {
  await stopDisplay()
}
const sorted = [...times].sort((a, b) => a - b)
const ms = (x) => `${Math.round(x)} ms`
console.log(`| measure | value |`)
console.log(`|---|---|`)
console.log(
  `| second launch, command to viewable window, median of ${runs} (min ${ms(sorted[0])}, max ${ms(sorted.at(-1))}) | ${ms(sorted[Math.floor(runs / 2)])} |`,
)
