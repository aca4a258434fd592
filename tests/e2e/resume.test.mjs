// 3. The app killed mid-step and launched again: the step shows interrupted; Resume finishes.
import assert from 'node:assert/strict'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import {
  alive, clickButton, configureThisMachine, launch, newWorld, screenshot, statusJson, stepStatuses,
  stopDisplay, until, waitForText, writePlan,
} from './harness.mjs'

after(stopDisplay)

const PLAN = `id: slow
title: A step that waits for a file
phases:
  - id: one
    title: Only phase
    steps:
      - id: first
        title: First
        command: [sh, -c, "echo run >> count-first"]
      - id: wait
        title: Wait for go
        command: [sh, -c, "echo started >> count-wait; while [ ! -f go ]; do sleep 0.05; done"]
      - id: last
        title: Last
        command: [sh, -c, "echo run >> count-last"]
`

/**
 * The pid the state records for `step`'s running attempt, or undefined. The engine
 * commits the pid once the child has been spawned, a commit after the step went running,
 * so a child can have started before its pid is in the state. During a run the step
 * commits are lines of `deployment-state.journal` beside the state file (each says the
 * step records that changed, by index): read as every reader does, the file and then
 * the journal's complete lines.
 */
function runningPid(world, step) {
  const state = JSON.parse(readFileSync(join(world.home, 'deployment-state.json'), 'utf8'))
  const steps = state.deployment.steps
  const journal = join(world.home, 'deployment-state.journal')
  const text = existsSync(journal) ? readFileSync(journal, 'utf8') : ''
  for (const line of text.split('\n').slice(0, -1)) {
    let entry
    try {
      entry = JSON.parse(line)
    } catch {
      continue
    }
    if (entry.serial <= state.serial) continue
    for (const [i, record] of entry.steps) steps[i] = record
  }
  const attempts = steps.find((x) => x.id === step)?.attempts ?? []
  return attempts.at(-1)?.process?.pid
}

test('a killed app leaves the step interrupted, and Resume finishes the deployment', async () => {
  const world = newWorld('resume')
  const plan = writePlan(world, 'slow', { 'plan.yaml': PLAN })
  const dir = dirname(plan)
  const first = await launch(world, ['--plan', plan])
  let stepPid
  try {
    await waitForText(first.browser, 'main', 'No deployment yet')
    await configureThisMachine(first.browser)
    // The step is running when the engine has recorded it and its process, and the child
    // has started.
    const v = await until('the step to run with its process recorded', async () => {
      const s = await statusJson(first.world ?? world)
      const running = s.steps.find((x) => x.id === 'wait')?.status === 'running'
      return running && existsSync(join(dir, 'count-wait')) && runningPid(world, 'wait') ? s : null
    })
    assert.ok(v.lock.held && v.lock.pid, 'the app holds the lock while it deploys')
    stepPid = runningPid(world, 'wait')
    assert.ok(alive(stepPid), `the step's process ${stepPid} runs before the kill`)
    process.kill(v.lock.pid, 'SIGKILL')
  } finally {
    await first.close()
  }
  // The kill left nothing running: the step's process died with the app (PDEATHSIG).
  await until(`the step's process ${stepPid} to end with the app`, () => !alive(stepPid), 10_000)
  const second = await launch(world)
  try {
    await waitForText(second.browser, '[data-testid=existing-deployment]', 'interrupted')
    await clickButton(second.browser, 'View deployment')
    assert.equal((await stepStatuses(second.browser)).wait, 'interrupted')
    // Its shape is drawn, not a glyph the font may lack (⏸ was a missing-glyph box).
    const icon = await second.browser.execute(() => {
      const r = document.querySelector('li.step[data-step=wait] svg[data-icon=interrupted]')?.getBoundingClientRect()
      return r ? [r.width, r.height] : null
    })
    assert.ok(icon && icon[0] > 0 && icon[1] > 0, `the interrupted icon is not drawn: ${JSON.stringify(icon)}`)
    await screenshot(second.browser, 'deploy-interrupted')
    writeFileSync(join(dir, 'go'), '')
    await clickButton(second.browser, 'Resume')
    await waitForText(second.browser, '[data-testid=run-ended]', 'All steps completed.', 120_000)
    assert.deepEqual(await stepStatuses(second.browser), { first: 'completed', wait: 'completed', last: 'completed' })
    assert.equal(readFileSync(join(dir, 'count-first'), 'utf8'), 'run\n', 'a completed step ran again')
    assert.equal(readFileSync(join(dir, 'count-wait'), 'utf8'), 'started\nstarted\n')
    assert.equal((await statusJson(world)).deployment.status, 'completed')
  } finally {
    await second.close()
  }
})
