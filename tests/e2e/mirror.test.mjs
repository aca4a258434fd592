// 6. The state file deleted while the window's copy holds it: Restore is offered,
//    the state restored, with the same lineage.
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { after, test } from 'node:test'
import {
  clickButton, configureThisMachine, launch, newWorld, screenshot, statusJson, stopDisplay,
  waitForText, writeQuickPlan,
} from './harness.mjs'

after(stopDisplay)


test('a deleted state file is restored from the window copy, same lineage, never silently', async () => {
  const world = newWorld('mirror')
  const plan = writeQuickPlan(world)
  const first = await launch(world, ['--plan', plan])
  let before
  try {
    await waitForText(first.browser, 'main', 'No deployment yet')
    await configureThisMachine(first.browser)
    await waitForText(first.browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
    before = await statusJson(world)
  } finally {
    await first.close()
  }
  rmSync(join(world.home, 'deployment-state.json'))
  rmSync(join(world.home, 'deployment-state.json.bak'), { force: true })
  const second = await launch(world)
  try {
    await waitForText(second.browser, '[role=alertdialog]', 'this window kept a copy')
    await screenshot(second.browser, 'restore-offer')
    // Nothing was written before the user chose.
    assert.equal((await statusJson(world)).lineage, null)
    await clickButton(second.browser, 'Restore')
    await waitForText(second.browser, '[role=status]', 'Restored the state')
    await waitForText(second.browser, '[data-testid=existing-deployment]', 'completed')
    const after = await statusJson(world)
    assert.equal(after.lineage, before.lineage)
    assert.ok(after.serial > before.serial, `${after.serial} <= ${before.serial}`)
    assert.equal(after.deployment.status, 'completed')
  } finally {
    await second.close()
  }
})
