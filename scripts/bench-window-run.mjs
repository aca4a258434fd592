// How much the window adds to a run (docs/benchmarks.md, issue #14): the same plan of
// 300 trivial steps deployed headless (`thinkube-installer deploy`, no window) and
// from the window (Start deployment), each in a fresh installer home configured for
// this machine, interleaved run by run. A run's time is its run record's, from start
// to end as the engine wrote them; while the window runs, the script waits on the run
// file (not by asking the page, which would add work to the page), then checks the
// page says the run completed.
// Usage: node scripts/bench-window-run.mjs [runs] [steps] [seconds]
//        (each step runs `sleep SECONDS` when given, else `true`: a run of steps
//        that take as long as a small playbook, where the page's work per step
//        overlaps the next step, against trivial steps, where nothing overlaps it)
//        (THINKUBE_APP=target/release/thinkube-installer for release numbers)
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { cli, launch, newWorld, stopDisplay, waitForText, writePlan } from '../tests/e2e/harness.mjs'

const runs = Number(process.argv[2] ?? 3)
const steps = Number(process.argv[3] ?? 300)
const seconds = process.argv[4] === undefined ? null : Number(process.argv[4])
if (seconds !== null && !(seconds > 0)) throw new Error(`seconds must be a positive number, not ${process.argv[4]}`)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function planFor(world) {
  const command = seconds === null ? '["true"]' : `["sleep", "${seconds}"]`
  const step = (i) => `      - id: s${i}\n        title: Step ${i}\n        command: ${command}\n`
  const body = Array.from({ length: steps }, (_, i) => step(i + 1)).join('')
  return writePlan(world, 'many', {
    'plan.yaml': `id: many\ntitle: ${steps} steps\nphases:\n  - id: one\n    title: Only phase\n    steps:\n${body}`,
  })
}

/** The finished run's seconds from start to end, from its run record; null while it runs. */
function runSeconds(world) {
  const dir = join(world.home, 'runs')
  let files = []
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'))
  } catch {
    return null
  }
  for (const f of files) {
    let run
    try {
      run = JSON.parse(readFileSync(join(dir, f), 'utf8'))
    } catch {
      continue // being replaced
    }
    if (run.finished_at) {
      if (run.outcome !== 'success') throw new Error(`the run ended ${run.outcome}`)
      return (Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000
    }
  }
  return null
}

const headless = []
const windowed = []
const onScreen = []
for (let i = 0; i < runs; i++) {
  {
    const world = newWorld(`bench-run-cli-${i}`)
    const plan = planFor(world)
    const r = await cli(world, ['deploy', '--plan', plan])
    if (r.code !== 0) throw new Error(`headless deploy failed: ${r.stderr}`)
    headless.push(runSeconds(world))
  }
  {
    const world = newWorld(`bench-run-app-${i}`)
    const plan = planFor(world)
    const configured = await cli(world, ['configure', '--target', 'local', '--plan', plan])
    if (configured.code !== 0) throw new Error(`configure failed: ${configured.stderr}`)
    const { browser, close } = await launch(world, ['--skip-config'])
    try {
      await waitForText(browser, 'h2', 'Deploy')
      const start = await browser.$('button=Start deployment')
      await start.waitForClickable({ timeout: 60_000 })
      const t0 = performance.now()
      await start.click()
      let seconds = null
      while ((seconds = runSeconds(world)) === null) await sleep(200)
      windowed.push(seconds)
      await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
      onScreen.push((performance.now() - t0) / 1000)
    } finally {
      await close()
    }
  }
  console.error(
    `run ${i + 1}: headless ${headless[i].toFixed(2)} s, window ${windowed[i].toFixed(2)} s (on screen after ${onScreen[i].toFixed(2)} s)`,
  )
}
await stopDisplay()
const h = median(headless)
const w = median(windowed)
console.log(JSON.stringify({
  steps,
  step_command: seconds === null ? 'true' : `sleep ${seconds}`,
  runs,
  headless_s: +h.toFixed(2),
  window_s: +w.toFixed(2),
  window_adds_percent: +((100 * (w - h)) / h).toFixed(1),
  click_to_screen_s: +median(onScreen).toFixed(2),
}))
