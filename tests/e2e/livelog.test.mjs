// 9. The live log: lines show while the step still runs (the window showed "No
// output yet" / "0 lines" until the step ended, the lines being appended to an
// array the page never saw change).
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import {
  configureThisMachine, launch, newWorld, screenshot, stepStatuses, stopDisplay, waitForText, writePlan,
} from './harness.mjs'

after(stopDisplay)

const PLAN = `id: chatty
title: A step that prints, then waits
phases:
  - id: one
    title: One phase
    steps:
      - id: chatty
        title: Chatty step
        command: [sh, -c, "for i in $(seq 1 40); do echo line-$i; done; while [ ! -f go ]; do sleep 0.1; done; echo line-41"]
`

test('the log shows lines while the step still runs', async () => {
  const world = newWorld('livelog')
  const plan = writePlan(world, 'chatty', { 'plan.yaml': PLAN })
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await configureThisMachine(browser)
    // The step is still waiting for `go`: the 40 lines it printed are in view.
    await waitForText(browser, '[data-testid=log-count]', '40 lines', 60_000)
    await waitForText(browser, '[role=log]', 'line-40')
    assert.equal((await stepStatuses(browser)).chatty, 'running')
    await screenshot(browser, 'live-log')
    writeFileSync(join(dirname(plan), 'go'), '')
    await waitForText(browser, '[data-testid=log-count]', '41 lines', 60_000)
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
  } finally {
    await close()
  }
})
