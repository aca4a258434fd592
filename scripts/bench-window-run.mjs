// How much the window adds to a run (docs/benchmarks.md, issue #14): the same plan of
// 300 trivial steps deployed headless (`thinkube-installer deploy`, no window) and
// from the window (Start deployment, to "All steps completed." on screen), each in a
// fresh installer home configured for this machine, interleaved run by run.
// Usage: node scripts/bench-window-run.mjs [runs] [steps]
//        (THINKUBE_APP=target/release/thinkube-installer for release numbers)
import {
  cli, launch, newWorld, stopDisplay, waitForText, writePlan,
} from '../tests/e2e/harness.mjs'

const runs = Number(process.argv[2] ?? 3)
const steps = Number(process.argv[3] ?? 300)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function planFor(world) {
  const step = (i) => `      - id: s${i}\n        title: Step ${i}\n        command: ["true"]\n`
  const body = Array.from({ length: steps }, (_, i) => step(i + 1)).join('')
  return writePlan(world, 'many', {
    'plan.yaml': `id: many\ntitle: ${steps} trivial steps\nphases:\n  - id: one\n    title: Only phase\n    steps:\n${body}`,
  })
}

const headless = []
const windowed = []
for (let i = 0; i < runs; i++) {
  {
    const world = newWorld(`bench-run-cli-${i}`)
    const plan = planFor(world)
    const t0 = performance.now()
    const r = await cli(world, ['deploy', '--plan', plan])
    if (r.code !== 0) throw new Error(`headless deploy failed: ${r.stderr}`)
    headless.push(performance.now() - t0)
  }
  {
    const world = newWorld(`bench-run-app-${i}`)
    const plan = planFor(world)
    const configured = await cli(world, ['configure', '--target', 'local'])
    if (configured.code !== 0) throw new Error(`configure failed: ${configured.stderr}`)
    const { browser, close } = await launch(world, ['--skip-config', '--plan', plan])
    try {
      await waitForText(browser, 'h2', 'Deploy')
      const start = await browser.$('button=Start deployment')
      await start.waitForClickable({ timeout: 60_000 })
      const t0 = performance.now()
      await start.click()
      await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 600_000)
      windowed.push(performance.now() - t0)
    } finally {
      await close()
    }
  }
  console.error(`run ${i + 1}: headless ${(headless[i] / 1000).toFixed(1)} s, window ${(windowed[i] / 1000).toFixed(1)} s`)
}
await stopDisplay()
const h = median(headless)
const w = median(windowed)
console.log(JSON.stringify({
  steps,
  runs,
  headless_s: +(h / 1000).toFixed(2),
  window_s: +(w / 1000).toFixed(2),
  window_adds_percent: +((100 * (w - h)) / h).toFixed(1),
}))
