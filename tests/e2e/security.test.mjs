// The page can call only the app's own commands; an SSH password given in the window,
// and an Azure client secret in the app's environment, reach the steps but never the
// state, events, logs, the window or the WebView's storage.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, test } from 'node:test'
import {
  assertInNoFile, clickButton, launch, newWorld, screenshot, stopDisplay, waitForText, writePlan,
} from './harness.mjs'

after(stopDisplay)

const SECRET = 'hunter2-Secret-7c41e9'
// As a `client_secret` Azure sign-in has it: in the environment, never configured.
const CLIENT_SECRET = 'AzCs-5b7e02-env-only'

// The step proves the password reached it by its digest: the plan (which the state
// records) holds no password either.
const DIGEST = createHash('sha256').update(SECRET).digest('hex')
const PLAN = `id: needs-password
title: A plan for servers reached with a password
phases:
  - id: one
    title: Only phase
    steps:
      - id: check-password
        title: The step receives the password
        command: [sh, -c, 'test "$(printf %s "$THINKUBE_SSH_PASSWORD" | sha256sum | cut -c1-64)" = "${DIGEST}" && echo password received']
      - id: careless
        title: A careless step prints both
        command: [sh, -c, 'printf "pw=%s cs=%s\\n" "$THINKUBE_SSH_PASSWORD" "$AZURE_CLIENT_SECRET"']
`

test('the page cannot call a command the capabilities do not grant', async () => {
  const world = newWorld('caps')
  const { browser, close } = await launch(world)
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    const call = (cmd, args) =>
      browser.executeAsync((c, a, done) => {
        window.__TAURI_INTERNALS__.invoke(c, a).then(
          (v) => done({ ok: true, v }),
          (e) => done({ ok: false, e: String(e?.message ?? e) }),
        )
      }, cmd, args)
    const granted = await call('launch_info', {})
    assert.equal(granted.ok, true)
    for (const [cmd, args] of [
      ['plugin:window|set_title', { label: 'main', value: 'pwned' }],
      ['plugin:webview|create_webview_window', { options: { label: 'x', url: 'https://example.com' } }],
      ['plugin:shell|execute', { program: 'sh', args: ['-c', 'true'] }],
      ['plugin:fs|read_text_file', { path: '/etc/passwd' }],
      ['not_a_command', {}],
    ]) {
      const r = await call(cmd, args)
      assert.equal(r.ok, false, `${cmd} was allowed`)
    }
    assert.notEqual(await browser.getTitle(), 'pwned')
    await screenshot(browser, 'capabilities')
  } finally {
    await close()
  }
})

test('an SSH password and a client secret reach the steps and nothing the installer writes or shows', async () => {
  const world = newWorld('secret')
  const plan = writePlan(world, 'pw', { 'plan.yaml': PLAN })
  const { browser, close } = await launch(world, ['--plan', plan], { AZURE_CLIENT_SECRET: CLIENT_SECRET })
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await clickButton(browser, 'Configure and deploy')
    await (await browser.$('input[type=radio][value=ssh]')).click()
    await clickButton(browser, 'Next')
    await clickButton(browser, 'Add a host')
    const [name, address] = await browser.$$('.host-row input')
    await name.setValue('node1')
    await address.setValue('10.0.0.300')
    await clickButton(browser, 'Next')
    // A bad address is named and keeps the wizard on its page.
    await waitForText(browser, '[aria-label=Problems]', 'is not an IP address or a DNS name')
    await screenshot(browser, 'wizard-hosts-invalid')
    await address.clearValue()
    await address.setValue('127.0.0.1')
    await clickButton(browser, 'Next')
    await (await browser.$('label*=SSH user')).$('input').setValue('deployer')
    await (await browser.$('input[type=radio][value=password]')).click()
    await clickButton(browser, 'Next')
    await clickButton(browser, 'Next')
    await waitForText(browser, 'section.review', 'deployer with password')
    await clickButton(browser, 'Save and deploy')
    const field = await browser.$('input[type=password]')
    await field.waitForDisplayed({ timeout: 30_000 })
    await screenshot(browser, 'ssh-password-prompt')
    await field.setValue(SECRET)
    await clickButton(browser, 'Continue')
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
    // The careless step's output reached the window with both hidden.
    await waitForText(browser, '[role=log]', 'pw=******** cs=********')
    const page = await (await browser.$('body')).getText()
    assert.ok(!page.includes(SECRET) && !page.includes(CLIENT_SECRET), 'a secret is on the page')

    const storage = await browser.execute(() => JSON.stringify({ ...localStorage }))
    assert.ok(storage.includes('thinkube-deployment-state-v3'))
    assert.ok(!storage.includes(SECRET), 'the password is in localStorage')
    assert.ok(!storage.includes(CLIENT_SECRET), 'the client secret is in localStorage')
  } finally {
    await close()
  }
  const inventory = readFileSync(join(world.home, 'inventory.yaml'), 'utf8')
  assert.match(inventory, /ansible_password: "\{\{ lookup\('env', 'THINKUBE_SSH_PASSWORD'\) \}\}"/)
  // Every file the installer wrote, and the WebView's own storage on disk.
  const { files, searched } = assertInNoFile(world, [SECRET, CLIENT_SECRET], 'the password or the client secret')
  assert.ok(files.some((f) => f.endsWith('events.jsonl')))
  assert.ok(files.some((f) => f.endsWith('.log')))
  assert.ok(searched > 10, `only ${searched} files searched`)
})
