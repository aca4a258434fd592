// Keyboard only: through the wizard, a deployment, and the clean-state confirmation,
// in the real window, without a single click.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import {
  launch, newWorld, screenshot, statusJson, stopDisplay, waitForText, writeQuickPlan,
} from './harness.mjs'

after(stopDisplay)

/** What has the focus: a button's text, or `input:<type>:<value>`. */
function focused(browser) {
  return browser.execute(() => {
    const el = document.activeElement
    if (!el) return ''
    if (el.tagName === 'INPUT') return `input:${el.type}:${el.value}`
    return `${el.tagName.toLowerCase()}:${el.textContent.trim()}`
  })
}

/** Presses Tab (or Shift+Tab) until `target` has the focus; fails after 40 presses. */
async function tabTo(browser, target, { back = false } = {}) {
  const seen = []
  for (let i = 0; i < 40; i++) {
    const now = await focused(browser)
    if (now === target) return
    seen.push(now)
    await browser.keys(back ? ['Shift', 'Tab'] : ['Tab'])
  }
  throw new Error(`Tab never reached ${target}; it went through: ${seen.join(' | ')}`)
}

test('the wizard, a deployment and a confirmation work from the keyboard alone', async () => {
  const world = newWorld('keyboard')
  const plan = writeQuickPlan(world)
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await tabTo(browser, 'button:Configure and deploy')
    await browser.keys(['Enter'])
    // The new screen's heading takes the focus.
    await browser.waitUntil(async () => (await focused(browser)) === 'h2:Configuration', {
      timeout: 10_000, timeoutMsg: 'the Configuration heading did not take the focus',
    })
    // A radio group is one Tab stop; Space chooses the focused option.
    await tabTo(browser, 'input:radio:local')
    await browser.keys([' '])
    assert.equal(await (await browser.$('input[type=radio][value=local]')).isSelected(), true)
    await tabTo(browser, 'button:Next')
    await browser.keys(['Enter'])
    await tabTo(browser, 'button:Next')
    await browser.keys(['Enter'])
    await waitForText(browser, 'section.review', 'Target')
    await tabTo(browser, 'button:Save and deploy')
    await browser.keys(['Enter'])
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.')

    // The confirmation takes the focus on its safe answer; Escape answers no.
    await tabTo(browser, 'button:Clean state')
    await browser.keys(['Enter'])
    await waitForText(browser, '[role=alertdialog]', 'Archive this deployment')
    assert.equal(await focused(browser), 'button:Keep it')
    await screenshot(browser, 'keyboard-confirm')
    await browser.keys(['Escape'])
    await browser.waitUntil(async () => !(await (await browser.$('[role=alertdialog]')).isExisting()), {
      timeout: 10_000, timeoutMsg: 'Escape did not close the confirmation',
    })
    assert.equal(await focused(browser), 'button:Clean state', 'the focus went back to the opener')
    assert.equal((await statusJson(world)).deployment.status, 'completed', 'Escape changed nothing')

    // Enter on the confirm answer does clean.
    await browser.keys(['Enter'])
    await waitForText(browser, '[role=alertdialog]', 'Archive this deployment')
    await tabTo(browser, 'button:Yes, clean state', { back: true })
    await browser.keys(['Enter'])
    await browser.waitUntil(async () => (await statusJson(world)).deployment.status === 'not_started', {
      timeout: 30_000, timeoutMsg: 'Yes, clean state did not clear the progress',
    })
  } finally {
    await close()
  }
})
