// 4. --clean-state: progress gone, inventory kept.
// 5. --skip-config: with an inventory, the Deploy screen directly; without, the
//    error after five visible attempts.
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, test } from 'node:test'
import {
  cli, configureThisMachine, launch, newWorld, screenshot, statusJson, stopDisplay,
  waitForText, writeQuickPlan,
} from './harness.mjs'

after(stopDisplay)


test('--clean-state archives the progress before the window shows and keeps the inventory', async () => {
  const world = newWorld('clean')
  const plan = writeQuickPlan(world)
  const first = await launch(world, ['--plan', plan])
  try {
    await waitForText(first.browser, 'main', 'No deployment yet')
    await configureThisMachine(first.browser)
    await waitForText(first.browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
    // The window keeps its copy of the state.
    const copy = await first.browser.execute(() => localStorage.getItem('thinkube-deployment-state-v3'))
    assert.ok(copy && JSON.parse(copy).serial > 0)
  } finally {
    await first.close()
  }
  const inventory = readFileSync(join(world.home, 'inventory.yaml'), 'utf8')
  const second = await launch(world, ['--clean-state'])
  try {
    await waitForText(second.browser, '[role=status]', 'Progress archived to')
    await waitForText(second.browser, 'main', 'No deployment yet')
    await screenshot(second.browser, 'clean-state')
    const v = await statusJson(world)
    assert.equal(v.deployment.status, 'not_started')
    assert.equal(v.steps.length, 0)
    assert.equal(readFileSync(join(world.home, 'inventory.yaml'), 'utf8'), inventory, 'inventory changed')
    assert.ok(existsSync(join(world.home, 'installer-config.json')))
    assert.equal(readdirSync(join(world.home, 'archive')).length, 1)
    // The browser copy was replaced by the cleared state, never kept as the old one.
    const copy = JSON.parse(await second.browser.execute(() => localStorage.getItem('thinkube-deployment-state-v3')))
    assert.equal(copy.document.deployment.id, null)
    // The history still has the archived run.
    const h = await cli(world, ['history', '--json'])
    assert.equal(JSON.parse(h.stdout).length, 1)
  } finally {
    await second.close()
  }
})

test('--skip-config with an inventory goes straight to Deploy', async () => {
  const world = newWorld('skip-ok')
  const plan = writeQuickPlan(world)
  const first = await launch(world, ['--plan', plan])
  try {
    await waitForText(first.browser, 'main', 'No deployment yet')
    await configureThisMachine(first.browser, { deploy: false })
    await waitForText(first.browser, '[role=status]', 'Configuration saved.')
  } finally {
    await first.close()
  }
  const second = await launch(world, ['--skip-config', '--plan', plan])
  try {
    await waitForText(second.browser, 'h2', 'Deploy')
    const start = await second.browser.$('button=Start deployment')
    await start.waitForClickable({ timeout: 30_000 })
    await screenshot(second.browser, 'skip-config-ready')
    await start.click()
    await waitForText(second.browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
    assert.equal((await statusJson(world)).deployment.plan_id, 'quick')
  } finally {
    await second.close()
  }
})

test('--skip-config without an inventory shows five attempts, then what is missing', async () => {
  const world = newWorld('skip-missing')
  const { browser, close } = await launch(world, ['--skip-config'])
  try {
    await waitForText(browser, 'h2', 'Deploy')
    await waitForText(browser, '[data-testid=readiness-status]', 'attempt 1 of 5')
    await waitForText(browser, '[data-testid=readiness-status]', 'attempt 3 of 5')
    await waitForText(browser, '[data-testid=readiness-error]', 'Not ready after 5 attempts', 30_000)
    await waitForText(browser, '[data-testid=readiness-error]', 'there is no inventory at')
    await waitForText(browser, 'main', '5 attempts were made.')
    await screenshot(browser, 'skip-config-not-ready')
    assert.equal(await (await browser.$('button=Start deployment')).isExisting(), false)
    await (await browser.$('button=Open the configuration')).click()
    await waitForText(browser, 'h2', 'Configuration')
  } finally {
    await close()
  }
})
