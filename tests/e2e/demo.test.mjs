// 1. Fresh start, the wizard with "this machine", the demo plan deployed for real.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, test } from 'node:test'
import {
  configureThisMachine, freePort, launch, newWorld, screenshot, statusJson, stepStatuses,
  stopDisplay, waitForText,
} from './harness.mjs'

after(stopDisplay)

test('a fresh start deploys the demo plan to this machine through the wizard', async () => {
  const world = newWorld('demo')
  const port = String(await freePort())
  const { browser, close } = await launch(world)
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await screenshot(browser, 'welcome')
    await configureThisMachine(browser, { vars: { demo_port: port } })
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 240_000)
    // The completion page: what, where, how long, and the address the demo answers on
    // (fetched here, to show it is the real one).
    await waitForText(browser, 'section.completion', 'Deployed: Demo deployment to this machine')
    await waitForText(browser, 'section.completion', 'This machine')
    await waitForText(browser, 'section.completion', '8 steps completed')
    await waitForText(browser, 'section.completion', `http://127.0.0.1:${port}/report.html`)
    const site = await fetch(`http://127.0.0.1:${port}/`)
    assert.equal(site.status, 200)
    await screenshot(browser, 'deploy-completed')
    const steps = await stepStatuses(browser)
    assert.equal(Object.keys(steps).length, 8)
    assert.ok(Object.values(steps).every((s) => s === 'completed'), JSON.stringify(steps))
    assert.match(await browser.getTitle(), /100% \(8 of 8 steps, completed\)/)
    const v = await statusJson(world)
    assert.equal(v.deployment.status, 'completed')
    assert.equal(v.deployment.plan_id, 'demo')
    assert.equal(v.progress.completed, 8)
    assert.ok(existsSync(join(world.home, 'inventory.yaml')), 'the wizard wrote the inventory')
  } finally {
    await close()
    spawnSync('sh', [join(world.home, 'demo/bin/demo-server.sh'), 'stop', join(world.home, 'demo')])
  }
})
